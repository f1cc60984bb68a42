"""regression: one number per input (e.g. a similarity score); raw output, or sigmoid for a
one-logit cross-encoder trained with BCE (`activation_for`); Pearson, Spearman, MAE."""

from __future__ import annotations

import math

import numpy as np

from ..errors import BertfastError, DataError
from ..metrics import regression_metrics
from . import values
from .base import Task

# A score agrees with the reference's when within this share of the reference's score range.
AGREEMENT_SPAN = 0.05
_QUINTILES = [0.2, 0.4, 0.6, 0.8]


class Regression(Task):
    name = "regression"
    problem_type = "regression"
    activation = "identity"
    primary = "pearson"
    agreement_rule = "|score difference| <= 0.05 x the reference's score range"
    description = "one number per text or pair"
    has_classes = False
    output_unit = "output"
    target_dtype = np.float64
    diff_name = "max|ds|"  # raw scores, not probabilities
    table_columns = (("pearson", 8, "pearson", "num"), ("spearman", 8, "spearman", "num"), ("mae", 7, "mae", "num"))
    reference_columns = (("pearson", "pearson", "num"), ("spearman", "spearman", "num"), ("MAE", "mae", "num"))
    writes = "one `score` per row"

    def activation_for(self, config) -> str:
        """Sigmoid for a one-logit score model trained with BCE by sentence-transformers'
        CrossEncoder (it records its activation in config.json), else identity."""
        st = getattr(config, "sentence_transformers", None) or {}
        act = str(st.get("activation_fn", "") if isinstance(st, dict) else "")
        legacy = str(getattr(config, "sbert_ce_default_activation_function", "") or "")
        return "sigmoid" if "Sigmoid" in act or "Sigmoid" in legacy else "identity"

    def parse(self, raw, where, separator=None):
        out = []
        commas = None  # decided on the first value float() cannot read
        for i, y in enumerate(raw):
            values.required(y, where, i)
            n = values.number(y)
            if n is None and commas is None:
                commas = values.decimal_commas(raw)
            if n is None and commas:
                n = values.comma_number(y)  # a German or French spreadsheet's "0,5"
            if n is None:
                raise DataError(
                    f"{where}: label in data row {i + 1} is {str(y)[:40]!r}, not a number; a regression task needs "
                    "a number in every row (or pass --task single_label for class names)."
                )
            if not math.isfinite(n):
                raise DataError(f"{where}: label in data row {i + 1} is {n}; regression labels must be finite numbers.")
            out.append(n)
        return out

    def label_set(self, labels):
        return ["score"]

    def counts(self, labels):
        return {}

    def unknown(self, labels, label2id):
        return set()

    def stratum(self, labels):
        edges = np.quantile(np.asarray(labels, dtype=float), _QUINTILES)
        return [int(np.searchsorted(edges, y, side="right")) for y in labels]

    def check_training(self, src, labels, outputs):
        if len(set(labels)) < 2:
            raise DataError(f"{src}: every training score is {labels[0]}; a regression model needs varied scores.")

    def check_split(self, name, labels):
        if len(set(labels)) < 2:
            raise DataError(f"the {name} split has one score value only ({labels[0]}): correlation on it "
                            "measures nothing; provide varied scores.")

    def encode(self, labels, label2id):
        return np.asarray(labels, dtype=np.float64)

    def label_of(self, y_row, id2label):
        return float(y_row)

    def check_outputs(self, n_outputs, names):
        if n_outputs != 1:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise BertfastError(
                f"a regression task needs a one-output (score) model; this one has {n_outputs} outputs "
                f"({shown}): use data with class labels, or --task single_label / multi_label."
            )

    def decide(self, scores, thresholds=None):
        return scores[:, 0]

    def metrics(self, scores, y, thresholds=None):
        return regression_metrics(scores[:, 0], np.asarray(y, dtype=np.float64))

    def same(self, scores, ref, thresholds):
        span = float(ref.max() - ref.min()) if len(ref) else 0.0
        return np.abs(scores - ref)[:, 0] <= AGREEMENT_SPAN * (span or 1.0)

    def margins(self, ref, scores, thresholds=None):
        # A score agrees while within the tolerance: every input starts `tol` from the boundary.
        span = float(ref.max() - ref.min()) if len(ref) else 0.0
        tol = AGREEMENT_SPAN * (span or 1.0)
        # Two decisions per input, one per direction: the score leaves the band above or below.
        delta = (scores - ref)[:, :1]
        return np.full((len(ref), 2), tol), np.concatenate([delta, -delta], axis=1)

    def test_report(self, scores, y, names):
        return {}

    def can_rerank(self, n_outputs):
        return n_outputs == 1

    def relevance(self, scores, positive=None):
        return scores[:, 0]

    def outputs(self, scores, labels, thresholds=None, top_k=1):
        return [{"score": s} for s in scores[:, 0].tolist()]

    def columns(self, labels, top_k, all_scores, txt):
        return ["score"]

    def column_values(self, proba, p64, labels, top_k, all_scores, thresholds, separator, txt):
        return [p64[:, 0].tolist()]
