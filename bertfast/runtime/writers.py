"""Writing predictions: one writer per output format (`WRITERS`), each checking what it cannot hold.

Rules (each refusal is a DataError naming the input file, line or row, and column):

- CSV/TSV/Parquet have one set of columns, fixed by the first row: a JSONL row with a field the
  first row lacks is refused (its value would be lost); a missing field is written empty/null.
  JSONL output keeps every row's own fields, but a field named like a prediction column is
  refused (the prediction would overwrite it).
- Parquet has one type per column, fixed by the first chunk: a value of another type later (an
  int column that turns into strings) is refused, naming the column and the row, before anything
  is published (predict writes through `utils.atomic_file`).
- JSON (JSONL output, and nested values in CSV/TSV cells) cannot hold every value Parquet can:
  datetimes/dates/times become ISO 8601 strings, durations `PT<seconds>S`, decimals their exact
  str, bytes base64, NaN and infinities null; any other type its `str`.
- TXT output is one line per row, the task's TXT columns joined by tabs (`outputs.py`:
  `label<TAB>score`, the joined multi-label `labels`, or the regression `score`): labels holding
  a tab or a line break are refused (`check_labels_fit_format`, before the model runs).
- Prediction column types (Parquet): `outputs.arrow_type` (a multi-label `labels` is list<string>),
  of the name without its `--output-prefix`.
- The path `-` is standard output: text formats are written as UTF-8 whatever the locale, and
  `flush` after each chunk lets a reader downstream (`| head`) see rows as they are classified.
"""

from __future__ import annotations

import base64
import csv
import datetime
import json
import math
import sys
from decimal import Decimal
from pathlib import Path

from ..errors import BertfastError, DataError
from .outputs import arrow_type, is_label_column  # noqa: F401  (is_label_column re-exported)
from .readers import LINE_BREAKS, Chunk


def check_labels_fit_format(fmt: str, labels: list[str]) -> None:
    """Refuse labels that would misalign a line-based output (TXT) before any work is done."""
    if fmt != "txt":
        return
    for lab in labels:
        if any(c in lab for c in "\t" + LINE_BREAKS):
            raise BertfastError(
                f"the model's label {lab!r} holds a tab or line break, which would break TXT output "
                "(one `label<TAB>score` per line); write csv, tsv, jsonl or parquet output instead."
            )


def json_default(o):
    """`json.dumps(default=...)` for values JSON has no type for (see the module docstring)."""
    if isinstance(o, datetime.date | datetime.time):  # datetime is a date
        return o.isoformat()
    if isinstance(o, datetime.timedelta):
        return f"PT{o.total_seconds():g}S" if o >= datetime.timedelta(0) else f"-PT{-o.total_seconds():g}S"
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(o)).decode("ascii")
    return str(o)


def _finite(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def to_json(obj, chunk: Chunk, i: int) -> str:
    """One JSON document, NaN/inf as null; a value too deep to write is a DataError naming row `i`."""
    try:
        try:
            return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=json_default)
        except ValueError:  # NaN or an infinity somewhere (rare): the slow path
            return json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False, default=json_default)
    except RecursionError:
        raise DataError(f"{chunk.src} {chunk.where(i)}: a value is nested too deeply to write; flatten it.") from None


def _cell(v, chunk: Chunk, i: int):
    if isinstance(v, float):
        return v if math.isfinite(v) else None  # empty, as null is in JSON
    if v is None or isinstance(v, str | int):
        return v
    if isinstance(v, dict | list | tuple):
        return to_json(v, chunk, i)
    return json_default(v)


def _check_fields(chunk: Chunk, columns: list[str], fmt: str) -> None:
    """A JSONL row with a field the first row lacks would lose it in a one-header format."""
    if chunk.kind != "dicts":
        return
    known = set(columns)
    for i, d in enumerate(chunk.rows):
        if len(d) > len(known) or not known.issuperset(d):
            extra = next(k for k in d if k not in known)
            raise DataError(
                f"{chunk.src} {chunk.where(i)} has the field {extra!r}, which the first row lacks; {fmt.upper()} "
                f"output has the first row's columns only, so it would be lost. Add {extra!r} (null) to the first "
                "row, or write JSONL output (-o NAME.jsonl)."
            )


def _open_out(path: Path, mode: str, newline: str | None = None):
    """`path`, or standard output for `-`: a second file object over its descriptor, so our
    encoding (UTF-8) and newlines apply, and closing it leaves the descriptor open."""
    if str(path) != "-":
        return open(path, mode, encoding="utf-8" if "b" not in mode else None, newline=newline)
    sys.stdout.flush()  # anything printed before must come first
    return open(sys.stdout.fileno(), mode, encoding="utf-8" if "b" not in mode else None, newline=newline,
                closefd=False)


class _TextWriter:
    """A local text file or standard output; `write` is per format (CSV/TSV: the csv module does
    its own newlines)."""

    def __init__(self, path: Path, fmt: str, prefix: str | None = None):
        self.fmt = fmt
        self.f = _open_out(path, "w", newline="" if fmt in ("csv", "tsv") else None)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class _DelimitedWriter(_TextWriter):
    def __init__(self, path: Path, fmt: str, prefix: str | None = None):
        super().__init__(path, fmt)
        self.w = csv.writer(self.f, delimiter="," if fmt == "csv" else "\t")
        self.columns: list[str] | None = None

    def write(self, chunk: Chunk, names: list[str], values: list[list]) -> None:
        if self.columns is None:
            self.columns = list(chunk.columns)
            self.w.writerow(self.columns + names)
        _check_fields(chunk, self.columns, self.fmt)
        rows = chunk.as_lists(self.columns)
        if chunk.kind != "lists":  # typed values: nested ones as JSON, not Python reprs
            rows = [[_cell(v, chunk, i) for v in r] for i, r in enumerate(rows)]
        self.w.writerows(r + list(p) for r, p in zip(rows, zip(*values)))


class _JsonlWriter(_TextWriter):
    def write(self, chunk: Chunk, names: list[str], values: list[list]) -> None:
        taken = set(names)
        out = []
        for i, (d, p) in enumerate(zip(chunk.as_dicts(), zip(*values))):
            if chunk.kind == "dicts" and not taken.isdisjoint(d):
                clash = next(k for k in d if k in taken)
                raise DataError(
                    f"{chunk.src} {chunk.where(i)} has the field {clash!r}, which the first row lacks, so the "
                    f"prediction column of that name would overwrite it; rename {clash!r} in the input, add it "
                    "to the first row (the predictions then get a `pred_` prefix), or pass --output-prefix."
                )
            out.append(to_json({**d, **dict(zip(names, p))}, chunk, i) + "\n")
        self.f.writelines(out)


class _TxtWriter(_TextWriter):
    def write(self, chunk: Chunk, names: list[str], values: list[list]) -> None:
        self.f.writelines("\t".join(map(str, row)) + "\n" for row in zip(*values))


class _ParquetWriter:
    def __init__(self, path: Path, fmt: str, prefix: str | None = None):
        from ..errors import require

        require("pyarrow", "io")
        self.path, self.prefix = path, prefix or ""
        self.sink = None  # standard output's file object, once opened
        self.writer = None
        self.schema = None
        self.columns: list[str] | None = None

    def write(self, chunk: Chunk, names: list[str], values: list[list]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.columns is None:
            self.columns = list(chunk.columns)
        _check_fields(chunk, self.columns, "parquet")
        try:
            if chunk.kind == "arrow":
                table = pa.Table.from_batches([chunk.rows])
            elif chunk.kind == "dicts":
                # Types are inferred per column and then cast *safely* to the first chunk's
                # schema below: `from_pylist(rows, schema=...)` would silently truncate 6.5 to 6.
                table = pa.table({c: pa.array([d.get(c) for d in chunk.rows]) for c in self.columns})
            else:
                table = pa.Table.from_arrays([pa.array(c, pa.string()) for c in zip(*chunk.rows)], names=chunk.columns)
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as e:
            raise _type_error(chunk, self.schema, e) from None
        for name, col in zip(names, values):
            typ = arrow_type(name.removeprefix(self.prefix), pa.float32())
            table = table.append_column(name, pa.array(col, typ))
        if self.writer is None:
            self.schema = table.schema
            # A pipe works: Parquet is written front to back, the footer last.
            self.sink = _open_out(self.path, "wb") if str(self.path) == "-" else None
            self.writer = pq.ParquetWriter(str(self.path) if self.sink is None else self.sink, self.schema)
        try:
            table = table.cast(self.schema)
        except (pa.ArrowException, ValueError) as e:
            raise _type_error(chunk, self.schema, e) from None
        self.writer.write_table(table)

    def flush(self) -> None:
        """Nothing to flush before the end: a Parquet reader needs the footer anyway."""

    def close(self) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            if self.sink is not None:
                self.sink.close()


def _type_error(chunk: Chunk, schema, e: Exception) -> DataError:
    """Name the column and row whose value does not fit the column's type (error path only)."""
    import pyarrow as pa

    rows = chunk.as_dicts()
    for c in chunk.columns if schema is None else schema.names:
        vals = [d.get(c) for d in rows]
        typ = schema.field(c).type if schema is not None and c in schema.names else None
        if typ is None:
            first = next((v for v in vals if v is not None), None)
            try:
                typ = pa.array([first]).type
            except (pa.ArrowException, OverflowError, TypeError, ValueError):
                return DataError(f"{chunk.src} {chunk.where(0)}: column {c!r} holds a value Parquet cannot store "
                                 f"({e}); write JSONL output instead.")
        for i, v in enumerate(vals):
            try:
                pa.array([v]).cast(typ)  # safe cast: pa.array([6.5], type=int64) truncates silently
            except (pa.ArrowException, OverflowError, TypeError, ValueError):
                hint = (" (it was null in every row of the first chunk, so it has no type: put a value in the first "
                        "rows, or raise --chunk-size)") if pa.types.is_null(typ) else ""
                return DataError(
                    f"{chunk.src} {chunk.where(i)}: column {c!r} holds {type(v).__name__} {str(v)[:40]!r}, but its "
                    f"Parquet type is {typ}{hint}; Parquet needs one type per column: make the values agree, or "
                    "write JSONL output."
                )
    return DataError(f"{chunk.src}: rows {chunk.where(0)} on do not fit one Parquet schema ({e}); write JSONL output.")


# One writer per format name: `WRITERS[fmt](path, fmt, prefix=None)`, then `.write(chunk, names, values)`,
# `.flush()` (standard output: after each chunk), `.close()`. `prefix`: the names' --output-prefix.
WRITERS = {"csv": _DelimitedWriter, "tsv": _DelimitedWriter, "jsonl": _JsonlWriter, "txt": _TxtWriter,
           "parquet": _ParquetWriter}
