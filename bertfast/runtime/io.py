"""Reading and writing the files bertfast classifies or trains on, in one place.

`bertfast predict` streams its input through `read_chunks` and writes with `WRITERS`; training
data (`bertfast.data`) is read by the same readers, so a file means the same thing to training
and to inference (quoting, BOM, extensions: `formats.format_of`). The Ray engine shares the
prediction columns (`prediction_names`, `prediction_values`). Parquet needs pyarrow
(`pip install 'bertfast[io]'`); the other formats only the standard library.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from ..errors import BertfastError, DataError
from ..formats import NAMES
from ..metrics import top_k as top_k_indices
from .options import RuntimeOptions

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


# -- reading -------------------------------------------------------------------------------


class Chunk:
    """Rows of a file in their native shape plus their texts.

    kind "lists": rows are lists aligned with `columns` (CSV/TSV/TXT); "dicts": JSON objects;
    "arrow": one pyarrow RecordBatch. `texts` is None when no text column was asked for.
    """

    __slots__ = ("kind", "columns", "rows", "texts", "total_rows")

    def __init__(self, kind: str, columns: list[str], rows, texts: list[str] | None, total_rows: int | None = None):
        self.kind, self.columns, self.rows, self.texts, self.total_rows = kind, columns, rows, texts, total_rows

    def __len__(self) -> int:
        return self.rows.num_rows if self.kind == "arrow" else len(self.rows)

    def column(self, name: str) -> list:
        """The values of one column (None where a JSON object lacks the field)."""
        if self.kind == "arrow":
            return self.rows.column(name).to_pylist()
        if self.kind == "dicts":
            return [d.get(name) for d in self.rows]
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def as_lists(self, columns: list[str]) -> list[list]:
        if self.kind == "lists":
            return self.rows
        dicts = self.rows if self.kind == "dicts" else self.rows.to_pylist()
        return [[d.get(c) for c in columns] for d in dicts]

    def as_dicts(self) -> list[dict]:
        if self.kind == "dicts":
            return self.rows
        if self.kind == "arrow":
            return self.rows.to_pylist()
        return [dict(zip(self.columns, r)) for r in self.rows]


def read_chunks(path: Path, fmt: str, text_column: str | None, chunk_size: int, flag: str | None = "--input",
                require_rows: bool = True) -> Iterator[Chunk]:
    """Stream a file as chunks of at most `chunk_size` rows.

    Args:
        path: a local file.
        fmt: its format (a `formats.NAMES` entry).
        text_column: the column that must hold a string in every row (`Chunk.texts`); None:
            nothing is checked (the caller checks what it needs).
        chunk_size: rows per chunk.
        flag: the CLI flag naming the file in error messages, or None for the bare path.
        require_rows: no rows is a DataError. When False, a file with a header (or schema) but
            no rows yields one empty chunk carrying its columns; one without a header, nothing.

    Raises:
        DataError: not UTF-8, not valid CSV/JSON/Parquet, a missing text column or a non-string
            text (the message names the line or row), or no rows.
    """
    src = f"{flag} {path}" if flag else str(path)
    if fmt in ("csv", "tsv"):
        gen = _read_delimited(path, "," if fmt == "csv" else "\t", text_column, chunk_size, src)
    elif fmt == "jsonl":
        gen = _read_jsonl(path, text_column, chunk_size, src)
    elif fmt == "txt":
        gen = _read_txt(path, chunk_size)
    else:
        gen = _read_parquet(path, text_column, chunk_size, src)
    empty = True
    try:
        for chunk in gen:
            if len(chunk) or not require_rows:
                empty = False
                yield chunk
    except UnicodeDecodeError as e:
        raise DataError(f"{src} is not UTF-8 text ({e.reason} at byte {e.start}); re-encode it as UTF-8.") from None
    except csv.Error as e:
        raise DataError(f"{src} is not valid {fmt.upper()} ({e}); check the file or --input-format.") from None
    if empty and require_rows:
        raise DataError(f"{src} has no rows to classify; check the file (and --input-format).")


def _missing_column(src: str, col: str, found: list[str]) -> DataError:
    return DataError(
        f"{src} has no column {col!r}; columns found: {', '.join(map(repr, found)) or 'none'}. "
        "Pass --text-column NAME."
    )


def _read_delimited(path: Path, delim: str, col: str | None, n: int, src: str) -> Iterator[Chunk]:
    # Articles can exceed the csv module's 128 KiB default field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delim)
        header = next(reader, None)
        if header is None:
            return
        if col is not None and col not in header:
            raise _missing_column(src, col, header)
        ti = None if col is None else header.index(col)
        rows: list[list[str]] = []
        yielded = False
        for row in reader:
            if not row:  # blank line
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{src} line {reader.line_num} has {len(row)} fields but the header has "
                    f"{len(header)}; quote fields that contain the delimiter, or fix that row."
                )
            rows.append(row)
            if len(rows) == n:
                yield Chunk("lists", header, rows, None if ti is None else [r[ti] for r in rows])
                rows, yielded = [], True
        if rows or not yielded:
            yield Chunk("lists", header, rows, None if ti is None else [r[ti] for r in rows])


def _read_jsonl(path: Path, col: str | None, n: int, src: str) -> Iterator[Chunk]:
    with open(path, encoding="utf-8-sig") as f:
        rows: list[dict] = []
        columns: list[str] | None = None
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{src} line {lineno} is not valid JSON ({e.msg}); JSONL needs one object per line.") from None
            if not isinstance(obj, dict):
                raise DataError(
                    f"{src} line {lineno} is a JSON {type(obj).__name__}, not an object; JSONL needs one object per line."
                )
            if col is not None:
                _check_json_text(obj, col, lineno, src, columns)
            if columns is None:
                columns = list(obj)
            rows.append(obj)
            if len(rows) == n:
                yield Chunk("dicts", columns, rows, None if col is None else [r[col] for r in rows])
                rows = []
        if rows:
            yield Chunk("dicts", columns or [col], rows, None if col is None else [r[col] for r in rows])


def _check_json_text(obj: dict, col: str, lineno: int, src: str, columns: list[str] | None) -> None:
    if col not in obj:
        if columns is None:
            raise _missing_column(src, col, list(obj))
        raise DataError(f"{src} line {lineno} has no {col!r} field; fields found: {', '.join(obj)}.")
    if not isinstance(obj[col], str):
        kind = type(obj[col]).__name__ if obj[col] is not None else "null"
        raise DataError(f"{src} line {lineno}: {col!r} is {kind}, not a string; fix or drop that row.")


def _read_txt(path: Path, n: int) -> Iterator[Chunk]:
    # One text per line; an empty line is an empty text (kept, so output lines align with input).
    with open(path, encoding="utf-8-sig", newline=None) as f:
        while True:
            lines = [line[:-1] if line.endswith("\n") else line for line in islice(f, n)]
            if not lines:
                return
            yield Chunk("lists", ["text"], [[t] for t in lines], lines)


def _read_parquet(path: Path, col: str | None, n: int, src: str) -> Iterator[Chunk]:
    from ..errors import require

    require("pyarrow", "io")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{src} is not a readable Parquet file ({e}).") from None
    names = pf.schema_arrow.names
    total, offset = pf.metadata.num_rows, 0
    if col is None:
        yielded = False
        for batch in pf.iter_batches(batch_size=n):
            yielded = True
            yield Chunk("arrow", names, batch, None, total)
        if not yielded:  # no rows: one empty chunk that still carries the columns
            yield Chunk("arrow", names, pa.RecordBatch.from_pylist([], schema=pf.schema_arrow), None, total)
        return
    if col not in names:
        raise _missing_column(src, col, names)
    ctype = pf.schema_arrow.field(col).type
    if not (pa.types.is_string(ctype) or pa.types.is_large_string(ctype)):
        raise DataError(f"{src}: column {col!r} has type {ctype}, not string; pass the text column with --text-column.")
    for batch in pf.iter_batches(batch_size=n):
        texts = batch.column(col).to_pylist()
        if batch.column(col).null_count:
            i = texts.index(None)
            raise DataError(f"{src} row {offset + i} has no text (null in {col!r}); fill or drop it.")
        yield Chunk("arrow", names, batch, texts, total)
        offset += len(texts)


# -- predictions ---------------------------------------------------------------------------


def prediction_names(columns: list[str], labels: list[str], top_k: int, all_scores: bool) -> list[str]:
    """The prediction columns appended to `columns`: label, score (label_2, score_2, ...; prob_<label>).

    If the input already has one of them (e.g. a labeled test set), all get a `pred_` prefix.
    """
    names = ["label", "score"]
    for k in range(2, top_k + 1):
        names += [f"label_{k}", f"score_{k}"]
    if all_scores:
        names += [f"prob_{lab}" for lab in labels]
    if set(names) & set(columns):
        # e.g. a labeled test set: never overwrite the gold `label` column.
        log.warning("the input already has a column among %s; prediction columns get a `pred_` prefix", names)
        names = [f"pred_{n}" for n in names]
    return names


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


def is_label_column(name: str) -> bool:
    """True for the string prediction columns (label, label_2, pred_label, ...), False for scores."""
    return name.startswith(("label", "pred_label"))


# -- writing -------------------------------------------------------------------------------


class _TextWriter:
    """A local text file; `write` is per format (CSV/TSV: the csv module does its own newlines)."""

    def __init__(self, path: Path, fmt: str):
        self.f = open(path, "w", encoding="utf-8", newline="" if fmt in ("csv", "tsv") else None)

    def close(self) -> None:
        self.f.close()


class _DelimitedWriter(_TextWriter):
    def __init__(self, path: Path, fmt: str):
        super().__init__(path, fmt)
        self.w = csv.writer(self.f, delimiter="," if fmt == "csv" else "\t")
        self.columns: list[str] | None = None

    def write(self, chunk: Chunk, names: list[str], values: list[list]) -> None:
        if self.columns is None:
            self.columns = list(chunk.columns)
            self.w.writerow(self.columns + names)
        rows = chunk.as_lists(self.columns)
        self.w.writerows(r + list(p) for r, p in zip(rows, zip(*values)))


class _JsonlWriter(_TextWriter):
    def write(self, chunk: Chunk, names: list[str], values: list[list]) -> None:
        dumps = json.dumps
        self.f.writelines(
            dumps({**d, **dict(zip(names, p))}, ensure_ascii=False) + "\n" for d, p in zip(chunk.as_dicts(), zip(*values))
        )


class _TxtWriter(_TextWriter):
    def write(self, chunk: Chunk, names: list[str], values: list[list]) -> None:
        self.f.writelines(f"{lab}\t{s}\n" for lab, s in zip(values[0], values[1]))


class _ParquetWriter:
    def __init__(self, path: Path, fmt: str):
        from ..errors import require

        require("pyarrow", "io")
        self.path = path
        self.writer = None
        self.schema = None

    def write(self, chunk: Chunk, names: list[str], values: list[list]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if chunk.kind == "arrow":
            table = pa.Table.from_batches([chunk.rows])
        elif chunk.kind == "dicts":
            table = pa.Table.from_pylist(chunk.rows, schema=self.schema and _input_part(self.schema, len(names)))
        else:
            table = pa.Table.from_arrays([pa.array(c, pa.string()) for c in zip(*chunk.rows)], names=chunk.columns)
        for name, col in zip(names, values):
            table = table.append_column(name, pa.array(col, pa.string() if is_label_column(name) else pa.float32()))
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(str(self.path), self.schema)
        self.writer.write_table(table.cast(self.schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _input_part(schema, n_pred: int):
    import pyarrow as pa

    return pa.schema(list(schema)[: len(schema) - n_pred])


# One writer per format name: `WRITERS[fmt](path, fmt)`, then `.write(chunk, names, values)`, `.close()`.
WRITERS = {"csv": _DelimitedWriter, "tsv": _DelimitedWriter, "jsonl": _JsonlWriter, "txt": _TxtWriter,
           "parquet": _ParquetWriter}
