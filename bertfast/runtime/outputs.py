"""The prediction columns `bertfast predict` appends to every row, per task (both engines).

Columns, after every input column (if the input already has one of these names, all of ours get a
`pred_` prefix; if it has that too, the run is refused; `--output-prefix P` names them `P<name>`
instead, and a clash with an input column is refused):

- single_label: `label`, `score` (the best class and its probability); `--top-k K` adds
  `label_2`, `score_2`, ... `label_K`, `score_K`; `--all-scores` adds `prob_<label>` per class.
- multi_label: `labels` (every label whose probability reaches its threshold, in the export's
  label order; none is an empty list / empty string) and always `score_<label>` per label (the
  sigmoid probabilities, which `Classifier.predict` returns too: the thresholds alone lose them).
  `labels` is a list in JSONL and Parquet (list<string>), one string joined by
  `--label-separator` (default `|`) in CSV, TSV and TXT. `--all-scores` changes nothing.
- regression: `score` (the model's number; `--all-scores` changes nothing).

TXT output has one line per input row and no input columns: `label<TAB>score` (single_label),
the labels joined by the separator (multi_label; an empty line for none), the score (regression).
`--top-k` above 1 is for single-label exports only. Scores are float32 in Parquet, rounded to 6
decimals elsewhere. Needs numpy only (pyarrow only for `arrow_type`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .. import tasks as _tasks
from ..errors import BertfastError, DataError
from .readers import LINE_BREAKS

log = logging.getLogger(__name__)

SEPARATOR = "|"  # --label-separator's default
LABELS_COLUMNS = ("labels", "pred_labels")  # the multi-label column, as named in an output


def is_label_column(name: str) -> bool:
    """True for the string prediction columns (label, label_2, labels, pred_label, ...), False for scores."""
    return name.startswith(("label", "pred_label"))


def arrow_type(name: str, score_type, lists: bool = True):
    """The Arrow type of prediction column `name`: `labels` list<string> (or string when joined),
    other label columns string, scores `score_type`."""
    import pyarrow as pa

    if name in LABELS_COLUMNS:
        return pa.list_(pa.string()) if lists else pa.string()
    return pa.string() if is_label_column(name) else score_type


def _task(model) -> str:
    """The task name of a `Manifest` (`task_name`) or `Classifier` (`task.name`)."""
    return getattr(model, "task_name", None) or model.task.name


def _names(task: str, labels: list[str], top_k: int, all_scores: bool, txt: bool) -> list[str]:
    return _tasks.get(task).columns(labels, top_k, all_scores, txt)


def prediction_names(columns: list[str], labels: list[str], top_k: int, all_scores: bool,
                     src: str = "the input", task: str = "single_label", txt: bool = False,
                     prefix: str | None = None) -> list[str]:
    """The prediction columns appended to `columns` (see the module docstring; `txt`: the columns
    of a TXT line only).

    If the input already has one of them (e.g. a labeled test set), all get a `pred_` prefix; if
    it has one of those too, DataError naming both columns and `--output-prefix` (an input column
    is never overwritten, and the names never depend on more than one fallback). `prefix`
    (`--output-prefix`): every name is `prefix + name`, no fallback; a clash is a DataError.
    """
    names = _names(task, labels, top_k, all_scores, txt)
    taken = set(columns)
    if prefix and not txt:
        names = [prefix + n for n in names]
        clash = next((n for n in names if n in taken), None)
        if clash is not None:
            raise DataError(f"{src} already has the column {clash!r}, which --output-prefix {prefix!r} would "
                            "overwrite with a prediction column; choose another --output-prefix.")
        return names
    if txt or taken.isdisjoint(names):  # TXT output holds no input column
        return names
    prefixed = [f"pred_{n}" for n in names]
    clash = [n for n in prefixed if n in taken]
    if clash:
        first = next(n for n in names if n in taken)
        raise DataError(
            f"{src} has both {first!r} and {clash[0]!r} columns, so the prediction column {first!r} and its "
            f"fallback {clash[0]!r} would both overwrite input columns; pass --output-prefix PREFIX to name "
            f"the prediction columns (--output-prefix p2_ writes p2_{first}), or rename {clash[0]!r} in the input."
        )
    # e.g. a labeled test set: never overwrite the gold `label` column.
    log.warning("the input already has a column among %s; prediction columns get a `pred_` prefix "
                "(--output-prefix chooses another)", names)
    return prefixed


def prediction_values(proba: np.ndarray, labels: list[str], top_k: int, all_scores: bool,
                      task: str = "single_label", thresholds: list[float] | None = None,
                      separator: str | None = None, txt: bool = False) -> list[list]:
    """Columns (lists) in the order of `prediction_names`, from the scores `Classifier.iter_proba`
    yields. Multi-label decisions are `Task.decide` with the export's `thresholds`, exactly as
    `Classifier.predict`; `separator`: join each row's labels into one string (None: a list)."""
    # float32 -> rounded float64, so text outputs show 0.912345, not 0.9123454689979553.
    p64 = np.round(proba.astype(np.float64), 6)
    return _tasks.get(task).column_values(proba, p64, labels, top_k, all_scores, thresholds, separator, txt)


@dataclass(frozen=True)
class Predictions:
    """The prediction columns of one run: their names and how to fill them from scores.

    Build it with `Predictions.plan` once the export is known; `values(scores)` then gives the
    columns of a chunk (lists aligned with `names`).
    """

    task: str
    labels: tuple[str, ...]
    names: tuple[str, ...]
    top_k: int = 1
    all_scores: bool = False
    thresholds: tuple[float, ...] | None = None
    separator: str | None = None  # multi_label: `labels` joined with it; None: a list
    txt: bool = False
    prefix: str | None = None  # --output-prefix, which every name carries (writers strip it for types)

    @classmethod
    def plan(cls, columns: list[str], model, *, top_k: int = 1, all_scores: bool = False,
             separator: str | None = None, txt: bool = False, src: str = "the input",
             prefix: str | None = None) -> Predictions:
        """For a `Classifier` or `Manifest` `model` (its task name, labels, thresholds);
        `prefix`: `--output-prefix` (see `prediction_names`)."""
        task = _task(model)
        labels = list(model.labels)
        names = prediction_names(columns, labels, top_k, all_scores, src=src, task=task, txt=txt, prefix=prefix)
        th = tuple(model.thresholds) if model.thresholds is not None else None
        return cls(task, tuple(labels), tuple(names), top_k, all_scores, th,
                   separator if _tasks.get(task).label_lists else None, txt, prefix if prefix and not txt else None)

    def values(self, scores: np.ndarray) -> list[list]:
        return prediction_values(scores, list(self.labels), self.top_k, self.all_scores, self.task,
                                 None if self.thresholds is None else list(self.thresholds), self.separator, self.txt)


def check_task_flags(model, *, top_k: int = 1, pair_flag: str | None = None, separator: str | None = None,
                     where: str = "the export") -> None:
    """Refuse flags the export's task cannot honour, before any row is classified.

    Args:
        model: a `Manifest` (`task_name`, `pair`, `labels`) or `Classifier` (`task.name`, `pair`).
        pair_flag: the flag naming the other text of each pair (`--text-pair-column` or
            `--query-column`), None when neither was given.
        separator: what multi-label `labels` are joined with in this output (None: lists); a
            label holding it is refused (the joined string could not be split again).
    """
    task = _tasks.get(_task(model))
    if model.pair and pair_flag is None:
        raise BertfastError(
            f"{where} classifies text pairs; pass --text-pair-column COLUMN (the second text of each pair), "
            "or --query-column COLUMN for reranking (the query first, --text-column's text second)."
        )
    if not model.pair and pair_flag is not None:
        raise BertfastError(
            f"{pair_flag} is for exports of text-pair models, but {where} classifies single texts; drop {pair_flag}."
        )
    task.check_top_k(top_k, where)
    if top_k > len(model.labels):
        raise BertfastError(
            f"--top-k {top_k} is more than the model's {len(model.labels)} labels ({', '.join(model.labels)})."
        )
    if task.label_lists and separator is not None:
        for lab in model.labels:
            if separator in lab:
                raise BertfastError(
                    f"the export's label {lab!r} holds the --label-separator {separator!r}, so the joined `labels` "
                    "could not be split again; pass another --label-separator, or write jsonl/parquet output (lists)."
                )


def check_output_separator(separator: str | None) -> None:
    """`--label-separator`: None (the default, `|`) or a non-empty string without line breaks."""
    if separator is not None and (not isinstance(separator, str) or not separator
                                  or any(c in separator for c in LINE_BREAKS)):
        raise BertfastError(f"--label-separator must be a non-empty string without line breaks; got {separator!r}.")
