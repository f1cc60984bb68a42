"""TXT input for the Ray engine: one text per line, split exactly as single-process predict splits.

Ray's own `read_text` reads each file whole and splits it with `str.splitlines`, which also
breaks rows at U+2028, U+2029, \\x85 and other characters that are text. `LineDatasource` reads
line by line with universal newlines ("\\n", "\\r\\n", "\\r": `runtime/readers.py`), at most
`MAX_LINE_CHARS` characters per line, and yields blocks of `BLOCK_LINES` rows.
"""

from __future__ import annotations

import io

from ray.data.datasource import FileBasedDatasource

from ...errors import DataError
from ..readers import text_lines

# Rows per block: a few MiB of short texts, so a block never holds a whole large file.
BLOCK_LINES = 65536


class LineDatasource(FileBasedDatasource):
    """Rows `{"text": line}`, one per line of each file (an empty line is an empty text)."""

    def _read_stream(self, f, path: str):
        import pyarrow as pa

        text = io.TextIOWrapper(f, encoding="utf-8-sig", newline=None)
        batch: list[str] = []
        try:
            for line in text_lines(text, f"--input {path}"):
                batch.append(line[:-1] if line.endswith("\n") else line)
                if len(batch) == BLOCK_LINES:
                    yield pa.table({"text": pa.array(batch, pa.string())})
                    batch = []
        except UnicodeDecodeError as e:
            raise DataError(f"--input {path} is not UTF-8 text ({e.reason}); re-encode it as UTF-8.") from None
        if batch:
            yield pa.table({"text": pa.array(batch, pa.string())})


def read_lines(ray, files: list[str], **kw):
    """A Ray Dataset of the lines of `files` (`kw`: `filesystem=` for object stores)."""
    return ray.data.read_datasource(LineDatasource(files, **kw))
