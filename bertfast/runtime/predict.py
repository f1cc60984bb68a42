"""Classify every row of a CSV/TSV/JSONL/Parquet/TXT file with an export and write the predictions.

The input is streamed in chunks (`--chunk-size` rows), so memory stays bounded on millions of
rows, and the next chunk is read and tokenized while the model runs on the current one. The
output keeps every input column and adds `label` and `score` (plus `label_2`, `score_2`, ... with
`--top-k`, and `prob_<label>` per class with `--all-scores`; if the input already has a column of
that name, ours get a `pred_` prefix). TXT input has one text per line (column `text`); TXT
output has one `label<TAB>score` line per input row. The output is written to a temporary file
and renamed at the end: an interrupted or failed run never leaves a truncated file under the
final name. CSV/TSV/JSONL/TXT need only the standard library; Parquet needs pyarrow
(`pip install 'bertfast[io]'`).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, fields
from itertools import chain
from pathlib import Path

import numpy as np

from ..errors import BertfastError, DataError
from .batching import AGGREGATE, LONG_TEXT
from .providers import DEVICES

log = logging.getLogger(__name__)

FORMATS = ("csv", "tsv", "jsonl", "parquet", "txt")
ENGINES = ("single", "ray")
_EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet", ".txt": "txt", ".text": "txt",
}


@dataclass
class PredictConfig:
    """What `bertfast predict` does; every field is the CLI flag of the same name.

    Attributes:
        export: export folder (written by `bertfast export`).
        input: file to classify.
        output: predictions file to write (refused if it exists, unless `force`).
        input_format: csv|tsv|jsonl|parquet|txt; default: from the input's extension.
        output_format: same choices; default: from the output's extension, else the input format.
        text_column: column (CSV/TSV/Parquet) or field (JSONL) holding the text.
        device, variant, threads, long_text, stride, aggregate, batch_tokens, max_batch_size,
            max_length: passed to `Classifier.load`.
        chunk_size: rows read, classified and written at a time (bounds memory).
        top_k: labels per row, best first.
        all_scores: also write one `prob_<label>` column per class.
        force: replace an existing output file.
        progress: show a progress bar with rows/s on stderr.
    """

    export: Path
    input: Path
    output: Path
    input_format: str | None = None
    output_format: str | None = None
    text_column: str = "text"
    device: str = "auto"
    variant: str | None = None
    threads: int | None = None
    long_text: str = "truncate"
    stride: int | None = None
    aggregate: str = "mean"
    batch_tokens: int = 8192
    max_batch_size: int = 256
    max_length: int | None = None
    chunk_size: int = 4096
    top_k: int = 1
    all_scores: bool = False
    force: bool = False
    progress: bool = True

    def __post_init__(self):
        self.export, self.input, self.output = Path(self.export), Path(self.input), Path(self.output)
        check_flags(
            choices=(("--input-format", self.input_format, FORMATS), ("--output-format", self.output_format, FORMATS),
                     ("--device", self.device, DEVICES), ("--long-text", self.long_text, LONG_TEXT),
                     ("--aggregate", self.aggregate, AGGREGATE)),
            ints=(("--chunk-size", self.chunk_size, 1), ("--top-k", self.top_k, 1), ("--batch-tokens", self.batch_tokens, 1),
                  ("--max-batch-size", self.max_batch_size, 1), ("--threads", self.threads, 1), ("--stride", self.stride, 0),
                  ("--max-length", self.max_length, 3)),
        )
        if not self.input.is_file():
            what = "is a folder" if self.input.is_dir() else "does not exist"
            raise BertfastError(f"--input {self.input} {what}; pass the file to classify.")
        self.input_format = self.input_format or _format_of(self.input, "--input")
        self.output_format = self.output_format or _EXTENSIONS.get(self.output.suffix.lower(), self.input_format)
        if self.output_format == "txt" and (self.top_k > 1 or self.all_scores):
            raise BertfastError(
                "--top-k > 1 and --all-scores need a columnar output (csv, tsv, jsonl, parquet), not txt; "
                "change --output's extension or pass --output-format."
            )
        if self.output.exists() and self.output.resolve() == self.input.resolve():
            raise BertfastError(f"--output {self.output} is the input file; choose another output path.")
        if self.output.is_dir():
            raise BertfastError(f"--output {self.output} is a folder; pass a file path.")
        if self.output.exists() and not self.force:
            raise BertfastError(f"--output {self.output} already exists; pass --force to replace it or choose another path.")


def check_flags(choices=(), ints=(), context: str = "") -> None:
    """Shared flag checks of the predict engines: (flag, value, allowed) and (flag, value, minimum).

    None means "not given" and passes; `context` is appended to choice errors (e.g. " with --engine ray").
    """
    for flag, value, allowed in choices:
        if value is not None and value not in allowed:
            raise BertfastError(f"{flag} must be one of {', '.join(allowed)}{context}; got {value!r}.")
    for flag, value, low in ints:
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            raise BertfastError(f"{flag} must be an integer >= {low}; got {value!r}.")


def predict(cfg: PredictConfig) -> Path:
    """Classify `cfg.input` with the export `cfg.export` and write `cfg.output`.

    Returns:
        The path of the predictions file.

    Raises:
        BertfastError: bad input file (empty, missing text column, non-text value: the message
            names the row), unusable export or device. Nothing is left under `cfg.output`.
    """
    from .classifier import Classifier

    chunks = _read(cfg)
    first = next(chunks)  # fail on an empty file or a missing column before loading the model
    clf = Classifier.load(
        cfg.export, device=cfg.device, variant=cfg.variant, threads=cfg.threads, long_text=cfg.long_text,
        stride=cfg.stride, aggregate=cfg.aggregate, batch_tokens=cfg.batch_tokens,
        max_batch_size=cfg.max_batch_size, max_length=cfg.max_length,
    )
    if cfg.top_k > len(clf.labels):
        clf.close()
        raise BertfastError(f"--top-k {cfg.top_k} is more than the model's {len(clf.labels)} labels ({', '.join(clf.labels)}).")
    pending: deque[_Chunk] = deque()

    def texts() -> Iterator[list[str]]:
        # Consumed by the classifier's tokenizer thread, one chunk ahead of the model.
        for chunk in chain([first], chunks):
            pending.append(chunk)
            yield chunk.texts

    from tqdm import tqdm

    from ..utils import atomic_file

    t0 = time.perf_counter()
    rows = 0
    with clf, atomic_file(cfg.output) as tmp, tqdm(
        total=first.total_rows, unit=" rows", unit_scale=True, disable=not cfg.progress, file=sys.stderr,
        desc="predict", dynamic_ncols=True,
    ) as bar:
        names = _prediction_names(first.columns, clf.labels, cfg.top_k, cfg.all_scores)
        writer = _WRITERS[cfg.output_format](tmp, cfg.output_format)
        try:
            for proba in clf.iter_proba(texts()):
                chunk = pending.popleft()
                writer.write(chunk, names, _prediction_values(proba, clf.labels, cfg.top_k, cfg.all_scores))
                rows += len(chunk.texts)
                bar.update(len(chunk.texts))
        finally:
            writer.close()
        stats = clf.last_stats
    secs = time.perf_counter() - t0
    log.info(
        "wrote %d rows to %s in %.1f s (%.0f rows/s; %s variant on %s; %.0f%% padding)",
        rows, cfg.output, secs, rows / max(secs, 1e-9), clf.variant, clf.device, 100 * stats.get("padding_ratio", 0.0),
    )
    return cfg.output


# -- reading -------------------------------------------------------------------------------


class _Chunk:
    """Rows of the input in their native shape plus their texts.

    kind "lists": rows are lists aligned with `columns` (CSV/TSV/TXT); "dicts": JSON objects;
    "arrow": one pyarrow RecordBatch.
    """

    __slots__ = ("kind", "columns", "rows", "texts", "total_rows")

    def __init__(self, kind: str, columns: list[str], rows, texts: list[str], total_rows: int | None = None):
        self.kind, self.columns, self.rows, self.texts, self.total_rows = kind, columns, rows, texts, total_rows

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
        cols = self.columns
        return [dict(zip(cols, r)) for r in self.rows]


def _format_of(path: Path, flag: str) -> str:
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise BertfastError(
            f"cannot tell the format of {flag} {path} from its extension; pass {flag}-format "
            f"({', '.join(FORMATS)})."
        )
    return fmt


def _read(cfg: PredictConfig) -> Iterator[_Chunk]:
    fmt, path, col, n = cfg.input_format, cfg.input, cfg.text_column, cfg.chunk_size
    if fmt in ("csv", "tsv"):
        gen = _read_delimited(path, "," if fmt == "csv" else "\t", col, n)
    elif fmt == "jsonl":
        gen = _read_jsonl(path, col, n)
    elif fmt == "txt":
        gen = _read_txt(path, n)
    else:
        gen = _read_parquet(path, col, n)
    empty = True
    try:
        for chunk in gen:
            empty = False
            yield chunk
    except UnicodeDecodeError as e:
        raise DataError(f"--input {path} is not UTF-8 text ({e.reason} at byte {e.start}); re-encode it as UTF-8.") from None
    except csv.Error as e:
        raise DataError(f"--input {path} is not valid {fmt.upper()} ({e}); check the file or --input-format.") from None
    if empty:
        raise DataError(f"--input {path} has no rows to classify; check the file (and --input-format).")


def _missing_column(path: Path, col: str, found: list[str]) -> DataError:
    return DataError(
        f"--input {path} has no column {col!r}; columns found: {', '.join(map(repr, found)) or 'none'}. "
        "Pass --text-column NAME."
    )


def _read_delimited(path: Path, delim: str, col: str, n: int) -> Iterator[_Chunk]:
    # Articles can exceed the csv module's 128 KiB default field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delim)
        header = next(reader, None)
        if header is None:
            return
        if col not in header:
            raise _missing_column(path, col, header)
        ti = header.index(col)
        rows: list[list[str]] = []
        for row in reader:
            if not row:  # blank line
                continue
            if len(row) != len(header):
                raise DataError(
                    f"--input {path} line {reader.line_num} has {len(row)} fields but the header has "
                    f"{len(header)}; quote fields that contain the delimiter, or fix that row."
                )
            rows.append(row)
            if len(rows) == n:
                yield _Chunk("lists", header, rows, [r[ti] for r in rows])
                rows = []
        if rows:
            yield _Chunk("lists", header, rows, [r[ti] for r in rows])


def _read_jsonl(path: Path, col: str, n: int) -> Iterator[_Chunk]:
    with open(path, encoding="utf-8-sig") as f:
        rows: list[dict] = []
        columns: list[str] | None = None
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"--input {path} line {lineno} is not valid JSON ({e.msg}); JSONL needs one object per line.") from None
            if not isinstance(obj, dict):
                raise DataError(f"--input {path} line {lineno} is a JSON {type(obj).__name__}, not an object; JSONL needs one object per line.")
            if col not in obj:
                if columns is None:
                    raise _missing_column(path, col, list(obj))
                raise DataError(f"--input {path} line {lineno} has no {col!r} field; fields found: {', '.join(obj)}.")
            if not isinstance(obj[col], str):
                raise DataError(
                    f"--input {path} line {lineno}: {col!r} is {type(obj[col]).__name__ if obj[col] is not None else 'null'}, "
                    "not a string; fix or drop that row."
                )
            if columns is None:
                columns = list(obj)
            rows.append(obj)
            if len(rows) == n:
                yield _Chunk("dicts", columns, rows, [r[col] for r in rows])
                rows = []
        if rows:
            yield _Chunk("dicts", columns or [col], rows, [r[col] for r in rows])


def _read_txt(path: Path, n: int) -> Iterator[_Chunk]:
    # One text per line; an empty line is an empty text (kept, so output lines align with input).
    with open(path, encoding="utf-8-sig", newline=None) as f:
        while True:
            lines = [line[:-1] if line.endswith("\n") else line for line in _take(f, n)]
            if not lines:
                return
            yield _Chunk("lists", ["text"], [[t] for t in lines], lines)


def _take(f, n: int) -> list[str]:
    out = []
    for line in f:
        out.append(line)
        if len(out) == n:
            break
    return out


def _read_parquet(path: Path, col: str, n: int) -> Iterator[_Chunk]:
    from ..errors import require

    require("pyarrow", "io")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"--input {path} is not a readable Parquet file ({e}).") from None
    names = pf.schema_arrow.names
    if col not in names:
        raise _missing_column(path, col, names)
    ctype = pf.schema_arrow.field(col).type
    if not (pa.types.is_string(ctype) or pa.types.is_large_string(ctype)):
        raise DataError(f"--input {path}: column {col!r} has type {ctype}, not string; pass the text column with --text-column.")
    total, offset = pf.metadata.num_rows, 0
    for batch in pf.iter_batches(batch_size=n):
        texts = batch.column(col).to_pylist()
        if batch.column(col).null_count:
            i = texts.index(None)
            raise DataError(f"--input {path} row {offset + i} has no text (null in {col!r}); fill or drop it.")
        yield _Chunk("arrow", names, batch, texts, total)
        offset += len(texts)


# -- predictions ---------------------------------------------------------------------------


def _prediction_names(columns: list[str], labels: list[str], top_k: int, all_scores: bool) -> list[str]:
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


def _prediction_values(proba: np.ndarray, labels: list[str], top_k: int, all_scores: bool) -> list[list]:
    """Columns (lists) in the order of `_prediction_names`."""
    # float32 -> rounded float64, so text outputs show 0.912345, not 0.9123454689979553.
    p64 = np.round(proba.astype(np.float64), 6)
    if top_k == 1:
        top = proba.argmax(axis=1)[:, None]
    else:
        top = np.argsort(-proba, axis=1, kind="stable")[:, :top_k]
    scores = np.take_along_axis(p64, top, axis=1)
    lab = np.array(labels, dtype=object)
    cols: list[list] = []
    for k in range(top.shape[1]):
        cols += [lab[top[:, k]].tolist(), scores[:, k].tolist()]
    if all_scores:
        cols += [p64[:, j].tolist() for j in range(len(labels))]
    return cols


# -- writing -------------------------------------------------------------------------------


class _DelimitedWriter:
    def __init__(self, path: Path, fmt: str):
        self.f = open(path, "w", newline="", encoding="utf-8")
        self.w = csv.writer(self.f, delimiter="," if fmt == "csv" else "\t")
        self.columns: list[str] | None = None

    def write(self, chunk: _Chunk, names: list[str], values: list[list]) -> None:
        if self.columns is None:
            self.columns = list(chunk.columns)
            self.w.writerow(self.columns + names)
        rows = chunk.as_lists(self.columns)
        self.w.writerows(r + list(p) for r, p in zip(rows, zip(*values)))

    def close(self) -> None:
        self.f.close()


class _JsonlWriter:
    def __init__(self, path: Path, fmt: str):
        self.f = open(path, "w", encoding="utf-8")

    def write(self, chunk: _Chunk, names: list[str], values: list[list]) -> None:
        dumps = json.dumps
        self.f.writelines(
            dumps({**d, **dict(zip(names, p))}, ensure_ascii=False) + "\n" for d, p in zip(chunk.as_dicts(), zip(*values))
        )

    def close(self) -> None:
        self.f.close()


class _TxtWriter:
    def __init__(self, path: Path, fmt: str):
        self.f = open(path, "w", encoding="utf-8")

    def write(self, chunk: _Chunk, names: list[str], values: list[list]) -> None:
        self.f.writelines(f"{lab}\t{s}\n" for lab, s in zip(values[0], values[1]))

    def close(self) -> None:
        self.f.close()


class _ParquetWriter:
    def __init__(self, path: Path, fmt: str):
        from ..errors import require

        require("pyarrow", "io")
        self.path = path
        self.writer = None
        self.schema = None

    def write(self, chunk: _Chunk, names: list[str], values: list[list]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if chunk.kind == "arrow":
            table = pa.Table.from_batches([chunk.rows])
        elif chunk.kind == "dicts":
            table = pa.Table.from_pylist(chunk.rows, schema=self.schema and _input_part(self.schema, len(names)))
        else:
            table = pa.Table.from_arrays([pa.array(c, pa.string()) for c in zip(*chunk.rows)], names=chunk.columns)
        for name, col in zip(names, values):
            is_label = name.startswith(("label", "pred_label"))
            table = table.append_column(name, pa.array(col, pa.string() if is_label else pa.float32()))
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


_WRITERS = {"csv": _DelimitedWriter, "tsv": _DelimitedWriter, "jsonl": _JsonlWriter, "txt": _TxtWriter, "parquet": _ParquetWriter}


# -- CLI -----------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of `bertfast predict` (each maps to the PredictConfig field of the same name)."""
    # str, not Path: Path("s3://b/k") collapses to "s3:/b/k" (PredictConfig makes local paths Paths).
    p.add_argument("export", help="export folder written by `bertfast export` (--engine ray: also a URI)")
    p.add_argument("--input", "-i", required=True,
                   help="file to classify (.csv .tsv .jsonl .parquet .txt); --engine ray: also a folder, glob or URI (s3://...)")
    p.add_argument("--output", "-o", required=True,
                   help="predictions file, written atomically; --engine ray: a folder of part files (local or URI)")
    p.add_argument("--input-format", choices=FORMATS, help="override the format guessed from --input's extension")
    p.add_argument("--output-format", choices=FORMATS, help="default: from --output's extension, else the input format")
    p.add_argument("--text-column", default="text", help="column (CSV/TSV/Parquet) or field (JSONL) holding the text")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA if it really works, else CPU (logged)")
    p.add_argument("--variant", help="export variant (e.g. int8, fp16); default: the export's default for the device")
    p.add_argument("--threads", type=int, help="CPU threads; default: the CPUs this process may use")
    p.add_argument("--long-text", choices=LONG_TEXT, default="truncate",
                   help="texts over --max-length tokens: keep the start, the head+tail, or classify sliding windows")
    p.add_argument("--stride", type=int, help="token overlap between sliding windows (default max_length // 4)")
    p.add_argument("--aggregate", choices=AGGREGATE, default="mean", help="combine sliding-window logits by mean or max")
    p.add_argument("--max-length", type=int, help="tokens per window; default: the export's max_length")
    p.add_argument("--batch-tokens", type=int, default=8192, help="padded tokens per batch (batches are cut by this budget)")
    p.add_argument("--max-batch-size", type=int, default=256, help="most texts per batch")
    p.add_argument("--chunk-size", type=int, default=4096, help="rows read, classified and written at a time")
    p.add_argument("--top-k", type=int, default=1, help="labels per row (adds label_2, score_2, ...)")
    p.add_argument("--all-scores", action="store_true", help="add a prob_<label> column per class")
    p.add_argument("--force", action="store_true", help="replace an existing --output")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    g = p.add_argument_group("scale out (--engine ray; see bertfast.distributed, needs pip install 'bertfast[ray]')")
    g.add_argument("--engine", choices=ENGINES, default="single",
                   help="single: this process; ray: a Ray Data actor pool over every file of --input")
    g.add_argument("--workers", type=int, help="actors in the pool; default: as many as fit the cluster")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per actor; a fraction shares a GPU; 0: CPU")
    g.add_argument("--address", help="Ray cluster to join (auto, ray://head:10001); default: a local Ray instance")


def main(args: argparse.Namespace) -> int:
    """Run `bertfast predict` from parsed flags (`--engine ray`: `bertfast.distributed.classify`)."""
    if getattr(args, "engine", "single") == "ray":
        from ..distributed import ClassifyConfig, classify

        names = {f.name for f in fields(ClassifyConfig)}
        classify(ClassifyConfig(**{k: v for k, v in vars(args).items() if k in names}))
        return 0
    for flag, value, default in (
        ("--workers", getattr(args, "workers", None), None), ("--gpus-per-worker", getattr(args, "gpus_per_worker", 0.0), 0.0),
        ("--address", getattr(args, "address", None), None),
    ):
        if value != default:
            raise BertfastError(f"{flag} needs --engine ray (the single-process engine runs in this process only).")
    names = {f.name for f in fields(PredictConfig)}
    predict(PredictConfig(**{k: v for k, v in vars(args).items() if k in names}))
    return 0
