"""Small helpers shared by the stages: atomic folder/file writes, hashing, versions, CPUs."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import BertfastError


def usable_cpus() -> int:
    """CPUs this process may actually use: affinity mask and cgroup CPU quota, not host cores.

    `os.cpu_count()` reports the host's cores; in a container limited to 2 CPUs on a 64-core
    host that oversubscribes ONNX Runtime's thread pool 32x, the classic "thread settings"
    complaint. We take the minimum of the affinity mask and the cgroup v2/v1 quota.
    """
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, int(quota + 0.999)))
    return max(1, n)


def _cgroup_cpu_quota() -> float | None:
    try:  # cgroup v2: "max 100000" or "200000 100000"
        q, p = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if q == "max" else int(q) / int(p)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if q <= 0 else q / p
    except (OSError, ValueError):
        return None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def library_versions(names: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the libraries that shape results (missing ones are skipped)."""
    import importlib.metadata as md
    import platform

    names = names or (
        "bertfast", "torch", "transformers", "tokenizers", "onnx", "onnxruntime",
        "onnxruntime-gpu", "optimum", "optimum-onnx", "datasets", "accelerate", "numpy",
    )
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            pass
    return out


def write_json(path: str | Path, obj) -> None:
    """Write JSON atomically (temp file + rename), so a crash never leaves half a file."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


# -- outputs: only ever replace what bertfast wrote ------------------------------------------

# Written into every folder bertfast publishes; `--force` replaces only folders that carry it
# (or that an earlier bertfast recognisably wrote, see `_legacy_output`).
MARKER = ".bertfast-output"
TMP_PREFIX = ".bertfast-tmp-"


def is_bertfast_output(folder: Path) -> bool:
    """True if `folder` is something bertfast wrote (its marker, or a 0.1 output's signature)."""
    return (folder / MARKER).is_file() or _legacy_output(folder)


def _legacy_output(folder: Path) -> bool:
    # bertfast 0.1 wrote no marker: its exports, models and benchmark reports are recognised by
    # the files only it writes together.
    def has(*names: str) -> bool:
        return all((folder / n).is_file() for n in names)

    if has("bertfast.json"):
        try:
            return json.loads((folder / "bertfast.json").read_text()).get("format") == "bertfast-export"
        except (OSError, ValueError, AttributeError):
            return False
    return has("training.json", "config.json") or has("results.json", "results.md") or has("_SUCCESS")


def _describe(folder: Path, limit: int = 4) -> str:
    names = sorted(p.name for p in folder.iterdir())
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_output_dir(out: str | Path, force: bool, flag: str = "--out", inputs: tuple = ()) -> Path:
    """Refuse to overwrite an existing non-empty folder unless `force` is set, and even with
    `force` refuse what bertfast did not write.

    Args:
        out: the output folder the user named.
        force: the user passed --force.
        flag: the flag's name, for messages.
        inputs: paths this run reads; an output folder containing one of them is refused.

    Raises:
        BertfastError: `out` is a file, a symbolic link, the working directory or one of its
            parents, contains an input, or (without marker) holds files bertfast did not write.
    """
    out = Path(out)
    if out.is_symlink():
        raise BertfastError(
            f"{flag} {out} is a symbolic link (to {os.readlink(out)}); bertfast never writes through links. "
            f"Pass the real folder path, or another {flag}."
        )
    if out.exists() and not out.is_dir():
        raise BertfastError(f"{flag} {out} exists and is a file; choose a folder path.")
    real = out.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise BertfastError(f"{flag} {out} is the working directory or contains it; choose a new folder, e.g. exports/NAME.")
    for src in inputs:
        if src is None or "://" in str(src):
            continue
        s = Path(src).resolve()
        if s == real or real in s.parents:
            raise BertfastError(f"{flag} {out} contains the input {src}; choose an output folder outside the inputs.")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise BertfastError(
                f"output folder {out} already exists and is not empty; pass --force to replace it "
                f"or choose another {flag}."
            )
        if not is_bertfast_output(out):
            raise BertfastError(
                f"{flag} {out} holds files bertfast did not write ({_describe(out)}); --force only replaces "
                f"bertfast's own outputs. Choose another {flag}, or move that folder away yourself."
            )
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(parent: Path, name: str) -> None:
    """Remove temp folders/files of runs on `name` whose process is gone (killed with SIGKILL,
    a power cut): their names carry the pid, so a live run's temp is never touched."""
    for p in parent.glob(f"{TMP_PREFIX}{glob.escape(name)}-*"):
        pid = p.name[len(f"{TMP_PREFIX}{name}-"):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)) and not p.is_symlink():
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root` to disk, so the rename that publishes it never
    exposes a folder whose files are still only in the page cache."""
    for dirpath, _, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `out`, on failure it is removed.

    The previous contents of `out` stay untouched until the new folder is complete, so an
    interrupted or failed run never destroys a good model / export, and never leaves a folder
    that looks finished. The published folder carries bertfast's marker. If `out` did not
    exist when the run started but does when it ends, another process wrote it meanwhile: this
    run fails instead of silently replacing that result. Callers decide beforehand (with
    `check_output_dir`) whether an existing `out` may be replaced.
    """
    out = Path(out)
    if out.is_symlink():
        raise BertfastError(f"{out} is a symbolic link; bertfast never writes through links. Pass the real path.")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out.parent, out.name)
    existed = out.exists()
    # mkdtemp creates the folder exclusively (0700, random suffix): no name to pre-plant a link at.
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{out.name}-{os.getpid()}-", dir=out.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text('{"written_by": "bertfast"}\n')
        tmp.chmod(0o755)
        _fsync_tree(tmp)
        if out.is_symlink() or (out.exists() and not existed):
            raise BertfastError(
                f"{out} was created by another process while this run was writing it; nothing was replaced. "
                "Run again with --force to replace it, or choose another output."
            )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{out.name}-{os.getpid()}-old-", dir=out.parent))
        os.replace(out, old / "previous")
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old / "previous", out)
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; renamed onto `path` only if the block succeeds.

    The temp file is created exclusively with a random name (no predictable name whose
    symlink could be followed) and flushed to disk before the rename; a failed or interrupted
    block removes it. As with `atomic_dir`, a `path` that appeared during the run (another
    process) is not replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path.parent, path.name)
    existed = path.exists() or path.is_symlink()
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}-{os.getpid()}-", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if not existed and (path.exists() or path.is_symlink()):
            raise BertfastError(
                f"{path} was created by another process while this run was writing it; nothing was replaced. "
                "Run again with --force to replace it, or choose another output."
            )
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.replace(tmp, path)
    _fsync_dir(path.parent)
