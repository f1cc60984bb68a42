"""Show what decides inference speed here: onnxruntime builds and providers, CUDA/cuDNN, CPU
features and the int8 preset an export would use, usable CPUs vs host cores, thread
environment variables and library versions.

Run it when a GPU is not used, or CPU throughput is far from what you expected. `--json` prints
the same facts as JSON (e.g. to attach to a bug report). Warnings say what to change.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess

from .. import hardware

CPU_FLAGS = hardware.INTERESTING_FLAGS  # the flags reported (read by `bertfast.hardware`)
THREAD_ENV = (
    "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TOKENIZERS_PARALLELISM",
    "ORT_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
)
# Sonames tried in order; the first that loads wins. Both CUDA 12 and 13 builds of ORT exist.
CUDA_LIBS = {
    "cudart": ("libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"),
    "cublas": ("libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"),
    "cudnn": ("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"),
}


def diagnose() -> dict:
    """Collect the facts `bertfast doctor` prints, plus a list of `warnings`.

    Returns:
        A JSON-serializable dict with keys onnxruntime, providers, cuda, cpu, threads_env,
        versions, warnings.
    """
    from ..utils import library_versions
    from .providers import CUDA_EP, PROVIDERS, installed_onnxruntime

    warnings: list[str] = []
    packages = installed_onnxruntime()
    ort: dict = {"packages": packages}
    try:
        import onnxruntime

        ort["version"] = onnxruntime.__version__
        ort["providers"] = list(onnxruntime.get_available_providers())
        ort["device"] = onnxruntime.get_device()
    except Exception as e:  # a half-overwritten install fails in odd ways; report, don't crash
        ort["error"] = f"{type(e).__name__}: {e}"
        ort["providers"] = []
        warnings.append(f"onnxruntime cannot be imported ({e}); reinstall it: `pip install --force-reinstall onnxruntime`.")
    if len(packages) > 1:
        warnings.append(
            f"SEVERAL onnxruntime builds are installed ({', '.join(packages)}): they overwrite each other's files "
            "and the CPU one usually wins. Keep exactly one: `pip uninstall -y " + " ".join(packages)
            + "` then `pip install onnxruntime-gpu` (GPU) or `pip install onnxruntime` (CPU)."
        )
    if not packages:
        warnings.append("no onnxruntime distribution found: `pip install onnxruntime` (or onnxruntime-gpu).")

    # bertfast's devices, from the provider table: which are compiled into this onnxruntime.
    providers = {
        p.name: {"ort_name": p.ort_name, "gpu": p.gpu, "compiled_in": p.ort_name in ort["providers"], "auto": p.auto}
        for p in PROVIDERS.values()
    }
    cuda = {"libraries": _cuda_libraries(), "nvidia_smi": _nvidia_smi()}
    if CUDA_EP in ort["providers"]:
        missing = [k for k, v in cuda["libraries"].items() if v is None]
        if missing:
            warnings.append(
                f"onnxruntime has the CUDA provider but {', '.join(missing)} could not be loaded: CUDA sessions will "
                "fail. Install the CUDA 12 runtime + cuDNN 9 (e.g. `pip install nvidia-cudnn-cu12 nvidia-cublas-cu12 "
                "nvidia-cuda-runtime-cu12`) or add their folder to LD_LIBRARY_PATH."
            )
    elif cuda["nvidia_smi"].get("gpus"):
        warnings.append(
            "a GPU is present but onnxruntime has no CUDA provider: "
            "`pip uninstall -y onnxruntime && pip install 'bertfast[gpu]'`."
        )

    cpu = _cpu()
    if cpu["arch"] in ("x86_64", "AMD64") and cpu["int8_preset"] == "avx2":
        warnings.append(
            "the CPU flags show no VNNI (avx512_vnni / avx_vnni): int8 models gain less; prefer an export quantized "
            "for avx2 (`--quantize avx2`). (Some VMs hide flags the CPU has: compare `bertfast bench` numbers.)"
        )
    if cpu["usable_cpus"] < (cpu["host_cores"] or 0):
        cpu["note"] = (
            f"this process may use {cpu['usable_cpus']} of the host's {cpu['host_cores']} CPUs "
            "(container quota or affinity); bertfast sizes its thread pools to the former."
        )
    env = {k: os.environ.get(k) for k in THREAD_ENV}
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        v = env.get(k)
        if v and v.isdigit() and int(v) > cpu["usable_cpus"]:
            warnings.append(f"{k}={v} exceeds the {cpu['usable_cpus']} usable CPUs: threads will oversubscribe the cores.")
    return {
        "onnxruntime": ort,
        "providers": providers,
        "cuda": cuda,
        "cpu": cpu,
        "threads_env": env,
        "versions": library_versions(),
        "warnings": warnings,
    }


def _cuda_libraries() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for key, names in CUDA_LIBS.items():
        found[key] = None
        for name in names:
            try:
                ctypes.CDLL(name)
            except OSError:
                continue
            found[key] = name
            break
    return found


def _nvidia_smi() -> dict:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"found": False}
    try:
        r = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"found": True, "error": str(e)}
    if r.returncode != 0:
        return {"found": True, "error": (r.stderr or r.stdout).strip().splitlines()[:1]}
    return {"found": True, "gpus": [line.strip() for line in r.stdout.splitlines() if line.strip()]}


def _cpu() -> dict:
    from ..utils import usable_cpus

    info = hardware.cpu_info()
    flags = frozenset(info["flags"])
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "model": info["brand"],
        "arch": info["arch"],
        "flags": hardware.relevant_flags(flags),
        "int8_preset": hardware.int8_preset(flags, info["arch"]),
        "host_cores": os.cpu_count(),
        "affinity_cpus": affinity,
        "usable_cpus": usable_cpus(),
    }


def format_report(d: dict) -> str:
    """The human-readable report `bertfast doctor` prints."""
    ort, cuda, cpu = d["onnxruntime"], d["cuda"], d["cpu"]
    devices = ", ".join(f"{k} ({'compiled in' if v['compiled_in'] else 'not compiled in'})"
                        for k, v in d["providers"].items())
    pk = ", ".join(f"{k} {v}" for k, v in ort["packages"].items()) or "none"
    libs = ", ".join(f"{k}: {v or 'NOT FOUND'}" for k, v in cuda["libraries"].items())
    smi = cuda["nvidia_smi"]
    gpus = "; ".join(smi.get("gpus", [])) or ("nvidia-smi not found" if not smi.get("found") else smi.get("error") or "no GPU")
    lines = [
        "onnxruntime",
        f"  packages:   {pk}",
        f"  providers:  {', '.join(ort.get('providers', [])) or 'none'}",
        f"  devices:    {devices}",
        "CUDA",
        f"  libraries:  {libs}",
        f"  GPUs:       {gpus}",
        "CPU",
        f"  model:      {cpu['model']} ({cpu['arch']})",
        f"  features:   {', '.join(cpu['flags']) or 'none of ' + ', '.join(CPU_FLAGS)}",
        f"  int8:       {cpu['int8_preset']} (the preset `bertfast export` quantizes for on this CPU)",
        f"  CPUs:       {cpu['usable_cpus']} usable (affinity {cpu['affinity_cpus']}), host has {cpu['host_cores']}",
    ]
    if cpu.get("note"):
        lines.append(f"  note:       {cpu['note']}")
    env = {k: v for k, v in d["threads_env"].items() if v is not None and k != "LD_LIBRARY_PATH"}
    lines += ["thread environment", "  " + (", ".join(f"{k}={v}" for k, v in env.items()) or "none set")]
    lines += ["versions", "  " + ", ".join(f"{k} {v}" for k, v in d["versions"].items())]
    if d["warnings"]:
        lines.append("WARNINGS")
        lines += [f"  ! {w}" for w in d["warnings"]]
    else:
        lines.append("no problems found")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of `bertfast doctor`."""
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def main(args: argparse.Namespace) -> int:
    """Print the report; exit code 0 (warnings are advice, not failures)."""
    d = diagnose()
    print(json.dumps(d, indent=2) if args.json else format_report(d))
    return 0
