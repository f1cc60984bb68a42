"""multi_label: any set of classes per input; sigmoid per label, each with its own decision
threshold (tuned on PyTorch's validation scores at export, stored in the manifest); micro/macro-F1
and exact-match ratio. Softmax would be wrong here: it makes the labels compete.

Labels are a list per row (JSONL/Parquet), or a string split by `--label-separator` (CSV/TSV:
"sport|politics"); an empty list means "no label applies".
"""

from __future__ import annotations

import numpy as np

from ..errors import BertfastError, DataError
from ..metrics import classification_report, multilabel_f1
from . import values
from .base import Task, sorted_names


def tune_thresholds(scores: np.ndarray, y: np.ndarray, grid: int = 19) -> list[float]:
    """Per-label decision threshold maximizing that label's F1 on validation scores.

    Candidates are 0.05, 0.10, ..., 0.95; ties keep the one nearest 0.5, and a label with no
    positives keeps 0.5 (nothing to tune on).
    """
    cands = np.linspace(0.05, 0.95, grid)
    out = []
    for j in range(scores.shape[1]):
        s, t = scores[:, j], y[:, j].astype(bool)
        if not t.any():
            out.append(0.5)
            continue
        best, best_f1 = 0.5, -1.0
        for c in sorted(cands, key=lambda c: abs(c - 0.5)):
            p = s >= c
            tp = int((p & t).sum())
            f1 = 2 * tp / (int(p.sum()) + int(t.sum()))
            if f1 > best_f1 + 1e-12:
                best, best_f1 = float(c), f1
        out.append(round(best, 4))
    return out


def _row(y, where: str, i: int, separator: str | None) -> list[str]:
    if y is None or (isinstance(y, float) and y != y):
        if separator is not None:
            return []  # an empty CSV field: no label applies
        raise DataError(
            f"{where}: label in data row {i + 1} is missing; a multi-label row needs a list of labels ([] for none)."
        )
    if isinstance(y, str):
        if separator is None:
            raise DataError(
                f"{where}: label in data row {i + 1} is a string ({y[:30]!r}), not a list; a multi-label task needs a "
                "list in every row, or pass --label-separator to split strings such as 'sport|politics'."
            )
        y = y.split(separator)
    if not isinstance(y, (list, tuple)):
        raise DataError(f"{where}: label in data row {i + 1} is {type(y).__name__}; a multi-label row needs a list.")
    out = []
    for y1 in y:
        if values.missing(y1):
            raise DataError(f"{where}: label list in data row {i + 1} holds an empty or null label; remove it.")
        out.append(values.class_name(y1, where, i))
    return sorted(set(out))


class MultiLabel(Task):
    name = "multi_label"
    problem_type = "multi_label_classification"
    activation = "sigmoid"
    primary = "micro_f1"
    agreement_rule = "same label set"
    description = "any set of classes per text (sigmoid per label, tuned thresholds)"
    label_lists = True
    target_dtype = np.float32  # BCEWithLogits takes float multi-hot rows
    table_columns = (("micro-F1", 9, "micro_f1", "pct"), ("exact", 8, "exact_match", "pct"))
    reference_columns = (("micro-F1", "micro_f1", "pct"), ("macro-F1", "macro_f1", "pct"),
                         ("exact-match", "exact_match", "pct"))
    writes = "`labels` (every label over its threshold) and a score per label"

    def parse(self, raw, where, separator=None):
        return [_row(y, where, i, separator) for i, y in enumerate(raw)]

    def flat(self, labels):
        return [y for ys in labels for y in ys]

    def label_set(self, labels):
        return sorted_names(set(self.flat(labels)))

    def stratum(self, labels):
        return ["|".join(ys) for ys in labels]

    def check_training(self, src, labels, outputs):
        if not outputs:
            raise DataError(f"{src}: no training row has any label (all lists are empty); a multi-label model needs labels.")

    def check_split(self, name, labels):
        if not self.flat(labels):
            raise DataError(f"no row of the {name} split has any label: F1 on it measures nothing; provide labeled rows.")

    def encode(self, labels, label2id):
        y = np.zeros((len(labels), len(label2id)), dtype=np.int8)
        for i, ys in enumerate(labels):
            y[i, [label2id[x] for x in ys]] = 1
        return y

    def label_of(self, y_row, id2label):
        return [id2label[int(j)] for j in np.flatnonzero(y_row)]

    def check_outputs(self, n_outputs, names):
        if n_outputs < 1:
            raise BertfastError("the model has no outputs; a multi_label model needs one output per label.")

    def decide(self, scores, thresholds=None):
        th = np.full(scores.shape[1], 0.5, np.float32) if thresholds is None else np.asarray(thresholds, np.float32)
        return (scores >= th).astype(np.int8)

    def metrics(self, scores, y, thresholds=None):
        return multilabel_f1(self.decide(scores, thresholds), y)

    def same(self, scores, ref, thresholds):
        return (self.decide(scores, thresholds) == self.decide(ref, thresholds)).all(axis=1)

    def margins(self, ref, scores, thresholds=None):
        # Each label's distance from its threshold; a move towards the threshold is negative.
        th = np.full(ref.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, np.float64)
        side = np.where(ref >= th, 1.0, -1.0)
        return np.abs(ref - th), side * (scores - ref)

    def decision_thresholds(self, thresholds, n_outputs):
        return [float(t) for t in thresholds] if thresholds is not None else [0.5] * n_outputs

    def calibrate(self, ref_scores, y):
        return tune_thresholds(ref_scores, y) if y is not None else None

    def test_report(self, scores, y, names):
        # Each label as its own yes/no classifier at the default 0.5 threshold (export tunes them).
        decided, y = self.decide(scores), np.asarray(y).astype(np.int8)
        return {"test_per_label": {n: classification_report(decided[:, j], y[:, j], ["", n])[n]
                                   for j, n in enumerate(names)}}

    def outputs(self, scores, labels, thresholds=None, top_k=1):
        on = self.decide(scores, thresholds)
        return [{"labels": [labels[j] for j in np.flatnonzero(row)], "scores": dict(zip(labels, ss))}
                for row, ss in zip(on, scores.tolist())]

    def columns(self, labels, top_k, all_scores, txt):
        return ["labels"] if txt else ["labels", *(f"score_{lab}" for lab in labels)]

    def column_values(self, proba, p64, labels, top_k, all_scores, thresholds, separator, txt):
        sets = [[labels[j] for j in np.flatnonzero(row)] for row in self.decide(proba, thresholds)]
        cols: list[list] = [sets if separator is None else [separator.join(s) for s in sets]]
        return cols if txt else cols + [p64[:, j].tolist() for j in range(len(labels))]
