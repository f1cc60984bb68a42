"""The environment a benchmark ran in: CPU model and flags, usable cores, GPU, versions, threads."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# CPU features that decide which kernels run (int8 dot products, bf16, AMX).
INTERESTING_FLAGS = (
    "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512vnni", "avx_vnni",
    "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "asimd", "sve",
)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TOKENIZERS_PARALLELISM")


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict:
    """CPU brand and flags: py-cpuinfo when installed, else /proc/cpuinfo."""
    brand, flags = platform.processor() or platform.machine(), set()
    try:
        import cpuinfo

        info = cpuinfo.get_cpu_info()
        brand = info.get("brand_raw") or brand
        flags = set(info.get("flags", []))
    except Exception:  # py-cpuinfo missing or failing: fall back to the kernel's view
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name") and brand in ("", platform.machine()):
                    brand = line.split(":", 1)[1].strip()
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
        except OSError:
            pass
    return {"brand": brand, "arch": platform.machine(), "flags": sorted(flags)}


def cpu_flags() -> frozenset[str]:
    return frozenset(cpu_info()["flags"])


def gpu_info() -> dict:
    """CUDA device and ONNX Runtime providers (without initializing CUDA when torch lacks it)."""
    out: dict = {}
    try:
        import onnxruntime as ort

        out["ort_providers"] = ort.get_available_providers()
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
        "cpu_flags": [f for f in INTERESTING_FLAGS if f in set(cpu["flags"])],
        "host_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "gpu": gpu_info(),
        "versions": library_versions(),
        "threads": threads_info,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
