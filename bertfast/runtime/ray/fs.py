"""Files and URIs for the Ray engine: local paths, `file://` and object stores (s3://, gs://, ...).

`resolve_input` turns a file, folder, glob or URI into the list of files to read and their format
(`formats.format_of`, the one extension table). `normalize_location` gives one spelling per
location (a trailing slash or `//` never hides that the output is the input, or inside it).

Outputs (`_output_dir`): a local folder is written to a hidden sibling renamed onto it when
complete. Object stores have no rename, so there the folder is complete when its `_SUCCESS` file
exists, written last, and the previous output is kept until the new one is complete:

1. an existing prefix without `--force` is refused; with it, the old objects are listed (path,
   size, mtime) and the old `_SUCCESS` is removed (the folder now reads as "in progress"; its
   content is kept in memory);
2. the run writes its part files next to the old ones (Ray names them with a per-run id);
3. success: the old objects this run did not rewrite are deleted, then `_SUCCESS` is written;
   failure: the objects this run created are deleted and the old `_SUCCESS` is put back, so
   the previous output is whole again (a new, never-completed output leaves nothing).
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob as globlib
import logging
import os
import posixpath
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ...errors import BertfastError, DataError
from ...formats import EXTENSIONS, NAMES, format_of

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"
# Spellings of one object store (Hadoop's s3a/s3n, gcs for gs), compared as one.
_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def normalize_location(spec: str) -> str:
    """One spelling per location: a local path resolved (symlinks, `..`, `~`); a URI as
    `scheme://netloc/path` with the scheme lower-cased (aliases merged), `//`, `.` and `..`
    collapsed and no trailing slash. A glob stands for its folder before the first wildcard."""
    spec = _glob_base(spec)
    if not _is_uri(spec):
        return str(Path(spec.removeprefix("file://")).expanduser().resolve())
    scheme, _, rest = spec.partition("://")
    netloc, _, path = rest.partition("/")
    scheme = _SCHEME_ALIASES.get(scheme.lower(), scheme.lower())
    path = posixpath.normpath("/" + re.sub("/+", "/", path)).lstrip("/").rstrip("/")
    return f"{scheme}://{netloc.lower()}/{path}".rstrip("/")


def _glob_base(spec: str) -> str:
    m = re.search(r"[*?[]", spec)
    if m is None:
        return spec
    prefix = spec[: m.start()]
    return prefix.rsplit("/", 1)[0] or "/" if "/" in prefix else "."


def overlap(a: str, b: str) -> bool:
    """True when locations `a` and `b` are the same or one is inside the other."""
    na, nb = normalize_location(a), normalize_location(b)
    return na == nb or na.startswith(nb.rstrip("/") + "/") or nb.startswith(na.rstrip("/") + "/")


def _join(base: str, name: str) -> str:
    return posixpath.join(base, name)  # pyarrow filesystems take "/" paths, local ones included


def _fs_for(path: str):
    """(pyarrow filesystem, path inside it) for a local path or URI."""
    import pyarrow.fs as pafs

    if _is_uri(path):
        try:
            return pafs.FileSystem.from_uri(path)
        except Exception as e:  # pyarrow raises ArrowInvalid/OSError for unknown schemes or no credentials
            raise BertfastError(f"cannot open {path}: {e}") from None
    return pafs.LocalFileSystem(), str(Path(path.removeprefix("file://")).expanduser().resolve())


def resolve_input(spec: str, input_format: str | None = None) -> tuple[list[str], object, str]:
    """The files named by a file, folder, glob or URI, their filesystem and their format.

    Raises:
        DataError: nothing matches, or the files mix formats and no `input_format` was given.
    """
    import pyarrow.fs as pafs

    fs, path = _fs_for(spec)
    magic = any(c in path for c in "*?[")
    if magic:
        parts = path.split("/")
        first = next(i for i, p in enumerate(parts) if any(c in p for c in "*?["))
        base = "/".join(parts[:first]) or "/"
        if isinstance(fs, pafs.LocalFileSystem):
            files = sorted(p for p in globlib.glob(path, recursive=True) if os.path.isfile(p))
        else:
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
            files = sorted(i.path for i in infos if i.type == pafs.FileType.File and _glob_match(i.path, path))
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"--input {spec} does not exist; pass a file, a folder or a glob of files to classify.")
        if info.type == pafs.FileType.File:
            files = [path]
        else:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            files = sorted(
                i.path for i in infos
                if i.type == pafs.FileType.File and not _hidden(posixpath.relpath(i.path, path))
                and (input_format or format_of(i.path))
            )
    if not files:
        raise DataError(f"--input {spec}: no files to classify found ({', '.join(EXTENSIONS)}).")
    if input_format:
        return files, fs, input_format
    found = {format_of(f) for f in files}
    if None in found or len(found) > 1:
        exts = sorted({posixpath.splitext(f)[1] or "(none)" for f in files})
        raise DataError(
            f"--input {spec}: cannot tell one format from the file extensions {', '.join(exts)}; "
            f"pass --input-format ({', '.join(NAMES)}) or narrow --input with a glob."
        )
    return files, fs, found.pop()


def _glob_match(path: str, pattern: str) -> bool:
    # fnmatch's `*` crosses `/`; that is what `**` means and close enough for `*` on object stores.
    return fnmatch.fnmatchcase(path, pattern.replace("**/", "*"))


def _hidden(rel: str) -> bool:
    return any(p.startswith((".", "_")) for p in rel.split("/"))


def _csv_header(path: str, fs, delim: str) -> list[str]:
    import csv
    import io

    with fs.open_input_stream(path) as raw:
        head = raw.read(1 << 20).decode("utf-8-sig", errors="replace")
    header = next(csv.reader(io.StringIO(head), delimiter=delim), [])
    from ..readers import check_unique_columns

    check_unique_columns(f"--input {path}", header)
    return header


def _local_export(export: str) -> str:
    """A local folder holding the export: the path itself, or a per-actor download of a URI."""
    if not _is_uri(export):
        return export
    import pyarrow.fs as pafs

    dst = tempfile.mkdtemp(prefix="bertfast-export-")
    fs, path = _fs_for(export)
    pafs.copy_files(path, dst, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return dst


class OutputTarget:
    """Where the engine writes its part files (`path` on `fs`); `finish(summary)` once all are written."""

    def __init__(self, path: str, fs, before_success: Callable[[], None] | None = None):
        self.path, self.fs, self.finished = path, fs, False
        self._before_success = before_success

    def finish(self, summary: bytes) -> None:
        """Mark the output complete: stale objects of a replaced output go first, `_SUCCESS` last."""
        if self._before_success is not None:
            self._before_success()
        with self.fs.open_output_stream(_join(self.path, SUCCESS)) as f:
            f.write(summary)
        self.finished = True


@contextlib.contextmanager
def _output_dir(output: str, force: bool) -> Iterator[OutputTarget]:
    """Yield the OutputTarget to write (see the module docstring for the order of operations)."""
    # Normalised, so the prefix listed, written and cleaned up is one spelling (`b//out/` is `b/out`).
    fs, path = _fs_for(normalize_location(output) if _is_uri(output) else output)
    if _is_uri(output):
        with _replace_prefix(fs, path, force, output) as target:
            yield target
        return
    from ...utils import atomic_dir

    with atomic_dir(path) as tmp:
        target = OutputTarget(str(tmp), fs)
        yield target
        if not target.finished:
            raise BertfastError(f"--output {output}: the run ended without finishing its output; nothing was written.")


def _listing(fs, path: str) -> dict[str, tuple]:
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return {i.path: (i.size, i.mtime) for i in infos if i.type == pafs.FileType.File}


@contextlib.contextmanager
def _replace_prefix(fs, path: str, force: bool, output: str) -> Iterator[OutputTarget]:
    old = _listing(fs, path)
    if old and not force:
        raise BertfastError(f"--output {output} already exists; pass --force to replace it or choose another folder.")
    success = _join(path, SUCCESS)
    saved = None
    if success in old:
        with fs.open_input_stream(success) as f:
            saved = f.read()
        fs.delete_file(success)
        del old[success]

    def delete_stale() -> None:
        now = _listing(fs, path)
        for p, info in old.items():
            if now.get(p) == info:  # untouched by this run: part of the previous output
                fs.delete_file(p)

    target = OutputTarget(path, fs, delete_stale)
    try:
        yield target
        if not target.finished:
            raise BertfastError(f"--output {output}: the run ended without finishing its output.")
    except BaseException:
        now = _listing(fs, path)
        for p in now.keys() - old.keys():
            with contextlib.suppress(OSError):
                fs.delete_file(p)
        rewritten = [p for p, info in old.items() if now.get(p) != info]
        if saved is not None and not rewritten:
            with fs.open_output_stream(success) as f:
                f.write(saved)
        elif saved is not None:
            log.warning("--output %s: this failed run rewrote %d objects of the previous output, which is "
                        "therefore left without %s (incomplete)", output, len(rewritten), SUCCESS)
        raise


def _count_rows(target: str, fs) -> int:
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    infos = fs.get_file_info(pafs.FileSelector(target, recursive=True))
    n = 0
    for i in infos:
        if i.type == pafs.FileType.File and i.path.endswith(".parquet"):
            with fs.open_input_file(i.path) as f:
                n += pq.read_metadata(f).num_rows
    return n
