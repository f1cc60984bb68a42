"""What every task answers: the `Task` contract each task module fills in.

A task is decided once (from `--task`, the checkpoint's `problem_type`, or the labels) and then
every stage asks it, instead of comparing task names: training (`targets`, `checkpoint_metric`,
`test_report`), export (`encode`, `evaluate`, `agreement`, `calibrate`, the table's columns),
the runtime (`decide`, `outputs`, `columns`) and serving (`outputs`, `can_rerank`). A method a
task module does not implement raises, so a new task cannot silently behave as another one.

Needs only numpy (the runtime imports it).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import BertfastError
from ..metrics import softmax
from . import ranking

ACTIVATIONS = ("softmax", "sigmoid", "identity")


def activate(logits: np.ndarray, activation: str) -> np.ndarray:
    """Logits -> scores with one of `ACTIVATIONS` (an unknown one raises)."""
    z = np.asarray(logits, dtype=np.float32)
    if activation == "softmax":
        return softmax(z)
    if activation == "sigmoid":
        # exp of a negative number only: no overflow warning for large |logit|.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(np.float32)
    if activation == "identity":
        return z
    raise BertfastError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}.")


def sorted_names(names) -> list[str]:
    """Class names in class-id order: integers sort numerically ("2" < "10"), others by name."""
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


class Task:
    """One kind of problem (one row of `TASKS`). Subclasses set the attributes and implement
    the methods that raise here.

    Attributes:
        name: the manifest's `task.name` and the `--task` value.
        problem_type: transformers' `config.problem_type` for it.
        activation: logits -> scores.
        primary: the metric the export's gate bounds (points = metric x 100).
        higher_is_better: for `primary`.
        agreement_rule: what "the variant agrees with PyTorch" means for one input.
        description: one line for --help and docs.
        label_lists: labels are lists per row (so `--label-separator` applies).
        has_classes: labels are class names (not numbers).
        output_unit: what one model output is called in logs ("labels", "output").
        target_dtype: the dtype of the truth array and of Trainer's targets.
        diff_name: the table's column for the largest score difference.
        table_columns / reference_columns: the export table's metric columns and reference line,
            (header, width, key, format) and (label, key, format); format "pct" or "num".
    """

    name: str = ""
    problem_type: str = ""
    activation: str = "identity"
    primary: str = ""
    higher_is_better: bool = True
    agreement_rule: str = ""
    description: str = ""
    label_lists: bool = False
    has_classes: bool = True
    output_unit: str = "labels"
    target_dtype = np.int64
    diff_name: str = "max|dp|"
    table_columns: tuple = ()
    reference_columns: tuple = ()

    def __repr__(self) -> str:
        return f"Task({self.name})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Task) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def _missing(self, method: str):
        return NotImplementedError(f"task {self.name!r} does not implement {method}")

    def activation_for(self, config) -> str:
        """The activation a checkpoint of this task applies to its logits."""
        return self.activation

    # -- labels as users keep them ------------------------------------------------------------

    def parse(self, raw: list, where: str, separator: str | None = None) -> list:
        """The raw label values of a file checked and converted (one-line DataError per bad row)."""
        raise self._missing("parse")

    def label_set(self, labels: list) -> list[str]:
        """The model's outputs for these labels, in output order."""
        raise self._missing("label_set")

    def counts(self, labels: list) -> dict[str, int]:
        """Rows per class (label) for summaries; {} where labels are numbers."""
        return dict(sorted(Counter(self.flat(labels)).items()))

    def flat(self, labels: list) -> list:
        """Every class name that occurs, once per occurrence."""
        return list(labels)

    def stratum(self, labels: list) -> list:
        """A key per row for stratified splits."""
        raise self._missing("stratum")

    def check_training(self, src: str, labels: list, outputs: list[str]) -> None:
        """Refuse training labels a model cannot learn from (one class, one score, no label)."""
        raise self._missing("check_training")

    def check_split(self, name: str, labels: list) -> None:
        """Refuse an evaluation split that measures nothing (labels already checked against the
        training labels by the caller, where `has_classes`)."""
        raise self._missing("check_split")

    def imbalance(self, labels: list, n_classes: int) -> dict | None:
        """Rows per class when an evaluation split is so imbalanced that the primary metric
        misleads (None: fine, or not a question for this task)."""
        return None

    # -- truth and targets ----------------------------------------------------------------------

    def unknown(self, labels: list, label2id: dict[str, int]) -> set:
        """Labels the model does not know (none for numeric tasks)."""
        return {y for y in self.flat(labels) if y not in label2id}

    def encode(self, labels: list, label2id: dict[str, int]) -> np.ndarray:
        """The truth array `evaluate` takes (every label known: check `unknown` first)."""
        raise self._missing("encode")

    def targets(self, labels: list, label2id: dict[str, int]) -> list:
        """Labels as the model's loss takes them (Trainer's `labels` column)."""
        return self.encode(labels, label2id).astype(self.target_dtype).tolist()

    def label_of(self, y_row, id2label: dict[int, str]):
        """One row of the truth array back as the label a file holds (eval.jsonl)."""
        raise self._missing("label_of")

    def check_outputs(self, n_outputs: int, names: list[str]) -> None:
        """Refuse a model head that cannot express the task."""
        raise self._missing("check_outputs")

    # -- decisions, metrics, agreement ------------------------------------------------------

    def decide(self, scores: np.ndarray, thresholds: list[float] | None = None) -> np.ndarray:
        """What the model says per input."""
        raise self._missing("decide")

    def metrics(self, scores: np.ndarray, y: np.ndarray, thresholds: list[float] | None = None) -> dict:
        raise self._missing("metrics")

    def empty_metrics(self) -> dict:
        """The metric keys with no value, when there are no labels."""
        return {self.primary: None}

    def evaluate(self, scores: np.ndarray, y: np.ndarray | None, thresholds: list[float] | None = None,
                 groups: np.ndarray | None = None, positive: int | None = None) -> dict:
        """The task's metrics of `scores` against truth `y` (None: no labels, no metrics); with
        `groups` (a query id per row) ranking metrics over `relevance` are added."""
        if y is None:
            return {}
        out = self.metrics(scores, y, thresholds)
        if groups is not None:
            out.update(ranking.metrics(self.relevance(scores, positive), np.asarray(y, np.float64), groups))
        return out

    def same(self, scores: np.ndarray, ref: np.ndarray, thresholds: list[float] | None) -> np.ndarray:
        """Per input: does the decision on `scores` equal the one on `ref`?"""
        raise self._missing("same")

    def agreement(self, scores: np.ndarray, ref: np.ndarray, thresholds: list[float] | None = None,
                  groups: np.ndarray | None = None, positive: int | None = None) -> dict:
        """How closely a variant's scores follow the reference's on the same inputs.

        `label_agreement`: the share of inputs with the same decision (`agreement_rule`), and
        with `groups` the share of queries with the same top document (`top1_agreement`);
        `max_abs_prob_diff` / `mean_abs_prob_diff`: score differences.
        """
        a, b = np.asarray(scores, np.float64), np.asarray(ref, np.float64)
        diff = np.abs(a - b)
        n = len(a)
        out = {
            "label_agreement": float(self.same(a, b, thresholds).mean()) if n else 1.0,
            "max_abs_prob_diff": float(diff.max()) if diff.size else 0.0,
            "mean_abs_prob_diff": float(diff.mean()) if diff.size else 0.0,
        }
        if groups is not None and n:
            out["top1_agreement"] = ranking.top1_agreement(
                self.relevance(a, positive), self.relevance(b, positive), groups)
        return out

    def margins(self, ref: np.ndarray, scores: np.ndarray, thresholds: list[float] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """(m, d), each [n, k]: how far each of an input's k decisions stands from its boundary
        in the reference (m >= 0), and how far the variant moved it (d < 0: towards the
        boundary; the decision flips where d <= -m). `exporter/evidence.py` turns them into a
        flip rate with its confidence."""
        raise self._missing("margins")

    def decision_thresholds(self, thresholds, n_outputs: int) -> list[float] | None:
        """The thresholds decisions use (None: the task has none)."""
        return None

    def calibrate(self, ref_scores: np.ndarray, y: np.ndarray | None) -> list[float] | None:
        """Decision thresholds tuned on the reference's scores (None: the task has none)."""
        return None

    def checkpoint_metric(self, ranking_data: bool) -> str:
        """The metric training keeps its best checkpoint by."""
        return ranking.PRIMARY if ranking_data else self.primary

    def primary_metric(self, ranking_data: bool) -> str:
        return ranking.PRIMARY if ranking_data else self.primary

    def test_report(self, scores: np.ndarray, y: np.ndarray, names: list[str]) -> dict:
        """Extra test-set figures training writes (per class, per label)."""
        return {}

    # -- reranking ----------------------------------------------------------------------------

    def can_rerank(self, n_outputs: int) -> bool:
        """Whether a pair model with this head grades a candidate (one score or two classes)."""
        return False

    def relevance(self, scores: np.ndarray, positive: int | None = None) -> np.ndarray:
        """The score a reranker ranks by."""
        raise BertfastError(f"a {self.name} model does not grade candidates; rerank needs one score or two classes.")

    # -- what the runtime returns and writes ---------------------------------------------------

    def outputs(self, scores: np.ndarray, labels: list[str], thresholds: list[float] | None = None,
                top_k: int = 1) -> list:
        """`Classifier.predict`'s answer per input."""
        raise self._missing("outputs")

    def check_top_k(self, top_k: int, where: str, flag: str = "--top-k") -> None:
        """Refuse `top_k` above 1 where the task has no ranking of labels."""
        if top_k != 1:
            raise BertfastError(f"{flag} is for single-label exports; {where} is {self.name} and writes "
                                f"{self.writes}; drop {flag}.")

    writes: str = ""

    def columns(self, labels: list[str], top_k: int, all_scores: bool, txt: bool) -> list[str]:
        """The prediction columns `bertfast predict` appends (see runtime/outputs.py)."""
        raise self._missing("columns")

    def column_values(self, proba: np.ndarray, p64: np.ndarray, labels: list[str], top_k: int, all_scores: bool,
                      thresholds: list[float] | None, separator: str | None, txt: bool) -> list[list]:
        """Columns in the order of `columns` (`p64`: scores rounded to 6 decimals as float64)."""
        raise self._missing("column_values")
