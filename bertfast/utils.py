"""Small helpers shared by the stages: atomic folder/file writes, hashing, versions, CPUs."""

from __future__ import annotations

import contextlib
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
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def check_output_dir(out: str | Path, force: bool, flag: str = "--out") -> Path:
    """Refuse to overwrite an existing non-empty folder unless `force` is set."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BertfastError(f"{flag} {out} exists and is a file; choose a folder path.")
    if out.exists() and any(out.iterdir()) and not force:
        raise BertfastError(
            f"output folder {out} already exists and is not empty; pass --force to replace it "
            f"or choose another {flag}."
        )
    return out


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `out`, on failure it is removed.

    The previous contents of `out` stay untouched until the new folder is complete, so an
    interrupted or failed run never destroys a good model / export, and never leaves a folder
    that looks finished.
    """
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".bertfast-tmp-{out.name}-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".bertfast-old-{out.name}-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; renamed onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.replace(tmp, path)
