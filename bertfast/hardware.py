"""The CPU this process runs on, read one way for every stage: its flags and the int8 preset.

The export's quantizer, the benchmark's Optimum peer, `bertfast doctor` and every benchmark
report all read the flags here, so they can never disagree about what the machine can do.
Standard library only (py-cpuinfo is used when installed, for macOS/Windows).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# CPU features that decide which kernels run (int8 dot products, bf16, AMX), as reported.
INTERESTING_FLAGS = (
    "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512vnni", "avx_vnni",
    "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "asimd", "asimddp", "sve",
)

# int8 presets in the names of Optimum's `AutoQuantizationConfig`, as ONNX Runtime settings:
# VNNI (and ARM's sdot/udot) multiply-add without saturating, so weights use the full 8-bit
# range; AVX2's vpmaddubsw saturates int16 sums, so weights are reduced to 7 bits there.
INT8_PRESETS: dict[str, dict] = {
    "avx512_vnni": {"reduce_range": False},
    "avx2": {"reduce_range": True},
    "arm64": {"reduce_range": False},
}


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict:
    """{"brand", "arch", "flags"}: /proc/cpuinfo on Linux, py-cpuinfo elsewhere when installed."""
    brand, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and brand is None:
                brand = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    if not flags:  # macOS / Windows: py-cpuinfo if present (slow, so only as a fallback)
        try:
            import cpuinfo

            info = cpuinfo.get_cpu_info()
            brand = brand or info.get("brand_raw")
            flags = set(info.get("flags", []))
        except Exception:  # optional; absence is not an error
            pass
    return {"brand": brand or platform.processor() or platform.machine(), "arch": platform.machine(),
            "flags": sorted(flags)}


def cpu_flags() -> frozenset[str]:
    return frozenset(cpu_info()["flags"])


def relevant_flags(flags: frozenset[str] | None = None) -> list[str]:
    """The flags among `INTERESTING_FLAGS` this CPU has (what reports record)."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in INTERESTING_FLAGS if f in flags]


def int8_preset(flags: frozenset[str] | None = None, arch: str | None = None) -> str:
    """The int8 preset for a CPU: the one rule the export and the benchmark's Optimum peer share."""
    flags = cpu_flags() if flags is None else flags
    arch = (arch or platform.machine()).lower()
    if arch in ("arm64", "aarch64") or "asimd" in flags:
        return "arm64"
    if flags & {"avx512_vnni", "avx512vnni", "avx_vnni"}:
        return "avx512_vnni"
    return "avx2"
