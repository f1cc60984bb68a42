"""Reading the files bertfast classifies or trains on: `read_chunks` streams CSV/TSV/JSONL/TXT/Parquet.

Malformed input is never silently accepted: every refusal is a DataError naming the file, the
line (text formats; for CSV/TSV the line where the bad record starts) or row (Parquet), the field,
and what to fix. The rules:

- Rows are split on "\\n", "\\r\\n" and "\\r" only. U+2028, U+2029, \\x85 and the other characters
  `str.splitlines` splits on are text (never use `splitlines` on data).
- CSV/TSV are parsed with `strict=True`: an unterminated quote (the field would swallow every
  following row) or a quote in the middle of an unquoted field is an error naming the line where
  the record starts; a repeated header name is an error; a row with another field count too.
- JSONL: one object per line, no duplicate keys, no NaN/Infinity (not JSON), integers within
  Python's 4300-digit limit, nesting within the recursion limit. A lone UTF-16 surrogate escape
  (`"\\ud800"`) is an error naming the line and field (it is not Unicode: it could be neither
  tokenized nor written); a proper surrogate pair (an emoji) is fine.
- Length: one line (and one CSV field) holds at most `MAX_LINE_CHARS` characters, so a file
  without line breaks (or an unterminated quote) is refused instead of read into memory whole.

A source is a local path or standard input (`io.Stdin`: anything with `open_text`).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError

# 64 Mi characters per line/field: far above any real text (a novel is ~1 Mi), low enough that a
# file without line breaks fails fast instead of filling memory (a str of it is 64-256 MiB).
MAX_LINE_CHARS = 64 * 2**20
# Characters that `str.splitlines` treats as line breaks. A label holding one would break
# line-based outputs (TXT: one `label<TAB>score` per line), so such labels are refused.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class Chunk:
    """Rows of a file in their native shape plus their texts.

    kind "lists": rows are lists aligned with `columns` (CSV/TSV/TXT); "dicts": JSON objects
    (`columns`: the first object's keys); "arrow": one pyarrow RecordBatch. `texts` is None when
    no text column was asked for; `pair_texts` holds the other text of each pair (set by
    `io.read_inputs`), else None. `lines` holds the 1-based line where each row starts (text
    formats), else rows are numbered from `first_row` (0-based offset in the file); `src` names
    the file in error messages.
    """

    __slots__ = ("kind", "columns", "rows", "texts", "total_rows", "lines", "first_row", "src", "pair_texts")

    def __init__(self, kind: str, columns: list[str], rows, texts: list[str] | None, total_rows: int | None = None,
                 lines: list[int] | None = None, first_row: int = 0, src: str = "the input"):
        self.kind, self.columns, self.rows, self.texts, self.total_rows = kind, columns, rows, texts, total_rows
        self.lines, self.first_row, self.src, self.pair_texts = lines, first_row, src, None

    def __len__(self) -> int:
        return self.rows.num_rows if self.kind == "arrow" else len(self.rows)

    def where(self, i: int) -> str:
        """Where row `i` of this chunk is in its file: "line N" or "row N" (1-based)."""
        return f"line {self.lines[i]}" if self.lines is not None else f"row {self.first_row + i + 1}"

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
        DataError: malformed input (see the module docstring), a missing text column or a
            non-string text (the message names the line or row), or no rows.
    """
    src = f"{flag} {path}" if flag else str(path)
    if fmt in ("csv", "tsv"):
        gen = _read_delimited(path, "," if fmt == "csv" else "\t", text_column, chunk_size, src)
    elif fmt == "jsonl":
        gen = _read_jsonl(path, text_column, chunk_size, src)
    elif fmt == "txt":
        gen = _read_txt(path, chunk_size, src)
    else:
        gen = _read_parquet(path, text_column, chunk_size, src)
    empty = True
    try:
        for chunk in gen:
            if len(chunk) or not require_rows:
                empty = False
                yield chunk
    except UnicodeDecodeError as e:
        # The text decoder reads ahead, so the line it was on is not the bad one: find that line
        # (standard input cannot be read again).
        where = f" line {_first_bad_utf8_line(path)}" if fmt != "parquet" and not hasattr(path, "open_text") else ""
        raise DataError(f"{src}{where} is not UTF-8 text ({e.reason}); re-encode the file as UTF-8.") from None
    finally:
        gen.close()
    if empty and require_rows:
        raise DataError(f"{src} has no rows to classify; check the file (and --input-format).")


def _open_text(path, newline: str | None):
    """A text file object over a path or standard input (UTF-8; a BOM is dropped)."""
    if hasattr(path, "open_text"):
        return path.open_text(newline)
    return open(path, encoding="utf-8-sig", newline=newline)


def _first_bad_utf8_line(path: Path) -> int:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(iter(lambda: f.readline(MAX_LINE_CHARS), b""), 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return lineno
    return 1


def text_lines(f, src: str, first_line: int = 1) -> Iterator[str]:
    """The lines of a text file object, each at most `MAX_LINE_CHARS` characters (else DataError).

    `f.readline(limit)` never holds more than the limit in memory, unlike iterating the file.
    """
    lineno = first_line
    for line in iter(lambda: f.readline(MAX_LINE_CHARS + 1), ""):
        if len(line) > MAX_LINE_CHARS:
            raise DataError(
                f"{src} line {lineno} is longer than {MAX_LINE_CHARS:,} characters (bertfast's MAX_LINE_CHARS) "
                "without a line break; is it the right file and format? Split the text or the file."
            )
        lineno += 1
        yield line


def missing_column(src: str, col: str, found: list[str], flag: str = "--text-column") -> DataError:
    return DataError(
        f"{src} has no column {col!r}; columns found: {', '.join(map(repr, found)) or 'none'}. "
        f"Pass {flag} NAME."
    )


def check_unique_columns(src: str, columns: list[str]) -> None:
    """A header (or schema) that repeats a name would let one column overwrite another."""
    seen: dict[str, int] = {}
    for i, c in enumerate(columns, 1):
        if c in seen:
            raise DataError(
                f"{src}: the header repeats the column name {c!r} (columns {seen[c]} and {i}); "
                "rename one of them so that every column has its own name."
            )
        seen[c] = i


def _csv_error(src: str, name: str, start: int, line: int, e: csv.Error) -> DataError:
    msg = str(e)
    if "end of data" in msg:
        return DataError(
            f"{src} line {start}: a quoted field starts in the record on this line and is never closed "
            f"(unterminated quote: it would swallow every following row); close the quote, or double a "
            f'literal quote ("") inside a quoted field.'
        )
    if "field limit" in msg:
        return DataError(
            f"{src} line {start}: a field is longer than {MAX_LINE_CHARS:,} characters (bertfast's MAX_LINE_CHARS); "
            "an unterminated quote on that line is the usual cause: close it, or split the text."
        )
    at = f" (the error is on line {line})" if line != start else ""
    return DataError(
        f"{src} line {start}: not valid {name}{at}: {msg}; a quote inside an unquoted field, or text "
        f'after a closing quote, is the usual cause: quote the whole field and double inner quotes ("").'
    )


def _read_delimited(path: Path, delim: str, col: str | None, n: int, src: str) -> Iterator[Chunk]:
    # A field is bounded like a line: a quoted field may span lines, so this is its own cap.
    csv.field_size_limit(MAX_LINE_CHARS)
    name = "CSV" if delim == "," else "TSV"
    with _open_text(path, "") as f:
        # strict: an unterminated quote is an error at EOF instead of one giant last field.
        reader = csv.reader(text_lines(f, src), delimiter=delim, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as e:
            raise _csv_error(src, name, 1, reader.line_num, e) from None
        if header is None:
            return
        check_unique_columns(src, header)
        if col is not None and col not in header:
            raise missing_column(src, col, header)
        ti = None if col is None else header.index(col)
        width = len(header)
        rows: list[list[str]] = []
        lines: list[int] = []
        yielded = False
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise _csv_error(src, name, start, reader.line_num, e) from None
            if not row:  # blank line
                continue
            if len(row) != width:
                span = f"lines {start}-{reader.line_num}" if reader.line_num != start else f"line {start}"
                raise DataError(
                    f"{src} {span} has {len(row)} fields but the header has {width}; quote fields that contain "
                    "the delimiter (or a line break), or fix that row."
                )
            rows.append(row)
            lines.append(start)
            if len(rows) == n:
                yield Chunk("lists", header, rows, None if ti is None else [r[ti] for r in rows], lines=lines, src=src)
                rows, lines, yielded = [], [], True
        if rows or not yielded:
            yield Chunk("lists", header, rows, None if ti is None else [r[ti] for r in rows], lines=lines, src=src)


class _JsonRefused(ValueError):
    """Raised inside the JSON decoder for valid-looking input bertfast refuses."""


def _object(pairs: list[tuple[str, object]]) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        dup = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
        raise _JsonRefused(f"the key {dup!r} appears twice in one object (the first value would be lost)")
    return d


def _constant(name: str):
    raise _JsonRefused(f"{name} is not JSON (write null, or the number as a string)")


_decode = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant).decode


def _parse_json_line(line: str, lineno: int, src: str):
    try:
        return _decode(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{src} line {lineno} is not valid JSON ({e.msg}, column {e.colno}); "
                        "JSONL needs one object per line.") from None
    except RecursionError:
        raise DataError(f"{src} line {lineno}: JSON nested too deeply to read; flatten that row.") from None
    except ValueError as e:  # _JsonRefused, or an integer over Python's 4300-digit limit
        what = str(e) if isinstance(e, _JsonRefused) else "an integer has too many digits (write it as a string)"
        raise DataError(f"{src} line {lineno}: {what}; fix that row.") from None


def _check_surrogates(obj: dict, lineno: int, src: str) -> None:
    for k, v in obj.items():
        try:
            json.dumps([k, v], ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as e:
            bad = e.object[e.start:e.end].encode("utf-8", "backslashreplace").decode()
            raise DataError(
                f"{src} line {lineno}: field {k!r} holds a lone UTF-16 surrogate ({bad}), which is not Unicode "
                "text and can be neither tokenized nor written; fix that \\u escape (a pair needs both halves)."
            ) from None


def _read_jsonl(path: Path, col: str | None, n: int, src: str) -> Iterator[Chunk]:
    with _open_text(path, None) as f:
        rows: list[dict] = []
        lines: list[int] = []
        columns: list[str] | None = None
        for lineno, line in enumerate(text_lines(f, src), 1):
            if not line.strip():
                continue
            obj = _parse_json_line(line, lineno, src)
            if not isinstance(obj, dict):
                raise DataError(
                    f"{src} line {lineno} is a JSON {type(obj).__name__}, not an object; JSONL needs one object per line."
                )
            # Surrogates only come from \u escapes (the file itself decoded as UTF-8): check only then.
            if "\\u" in line and _SURROGATE_ESCAPE.search(line):
                _check_surrogates(obj, lineno, src)
            if col is not None:
                _check_json_text(obj, col, lineno, src, columns)
            if columns is None:
                columns = list(obj)
            rows.append(obj)
            lines.append(lineno)
            if len(rows) == n:
                yield Chunk("dicts", columns, rows, None if col is None else [r[col] for r in rows], lines=lines, src=src)
                rows, lines = [], []
        if rows:
            yield Chunk("dicts", columns or [col], rows, None if col is None else [r[col] for r in rows],
                        lines=lines, src=src)


def _check_json_text(obj: dict, col: str, lineno: int, src: str, columns: list[str] | None) -> None:
    if col not in obj:
        if columns is None:
            raise missing_column(src, col, list(obj))
        raise DataError(f"{src} line {lineno} has no {col!r} field; fields found: {', '.join(obj)}.")
    if not isinstance(obj[col], str):
        kind = type(obj[col]).__name__ if obj[col] is not None else "null"
        raise DataError(f"{src} line {lineno}: {col!r} is {kind}, not a string; fix or drop that row.")


def _read_txt(path: Path, n: int, src: str) -> Iterator[Chunk]:
    # One text per line; an empty line is an empty text (kept, so output lines align with input).
    # Universal newlines: "\r\n" and "\r" end a line too, U+2028 & co. do not.
    with _open_text(path, None) as f:
        lines = text_lines(f, src)
        start = 1
        while True:
            texts = []
            for line in lines:
                texts.append(line[:-1] if line.endswith("\n") else line)
                if len(texts) == n:
                    break
            if not texts:
                return
            yield Chunk("lists", ["text"], [[t] for t in texts], texts, lines=list(range(start, start + len(texts))),
                        src=src)
            start += len(texts)


def _read_parquet(path: Path, col: str | None, n: int, src: str) -> Iterator[Chunk]:
    from ..errors import require

    require("pyarrow", "io")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path.seekable_copy() if hasattr(path, "seekable_copy") else path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{src} is not a readable Parquet file ({e}).") from None
    names = pf.schema_arrow.names
    check_unique_columns(src, names)
    total, offset = pf.metadata.num_rows, 0
    if col is not None:
        if col not in names:
            raise missing_column(src, col, names)
        ctype = pf.schema_arrow.field(col).type
        if not (pa.types.is_string(ctype) or pa.types.is_large_string(ctype)):
            raise DataError(f"{src}: column {col!r} has type {ctype}, not string; pass the text column with --text-column.")
    batches = pf.iter_batches(batch_size=n)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{src}: cannot read the rows after row {offset} ({e}); the file is damaged.") from None
        if batch is None:
            break
        texts = None
        if col is not None:
            texts = batch.column(col).to_pylist()
            if batch.column(col).null_count:
                i = texts.index(None)
                raise DataError(f"{src} row {offset + i + 1} has no text (null in {col!r}); fill or drop it.")
        yield Chunk("arrow", names, batch, texts, total, first_row=offset, src=src)
        offset += batch.num_rows
    if offset == 0:  # no rows: one empty chunk that still carries the columns
        yield Chunk("arrow", names, pa.RecordBatch.from_pylist([], schema=pf.schema_arrow), [] if col else None,
                    total, src=src)
