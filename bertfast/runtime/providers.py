"""Execution providers and ONNX Runtime sessions, resolved in one place.

`device="cuda"` means the CUDA execution provider *really* runs the graph: after the session is
built we read `session.get_providers()`, because ONNX Runtime silently falls back to the CPU
when the CUDA provider cannot load (missing CUDA/cuDNN libraries, or the CPU-only
`onnxruntime` wheel shadowing `onnxruntime-gpu`). `device="auto"` picks CUDA only when it
works and logs the choice. There is never a silent CPU run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ProviderError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"

# Every distribution that ships the `onnxruntime` Python package; with two installed, the one
# installed last silently overwrites the other's files.
ORT_DISTRIBUTIONS = (
    "onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml",
    "onnxruntime-training", "ort-nightly", "ort-nightly-gpu",
)


def check_device(device: str, arg: str = "device") -> str:
    """Return `device` if it is one of `DEVICES`, else raise ProviderError listing them."""
    if device not in DEVICES:
        raise ProviderError(f"{arg} must be one of {', '.join(DEVICES)}; got {device!r}.")
    return device


def installed_onnxruntime() -> dict[str, str]:
    """Installed distributions providing `onnxruntime` (name -> version), via importlib.metadata."""
    import importlib.metadata as md

    found = {}
    for name in ORT_DISTRIBUTIONS:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return found


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def cuda_unavailable_reason(detail: str = "") -> str:
    """A one-line explanation of why CUDA is not usable, with the likely fix."""
    pkgs = installed_onnxruntime()
    avail = available_providers()
    listed = ", ".join(f"{k}=={v}" for k, v in pkgs.items()) or "none found"
    if "onnxruntime-gpu" in pkgs and len(pkgs) > 1:
        cause = (
            "both onnxruntime-gpu and another onnxruntime build are installed and the CPU one shadows it: "
            "run `pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu`"
        )
    elif "onnxruntime-gpu" not in pkgs:
        cause = "the CPU-only onnxruntime is installed: `pip uninstall -y onnxruntime && pip install 'bertfast[gpu]'`"
    elif CUDA_EP in avail:
        cause = (
            "the CUDA provider is built in but could not start: CUDA or cuDNN libraries are missing or do not "
            "match this onnxruntime-gpu (check `bertfast doctor` and LD_LIBRARY_PATH)"
        )
    else:
        cause = "onnxruntime-gpu is installed but reports no CUDA provider: reinstall it and check `bertfast doctor`"
    extra = f" ({detail})" if detail else ""
    return (
        f"CUDA is not usable{extra}; available providers: {', '.join(avail)}; "
        f"installed: {listed}; likely cause: {cause}."
    )


def session_options(threads: int, allow_spinning: bool = True):
    """SessionOptions tuned for one model serving one caller at a time per run.

    intra_op = `threads` (the CPUs this process may use, not the host's), inter_op = 1 with
    sequential execution: a BERT graph is a chain, so parallel branches buy nothing and an extra
    pool would only oversubscribe the cores.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning workers cut batch-1 latency by ~1 ms but burn CPU between runs that the
    # tokenizer thread (or a neighbouring process) could use; callers can turn it off.
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    so.log_severity_level = 3  # warnings about CPU fallback are checked by us, not printed
    return so


def create_session(model: str | Path, device: str, threads: int, allow_spinning: bool = True):
    """Build an InferenceSession on `device` ("cpu" or "cuda") and check the provider is in use.

    Args:
        model: path of the .onnx file.
        device: "cpu" or "cuda" (resolve "auto" with `resolve_device` first).
        threads: intra-op threads for the CPU provider.
        allow_spinning: let ORT worker threads spin between ops (lower latency, more CPU).

    Raises:
        ProviderError: CUDA was asked for and is not available or not actually used.
    """
    import onnxruntime as ort

    so = session_options(threads, allow_spinning)
    if device == "cuda":
        if CUDA_EP not in ort.get_available_providers():
            raise ProviderError(cuda_unavailable_reason())
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:  # finds CUDA/cuDNN from pip's nvidia-* wheels when present
            try:
                preload()
            except Exception as e:  # best effort, the provider check below decides
                log.debug("onnxruntime.preload_dlls failed: %s", e)
        providers = [(CUDA_EP, {"device_id": 0}), CPU_EP]
    else:
        providers = [CPU_EP]
    try:
        sess = ort.InferenceSession(str(model), sess_options=so, providers=providers)
    except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if device == "cuda":
            raise ProviderError(cuda_unavailable_reason(msg)) from None
        from ..errors import ModelError

        raise ModelError(f"ONNX Runtime cannot load {model} ({msg}); re-run `bertfast export --force`.") from None
    used = sess.get_providers()
    if device == "cuda" and (not used or used[0] != CUDA_EP):
        raise ProviderError(cuda_unavailable_reason(f"the session fell back to {', '.join(used)}"))
    return sess


def cuda_candidate() -> bool:
    """True when the CUDA provider is at least compiled in (it may still fail to start)."""
    try:
        return CUDA_EP in available_providers()
    except Exception:  # a broken onnxruntime install is reported elsewhere
        return False
