"""Execution providers and ONNX Runtime sessions, resolved in one place.

`device="cuda"` means the CUDA execution provider *really* runs the graph: after the session is
built we read `session.get_providers()`, because ONNX Runtime silently falls back to the CPU
when the CUDA provider cannot load (missing CUDA/cuDNN libraries, or the CPU-only
`onnxruntime` wheel shadowing `onnxruntime-gpu`). `device="auto"` picks CUDA only when it
works and logs the choice. There is never a silent CPU run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProviderError

log = logging.getLogger(__name__)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"


@dataclass(frozen=True)
class Provider:
    """One execution provider: everything bertfast knows about it, in one row.

    Attributes:
        name: the name users type (`device="cuda"`, `--device tensorrt`), also the key of the
            manifest's per-target defaults and of each variant's `devices`.
        ort_name: ONNX Runtime's provider name; after a session is built, the provider must be
            first in `session.get_providers()` (the no-silent-fallback check).
        title: how messages and logs name it ("CUDA is not usable ...").
        gpu: runs on an NVIDIA GPU (needs onnxruntime-gpu; one stream; Ray actors need GPUs).
        io_binding: inputs bound once and outputs allocated on the device (`run_with_iobinding`).
        precisions: the variant precisions it may run (also the devices of a variant whose
            manifest entry lists none).
        chain: providers placed after it in the session (ops it lacks run there; a TensorRT
            session keeps CUDA for the subgraphs TensorRT rejects, never the CPU alone).
        auto: tried by `device="auto"`, GPU rows first (TensorRT is not: its first engine build
            takes minutes, so it is only used when asked for by name).
        memory: the ONNX Runtime device type IO binding allocates outputs on.
        ort_options: provider options passed to ONNX Runtime, as (key, value) pairs.
        engine_cache: builds engines when a session starts (slow), so they are cached in a
            folder next to the model (`.trt-cache`) and reused by later sessions.
        needs: the native libraries it loads (named when it cannot start).
        min_batch_tokens: padded tokens a batch holds before the Batcher may end it early where
            text lengths drop (None: a quarter of the token budget). Small on the CPU, where
            padding costs its full compute and one more run costs ~0.1-0.3 ms (measured on 2
            cores with headlines: calls of 20-256 texts ran 7-31% faster at 128 than at 2048);
            a quarter of the budget on GPUs, where a run's fixed cost (kernel launches) is
            larger and padded tokens ride along in parallel.
    """

    name: str
    ort_name: str
    title: str
    gpu: bool
    io_binding: bool
    precisions: tuple[str, ...]
    chain: tuple[str, ...] = ()
    auto: bool = False
    memory: str = "cpu"
    ort_options: tuple[tuple[str, object], ...] = ()
    engine_cache: bool = False
    needs: str = ""
    min_batch_tokens: int | None = None

    def options(self, cache_dir: str | None = None) -> dict:
        """Provider options for `InferenceSession(providers=[(ort_name, options), ...])`."""
        opts = dict(self.ort_options)
        if self.engine_cache and cache_dir:
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
        return opts


# The table. A new provider is one row here (plus, for a GPU one, nothing else: the session,
# the auto policy, the fallback check, the manifest defaults, bench and Ray all read it).
PROVIDERS: dict[str, Provider] = {p.name: p for p in (
    Provider("cpu", CPU_EP, "CPU", gpu=False, io_binding=False, precisions=("fp32", "int8"), auto=True,
             min_batch_tokens=128),
    Provider("cuda", CUDA_EP, "CUDA", gpu=True, io_binding=True, precisions=("fp32", "fp16"), chain=(CPU_EP,),
             auto=True, memory="cuda", ort_options=(("device_id", 0),), needs="CUDA 12 runtime, cuBLAS and cuDNN 9"),
    # trt_fp16_enable stays off: the fp16 variant is already fp16, and fp32 stays as validated.
    Provider("tensorrt", TRT_EP, "TensorRT", gpu=True, io_binding=True, precisions=("fp32", "fp16"),
             chain=(CUDA_EP, CPU_EP), memory="cuda", ort_options=(("device_id", 0), ("trt_fp16_enable", False)),
             engine_cache=True, needs="TensorRT (libnvinfer) plus the CUDA libraries"),
)}
DEVICES = ("auto", *PROVIDERS)


def provider(name: str) -> Provider:
    """The table row for `name` (resolve "auto" first with `auto_order`)."""
    check_runtime_device(name)
    if name == "auto":
        raise ProviderError('"auto" is a policy, not a provider; resolve it with auto_order().')
    return PROVIDERS[name]


def auto_order() -> list[Provider]:
    """Providers `device="auto"` tries, best first: the GPU ones compiled in, then the CPU."""
    avail = set(available_providers())
    usable = [p for p in PROVIDERS.values() if p.auto and (p.ort_name in avail or not p.gpu)]
    return sorted(usable, key=lambda p: not p.gpu)  # GPUs first, the CPU last


# Every distribution that ships the `onnxruntime` Python package; with two installed, the one
# installed last silently overwrites the other's files.
ORT_DISTRIBUTIONS = (
    "onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml",
    "onnxruntime-training", "ort-nightly", "ort-nightly-gpu",
)


def check_runtime_device(device: str, arg: str = "device") -> str:
    """Return `device` if it is one of `DEVICES` (a provider name or "auto": the runtime's
    `device`, not the exporter's `--device`), else raise ProviderError listing them."""
    if device not in DEVICES:
        raise ProviderError(f"{arg} must be one of {', '.join(DEVICES)}; got {device!r}.")
    return device


def installed_onnxruntime() -> dict[str, str]:
    """Installed distributions providing `onnxruntime` (name -> version), via importlib.metadata."""
    from ..utils import library_versions

    return {k: v for k, v in library_versions(ORT_DISTRIBUTIONS).items() if k != "python"}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def cuda_unavailable_reason(detail: str = "", what: str = "CUDA") -> str:
    """A one-line explanation of why a GPU provider is not usable, with the likely fix.

    Args:
        detail: what failed (e.g. the session's fallback providers), in parentheses.
        what: the provider, by `PROVIDERS` name, title or ONNX Runtime name ("cuda", "CUDA",
            "CUDAExecutionProvider"); unknown names are treated as CUDA.
    """
    p = next((r for r in PROVIDERS.values() if what in (r.name, r.title, r.ort_name)), PROVIDERS["cuda"])
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
    elif p.ort_name in avail:
        cause = (
            f"the {p.title} provider is built in but could not start: {p.needs} are missing or do not "
            "match this onnxruntime-gpu (check `bertfast doctor` and LD_LIBRARY_PATH)"
        )
    else:
        cause = (f"onnxruntime-gpu is installed but reports no {p.title} provider ({p.ort_name}): "
                 "reinstall it and check `bertfast doctor`")
    extra = f" ({detail})" if detail else ""
    return (
        f"{p.title} is not usable{extra}; available providers: {', '.join(avail)}; "
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
    """Build an InferenceSession on provider `device` and check the provider is really in use.

    Args:
        model: path of the .onnx file.
        device: a `PROVIDERS` name (resolve "auto" first).
        threads: intra-op threads for the CPU provider.
        allow_spinning: let ORT worker threads spin between ops (lower latency, more CPU).

    Raises:
        ProviderError: a GPU provider was asked for and is not available or not actually used.
        ModelError: the CPU provider cannot load the file.
    """
    import onnxruntime as ort

    p = provider(device)
    so = session_options(threads, allow_spinning)
    if p.gpu:
        if p.ort_name not in ort.get_available_providers():
            raise ProviderError(cuda_unavailable_reason(f"{p.ort_name} is not compiled in", what=p.name))
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:  # finds CUDA/cuDNN from pip's nvidia-* wheels when present
            try:
                preload()
            except Exception as e:  # best effort, the provider check below decides
                log.debug("onnxruntime.preload_dlls failed: %s", e)
    providers = [(p.ort_name, p.options(_engine_cache(p, model))), *p.chain]
    try:
        sess = ort.InferenceSession(str(model), sess_options=so, providers=providers)
    except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if p.gpu:
            raise ProviderError(cuda_unavailable_reason(msg, what=p.name)) from None
        from ..errors import ModelError

        raise ModelError(f"ONNX Runtime cannot load {model} ({msg}); re-run `bertfast export --force`.") from None
    used = sess.get_providers()
    if not used or used[0] != p.ort_name:
        raise ProviderError(cuda_unavailable_reason(f"the session fell back to {', '.join(used)}", what=p.name))
    return sess


def _engine_cache(p: Provider, model: str | Path) -> str | None:
    """The engine cache folder next to `model` for providers that build engines (None: no cache)."""
    if not p.engine_cache:
        return None
    cache = Path(model).parent / ".trt-cache"
    try:
        cache.mkdir(exist_ok=True)
    except OSError as e:  # a read-only export folder: every session builds its engine again
        log.warning("%s engine cache %s cannot be created (%s); engines will not be cached.", p.title, cache, e)
        return None
    return str(cache)
