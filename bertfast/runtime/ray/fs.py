"""Files and URIs for the Ray engine: local paths, `file://` and object stores (s3://, gs://, ...).

`resolve_input` turns a file, folder, glob or URI into the list of files to read and their format
(`formats.format_of`, the one extension table). `_output_dir` writes a local output folder to a
hidden sibling renamed when complete; object stores have no rename, so there the folder is
complete when its `_SUCCESS` file exists (written last by the engine).
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob as globlib
import os
import posixpath
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ...errors import BertfastError, DataError
from ...formats import EXTENSIONS, NAMES, format_of


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _strip_file(path: str) -> str:
    path = path.removeprefix("file://")
    return path if _is_uri(path) else str(Path(path).expanduser().resolve())


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
    return next(csv.reader(io.StringIO(head), delimiter=delim), [])


def _local_export(export: str) -> str:
    """A local folder holding the export: the path itself, or a per-actor download of a URI."""
    if not _is_uri(export):
        return export
    import pyarrow.fs as pafs

    dst = tempfile.mkdtemp(prefix="bertfast-export-")
    fs, path = _fs_for(export)
    pafs.copy_files(path, dst, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return dst


@contextlib.contextmanager
def _output_dir(output: str, force: bool) -> Iterator[tuple[str, object]]:
    """Yield (folder to write, filesystem). Local: a hidden sibling renamed onto `output` at the
    end (`atomic_dir`). Object stores have no rename: the folder itself, `_SUCCESS` written last."""
    fs, path = _fs_for(output)
    if _is_uri(output):
        import pyarrow.fs as pafs

        info = fs.get_file_info(path)
        if info.type != pafs.FileType.NotFound:
            if not force:
                raise BertfastError(f"--output {output} already exists; pass --force to replace it or choose another folder.")
            fs.delete_dir_contents(path, missing_dir_ok=True)
        yield path, fs
        return
    from ...utils import atomic_dir

    with atomic_dir(path) as tmp:
        yield str(tmp), fs


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
