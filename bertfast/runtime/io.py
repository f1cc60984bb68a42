"""Reading and writing the files bertfast classifies or trains on, in one place.

`bertfast predict` streams its input through `read_chunks` (`readers.py`) and writes with
`WRITERS` (`writers.py`); training data (`bertfast.data`) is read by the same readers, so a file
means the same thing to training and to inference (quoting, BOM, extensions: `formats.format_of`,
and the same refusals of malformed input: see `readers.py`). The Ray engine shares the prediction
columns (`outputs.py`: `Predictions`, `prediction_names`, `prediction_values`) and the pair
flags (`PredictionRun.pair_column`). Parquet needs pyarrow
(`pip install 'bertfast[io]'`); the other formats only the standard library.

`-` as the input or output path means standard input or output (`Stdin`, `STDIO`): a batch
script pipes rows in and predictions out. Stdin's format is sniffed (`sniff_format`) unless
`--input-format` is given.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BertfastError, DataError
from ..formats import NAMES
from .options import RuntimeOptions
from .outputs import (
    SEPARATOR,
    Predictions,
    check_output_separator,
    is_label_column,
    prediction_names,
    prediction_values,
)
from .readers import LINE_BREAKS, MAX_LINE_CHARS, Chunk, check_unique_columns, missing_column, read_chunks
from .writers import WRITERS, check_labels_fit_format, json_default

__all__ = [
    "Chunk", "read_chunks", "WRITERS", "MAX_LINE_CHARS", "LINE_BREAKS", "check_labels_fit_format", "check_unique_columns",
    "json_default", "check_io_flags", "PredictionRun", "require_int", "prediction_names", "prediction_values",
    "is_label_column", "Predictions", "model_inputs", "pair_spec", "read_inputs", "STDIO", "is_stdio", "Stdin",
    "sniff_format",
]

STDIO = "-"  # the path that means standard input (--input) or standard output (--output)


def is_stdio(path) -> bool:
    """True for `-`, the conventional name of standard input/output."""
    return str(path) == STDIO


class _Replay(io.RawIOBase):
    """`head` (bytes already read from `raw`), then the rest of `raw`."""

    def __init__(self, head: bytes, raw):
        self.head, self.raw = memoryview(head), raw  # a view: slicing it copies nothing

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            data, self.head = self.head[:len(b)], self.head[len(b):]
        else:
            # read1: whatever the pipe holds now, so rows stream instead of waiting for a full buffer.
            data = self.raw.read1(len(b)) if hasattr(self.raw, "read1") else self.raw.read(len(b))
        b[:len(data)] = data
        return len(data)


class Stdin:
    """Standard input (`--input -`) as the readers' source: read once, front to back.

    `first_line` peeks at the first non-blank line (for `sniff_format`); the readers then get
    those bytes again through `open_text`. Parquet, whose footer is at the end, is spooled to an
    anonymous temp file first (`seekable_copy`), so memory stays bounded.
    """

    def __init__(self, raw=None):
        self.raw = raw if raw is not None else sys.stdin.buffer
        self.head = b""

    def __str__(self) -> str:
        return f"{STDIO} (standard input)"  # error messages say "--input - (standard input) ..."

    def first_line(self) -> str:
        """The first non-blank line ('' if there is none), without its line break."""
        line = b""
        while len(self.head) < MAX_LINE_CHARS:
            line = self.raw.readline(MAX_LINE_CHARS)
            self.head += line
            if self.head == line:  # the first line: a UTF-8 byte order mark is not content
                line = line.removeprefix(b"\xef\xbb\xbf")
            if not line or line.strip():
                break
        return line.decode("utf-8", "replace").rstrip("\r\n")

    def open_text(self, newline: str | None):
        """The whole input as text (UTF-8, BOM dropped), peeked bytes included."""
        raw, self.head = _Replay(self.head, self.raw), b""
        return io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8-sig", newline=newline)

    def seekable_copy(self):
        raw, self.head = _Replay(self.head, self.raw), b""
        f = tempfile.TemporaryFile()
        shutil.copyfileobj(io.BufferedReader(raw), f)
        f.seek(0)
        return f


def sniff_format(first: str, text_column: str) -> str:
    """The format of standard input, from its first non-blank line (`Stdin.first_line`).

    Parquet's magic bytes -> parquet; a JSON object -> jsonl; a comma- or tab-separated header
    that holds `text_column` -> csv or tsv; anything else -> txt (one text per line, so a
    header-less file is never mistaken for a table).
    """
    if first.startswith("PAR1"):
        return "parquet"
    try:
        if isinstance(json.loads(first), dict):
            return "jsonl"
    except (ValueError, RecursionError):
        pass
    for fmt, delim in (("csv", ","), ("tsv", "\t")):
        if delim in first:
            try:
                header = next(csv.reader([first], delimiter=delim), [])
            except csv.Error:  # e.g. a quoted field spanning lines: not a header we can read
                continue
            if text_column in header:
                return fmt
    return "txt"


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
    """The fields both predict engines share (keyword-only): the inference settings, the pair
    columns and what goes into the output. See `PredictConfig` and `runtime.ray.ClassifyConfig`.

    Attributes (besides `options`, `chunk_size`, `top_k`, `all_scores`, `force`, `progress`):
        text_pair_column: the column holding the second text of each pair (pair exports):
            inputs are (text_column, text_pair_column).
        query_column: the reranking spelling: inputs are (query_column, text_column), the query
            first. At most one of the two; required (one of them) iff the export is a pair export.
        label_separator: what joins a multi-label row's `labels` in CSV/TSV/TXT output
            (default `|`); JSONL and Parquet hold a list. Ignored by other tasks.
    """

    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    chunk_size: int = 4096
    top_k: int = 1
    all_scores: bool = False
    text_pair_column: str | None = None
    query_column: str | None = None
    label_separator: str | None = None
    force: bool = False
    progress: bool = True

    def check_pair_flags(self, text_column: str) -> None:
        """The pair and separator flags on their own (the export's task is checked once loaded)."""
        for flag, value in (("--text-pair-column", self.text_pair_column), ("--query-column", self.query_column)):
            if value is not None and (not isinstance(value, str) or not value):
                raise BertfastError(f"{flag} must be a column name; got {value!r}.")
            if value is not None and value == text_column:
                raise BertfastError(
                    f"{flag} {value!r} is the --text-column too; a pair needs two different columns."
                )
        if self.text_pair_column is not None and self.query_column is not None:
            raise BertfastError(
                "pass one of --text-pair-column and --query-column, not both: each names the other text of a pair "
                "(--query-column Q --text-column D is the same as --text-column Q --text-pair-column D)."
            )
        check_output_separator(self.label_separator)

    def pair_column(self) -> tuple[str | None, str | None, bool]:
        """`pair_spec` of this run's flags."""
        return pair_spec(self.text_pair_column, self.query_column)

    def separator(self, output_format: str) -> str | None:
        """What joins multi-label `labels` in `output_format` (None: a list, for JSONL/Parquet)."""
        return (self.label_separator or SEPARATOR) if output_format in ("csv", "tsv", "txt") else None


def pair_spec(text_pair_column: str | None, query_column: str | None) -> tuple[str | None, str | None, bool]:
    """(column, its flag, query_first) for the other text of each pair; (None, None, False) for
    single texts. query_first: that column's text goes first (`--query-column`)."""
    if query_column is not None:
        return query_column, "--query-column", True
    if text_pair_column is not None:
        return text_pair_column, "--text-pair-column", False
    return None, None, False


def read_inputs(path: Path, fmt: str, text_column: str, chunk_size: int, pair_column: str | None = None,
                pair_flag: str = "--text-pair-column") -> Iterator[Chunk]:
    """`read_chunks`, plus for text pairs the other text of each row (`Chunk.pair_texts`).

    Both columns of a pair must hold a string in every row; an error names the data row (1-based,
    the header and blank lines not counted), its line (text formats), the column and its flag
    (`--text-column`, or `pair_flag`). CSV/TSV cells are never null: an empty cell is an empty
    text, as for single texts. TXT input (one text per line) has no second column.
    """
    if pair_column is None:
        yield from read_chunks(path, fmt, text_column, chunk_size)
        return
    columns = ((text_column, "--text-column"), (pair_column, pair_flag))
    done = 0
    for chunk in read_chunks(path, fmt, None, chunk_size):  # the readers check no column: checked here
        if fmt == "txt":
            raise DataError(f"{chunk.src} is TXT, one text per line, so it has no {pair_column!r} column for "
                            f"{pair_flag}; write the pairs as CSV, TSV, JSONL or Parquet with one column per text.")
        found = []
        for col, flag in columns:
            if col not in chunk.columns:
                raise missing_column(chunk.src, col, chunk.columns, flag)
            values = chunk.column(col)
            if set(map(type, values)) - {str}:  # one C-level pass; the scan only when something is wrong
                i, v = next((i, v) for i, v in enumerate(values) if not isinstance(v, str))
                kind = "null" if v is None else type(v).__name__
                if chunk.kind == "dicts" and col not in chunk.rows[i]:
                    kind = "missing"
                at = f" ({chunk.where(i)})" if chunk.lines is not None else ""
                raise DataError(
                    f"{chunk.src} data row {done + i + 1}{at}: {col!r} ({flag}) is {kind}, not a string; every "
                    "text pair needs both texts: fill it ('' for an empty text) or drop that row."
                )
            found.append(values)
        chunk.texts, chunk.pair_texts = found
        done += len(chunk)
        yield chunk


def model_inputs(texts: list[str], others: list[str] | None, query_first: bool) -> list:
    """What the Classifier takes: the texts, or pairs of the texts and the pair column's texts."""
    if others is None:
        return texts
    return list(zip(others, texts)) if query_first else list(zip(texts, others))


def require_int(flag: str, value, low: int) -> None:
    """Raise a BertfastError naming `flag` unless `value` is None or an integer >= `low`."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
        raise BertfastError(f"{flag} must be an integer >= {low}; got {value!r}.")
