"""File formats bertfast reads and writes, declared once.

Training data loading, `bertfast export --eval-data`, `bertfast predict`, the benchmark's
`--data` and the Ray engine all map a file name to its format with `format_of`, so a file that
one command accepts, the others accept too.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from .errors import DataError


@dataclass(frozen=True)
class FileFormat:
    """One format: its name, the extensions that mean it, and what it can hold.

    Attributes:
        name: csv, tsv, jsonl, parquet or txt (the `--input-format` value).
        extensions: lower-case file name endings that mean this format.
        columnar: can carry columns: a label column (training / evaluation data) and several
            prediction columns (txt holds one text, or one label and score, per line).
    """

    name: str
    extensions: tuple[str, ...]
    columnar: bool = True


FORMATS: dict[str, FileFormat] = {f.name: f for f in (
    FileFormat("csv", (".csv",)),
    FileFormat("tsv", (".tsv", ".tab")),
    # `.json` is accepted as JSON Lines (one object per line), as training always did.
    FileFormat("jsonl", (".jsonl", ".ndjson", ".json")),
    FileFormat("parquet", (".parquet", ".pq")),
    FileFormat("txt", (".txt", ".text"), columnar=False),
)}
EXTENSIONS: dict[str, str] = {ext: f.name for f in FORMATS.values() for ext in f.extensions}
NAMES = tuple(FORMATS)


def holds_columns(path) -> bool:
    """Whether the file's format can carry columns (labels, pairs); unknown formats are left to
    their reader to refuse."""
    fmt = format_of(path)
    return fmt is None or FORMATS[fmt].columnar


def format_of(path, flag: str | None = None) -> str | None:
    """The format named by a path's extension (local path or URI); None if unknown and no
    `flag` is given, else a DataError telling the user to pass `{flag}-format`."""
    ext = posixpath.splitext(str(path).rstrip("/"))[1].lower()
    fmt = EXTENSIONS.get(ext)
    if fmt is None and flag is not None:
        raise DataError(
            f"cannot tell the format of {flag} {path} from its extension; pass {flag}-format "
            f"({', '.join(NAMES)}) or use one of {', '.join(EXTENSIONS)}."
        )
    return fmt
