"""Reading and writing the files bertfast classifies or trains on, in one place.

`bertfast predict` streams its input through `read_chunks` (`readers.py`) and writes with
`WRITERS` (`writers.py`); training data (`bertfast.data`) is read by the same readers, so a file
means the same thing to training and to inference (quoting, BOM, extensions: `formats.format_of`,
and the same refusals of malformed input: see `readers.py`). The Ray engine shares the prediction
columns (`prediction_names`, `prediction_values`). Parquet needs pyarrow
(`pip install 'bertfast[io]'`); the other formats only the standard library.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import BertfastError, DataError
from ..formats import NAMES
from ..metrics import top_k as top_k_indices
from .options import RuntimeOptions
from .readers import LINE_BREAKS, MAX_LINE_CHARS, Chunk, check_unique_columns, read_chunks
from .writers import WRITERS, check_labels, is_label_column, json_default

__all__ = [
    "Chunk", "read_chunks", "WRITERS", "MAX_LINE_CHARS", "LINE_BREAKS", "check_labels", "check_unique_columns",
    "json_default", "check_io_flags", "PredictionRun", "require_int", "prediction_names", "prediction_values",
    "is_label_column",
]

log = logging.getLogger(__name__)


def check_io_flags(input_format: str | None, output_format: str | None, chunk_size: int, top_k: int,
                   output_formats: tuple[str, ...] = NAMES, context: str = "") -> None:
    """The I/O flags both predict engines take (inference settings are checked by RuntimeOptions).

    None means "not given" and passes; `context` ends choice errors (e.g. " with --engine ray").
    """
    for flag, value, allowed in (("--input-format", input_format, NAMES), ("--output-format", output_format, output_formats)):
        if value is not None and value not in allowed:
            raise BertfastError(f"{flag} must be one of {', '.join(allowed)}{context}; got {value!r}.")
    for flag, value in (("--chunk-size", chunk_size), ("--top-k", top_k)):
        require_int(flag, value, 1)


@dataclass(kw_only=True)
class PredictionRun:
    """The fields both predict engines share (keyword-only): the inference settings and what
    goes into the output. See `PredictConfig` and `runtime.ray.ClassifyConfig`."""

    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    chunk_size: int = 4096
    top_k: int = 1
    all_scores: bool = False
    force: bool = False
    progress: bool = True


def require_int(flag: str, value, low: int) -> None:
    """Raise a BertfastError naming `flag` unless `value` is None or an integer >= `low`."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
        raise BertfastError(f"{flag} must be an integer >= {low}; got {value!r}.")


# -- predictions ---------------------------------------------------------------------------


def prediction_names(columns: list[str], labels: list[str], top_k: int, all_scores: bool,
                     src: str = "the input") -> list[str]:
    """The prediction columns appended to `columns`: label, score (label_2, score_2, ...; prob_<label>).

    If the input already has one of them (e.g. a labeled test set), all get a `pred_` prefix; if
    it has one of those too, DataError naming the column to rename (an input column is never
    overwritten, and the names never depend on more than one fallback).
    """
    names = ["label", "score"]
    for k in range(2, top_k + 1):
        names += [f"label_{k}", f"score_{k}"]
    if all_scores:
        names += [f"prob_{lab}" for lab in labels]
    taken = set(columns)
    if taken.isdisjoint(names):
        return names
    prefixed = [f"pred_{n}" for n in names]
    clash = [n for n in prefixed if n in taken]
    if clash:
        first = next(n for n in names if n in taken)
        raise DataError(
            f"{src} has the columns {first!r} and {clash[0]!r}: the prediction column {first!r} and its "
            f"fallback {clash[0]!r} would both overwrite input columns; rename {clash[0]!r} in the input."
        )
    # e.g. a labeled test set: never overwrite the gold `label` column.
    log.warning("the input already has a column among %s; prediction columns get a `pred_` prefix", names)
    return prefixed


def prediction_values(proba: np.ndarray, labels: list[str], top_k: int, all_scores: bool) -> list[list]:
    """Columns (lists) in the order of `prediction_names`, from class probabilities."""
    # float32 -> rounded float64, so text outputs show 0.912345, not 0.9123454689979553.
    p64 = np.round(proba.astype(np.float64), 6)
    top = top_k_indices(proba, top_k)
    scores = np.take_along_axis(p64, top, axis=1)
    lab = np.array(labels, dtype=object)
    cols: list[list] = []
    for k in range(top.shape[1]):
        cols += [lab[top[:, k]].tolist(), scores[:, k].tolist()]
    if all_scores:
        cols += [p64[:, j].tolist() for j in range(len(labels))]
    return cols
