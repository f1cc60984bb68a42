"""single_label: one class per input; softmax; accuracy + macro-F1 (the classic notebook)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import BertfastError, DataError
from ..metrics import accuracy_f1, classification_report
from ..metrics import top_k as top_k_indices
from . import ranking, values
from .base import Task, sorted_names

# A split whose smallest class has under this share of the largest one's rows makes accuracy
# reward ignoring the small classes.
IMBALANCE_RATIO = 0.1


class SingleLabel(Task):
    name = "single_label"
    problem_type = "single_label_classification"
    activation = "softmax"
    primary = "accuracy"
    agreement_rule = "same top label"
    description = "one class per text (softmax)"
    table_columns = (("accuracy", 9, "accuracy", "pct"),)
    reference_columns = (("accuracy", "accuracy", "pct"), ("macro-F1", "macro_f1", "pct"))

    def parse(self, raw, where, separator=None):
        out = []
        for i, y in enumerate(raw):
            values.required(y, where, i)
            out.append(values.class_name(y, where, i))
        return out

    def label_set(self, labels):
        return sorted_names(set(labels))

    def stratum(self, labels):
        return list(labels)

    def check_training(self, src, labels, outputs):
        if len(outputs) < 2:
            raise DataError(f"{src}: the training data has only one class ({labels[0]!r}); a classifier needs at least two.")

    def check_split(self, name, labels):
        classes = set(labels)
        if len(classes) < 2:
            raise DataError(
                f"the {name} split has only one class ({next(iter(classes))!r}, {len(labels)} rows): accuracy on it "
                "measures nothing. Use a stratified split (omit the eval file to let bertfast make one)."
            )

    def imbalance(self, labels, n_classes):
        counts = Counter(labels)
        lo, hi = min(counts.values()), max(counts.values())
        return dict(counts) if lo < IMBALANCE_RATIO * hi or len(counts) < n_classes else None

    def encode(self, labels, label2id):
        return np.array([label2id[y] for y in labels], dtype=np.int64)

    def label_of(self, y_row, id2label):
        return id2label[int(y_row)]

    def check_outputs(self, n_outputs, names):
        if n_outputs < 2:
            raise BertfastError(
                "the model has one output (a score), but single_label needs two classes or more; use --task "
                "regression, or data with numeric scores."
            )

    def decide(self, scores, thresholds=None):
        return scores.argmax(-1)

    def metrics(self, scores, y, thresholds=None):
        return accuracy_f1(scores.argmax(-1), y, scores.shape[1])

    def empty_metrics(self):
        return {"accuracy": None, "macro_f1": None}

    def same(self, scores, ref, thresholds):
        return scores.argmax(-1) == ref.argmax(-1)

    def margins(self, ref, scores, thresholds=None):
        # The reference's best class against its runner-up, before and after.
        order = np.argsort(-ref, axis=1, kind="stable")
        rows = np.arange(len(ref))
        top, second = order[:, 0], order[:, 1] if ref.shape[1] > 1 else order[:, 0]
        m = ref[rows, top] - ref[rows, second]
        d = (scores[rows, top] - scores[rows, second]) - m
        return m[:, None], d[:, None]

    def checkpoint_metric(self, ranking_data):
        # On imbalanced data accuracy rewards ignoring the small classes: keep choosing by macro-F1.
        return ranking.PRIMARY if ranking_data else "macro_f1"

    def test_report(self, scores, y, names):
        return {"test_per_class": classification_report(scores.argmax(-1), np.asarray(y), names)}

    def can_rerank(self, n_outputs):
        return n_outputs == 2

    def relevance(self, scores, positive=None):
        if scores.shape[1] != 2:
            return super().relevance(scores, positive)
        if positive is None:
            raise BertfastError("a two-class reranker needs its relevant class: pass --positive-label.")
        return scores[:, positive]

    writes = "the best label and its score"

    def outputs(self, scores, labels, thresholds=None, top_k=1):
        best = top_k_indices(scores, top_k)
        top = np.take_along_axis(scores, best, axis=1).tolist()
        out = [[{"label": labels[b], "score": s} for b, s in zip(bs, ss)] for bs, ss in zip(best.tolist(), top)]
        return [o[0] for o in out] if top_k == 1 else out

    def check_top_k(self, top_k, where, flag="--top-k"):
        pass

    def columns(self, labels, top_k, all_scores, txt):
        names = ["label", "score"]
        for k in range(2, top_k + 1):
            names += [f"label_{k}", f"score_{k}"]
        if all_scores:
            names += [f"prob_{lab}" for lab in labels]
        return names

    def column_values(self, proba, p64, labels, top_k, all_scores, thresholds, separator, txt):
        top = top_k_indices(proba, top_k)
        scores = np.take_along_axis(p64, top, axis=1)
        lab = np.array(labels, dtype=object)
        cols = []
        for k in range(top.shape[1]):
            cols += [lab[top[:, k]].tolist(), scores[:, k].tolist()]
        if all_scores:
            cols += [p64[:, j].tolist() for j in range(len(labels))]
        return cols
