"""The environment a benchmark ran in: CPU model and flags, usable cores, GPU, versions, threads.

CPU brand and flags come from `bertfast.hardware` and the execution providers from
`runtime.providers`, the same readings the export and the runtime act on.
"""

from __future__ import annotations

import os
import platform

from ..hardware import cpu_info, relevant_flags

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TOKENIZERS_PARALLELISM")


def gpu_info() -> dict:
    """CUDA device and ONNX Runtime providers (without initializing CUDA when torch lacks it)."""
    from ..runtime.providers import available_providers

    out: dict = {}
    try:
        out["ort_providers"] = available_providers()
    except Exception as e:  # pragma: no cover
        out["ort_providers_error"] = str(e)
    try:
        import torch

        if torch.cuda.is_available():
            out["cuda_device"] = torch.cuda.get_device_name(0)
            out["cuda_version"] = torch.version.cuda
    except Exception:  # pragma: no cover
        pass
    return out


def environment(threads: int) -> dict:
    """Everything that shapes the numbers, for the report."""
    import psutil

    from ..utils import library_versions, usable_cpus

    cpu = cpu_info()
    threads_info: dict = {"requested": threads, "env": {k: os.environ.get(k) for k in THREAD_ENV}}
    try:
        import torch

        threads_info["torch_intra_op"] = torch.get_num_threads()
        threads_info["torch_inter_op"] = torch.get_num_interop_threads()
    except Exception:  # pragma: no cover
        pass
    return {
        "cpu": cpu["brand"],
        "arch": cpu["arch"],
        "cpu_flags": relevant_flags(frozenset(cpu["flags"])),
        "host_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "gpu": gpu_info(),
        "versions": library_versions(),
        "threads": threads_info,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
