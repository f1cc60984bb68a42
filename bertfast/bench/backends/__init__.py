"""The backends a benchmark compares: small objects chosen by name, no class hierarchy.

Every backend has `name`, `precision` ("fp32" | "int8" | "fp16"), `outputs` ("logits" |
"probs") and:

- `load()`: build/load the model (not timed as inference; its time and RSS are reported);
- `prepare(batch_size)`: set the batch size for the next runs (bertfast reloads its
  `Classifier`, because its batch size is a load-time setting);
- `run(texts) -> np.ndarray [n, outputs]`: end to end, tokenization included, rows in the
  order of `texts`; `texts` are strings, or `(text, text_pair)` tuples when `ctx.pair` (the
  transformers peers tokenize them as `tokenizer(texts, text_pairs, ...)` via `ctx.tokenize`).
  "logits" outputs get the task's activation in `bench.quality`;
- `encode(texts)` + `run_encoded(enc)` (optional): tokenization done up front, so that
  `run_encoded` times the model alone (plus batching/padding bookkeeping);
- `padding() -> float | None`: padded share of the positions the last `run` computed;
- `close()`: free the model.

A backend that does not apply here (optimum not installed, int8 on a GPU) raises
`BackendSkipped` from `load()`; any other exception marks it failed, and the others go on.

This module is the registry: `FACTORIES` maps each peer's name to its factory, and
`bench.config` reads it (never the other way round). The peers live one per module:
`torch_backend`, `optimum_backend`, `bertfast_backend`; none imports its library until `load()`.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import BertfastError
from .base import BackendContext, BackendSkipped
from .bertfast_backend import BertfastBackend
from .optimum_backend import OptimumBackend, build_optimum_model
from .torch_backend import TorchBackend

__all__ = [
    "FACTORIES", "STANDARD_BACKENDS", "BackendContext", "BackendSkipped", "BertfastBackend", "OptimumBackend",
    "TorchBackend", "build_optimum_model", "describe", "expand_names", "make_backend",
]

# Name -> factory(ctx, name), in report order. Tests may add entries (e.g. a backend whose load raises).
FACTORIES: dict[str, Callable[[BackendContext, str], object]] = {
    "torch-seed": lambda ctx, name: TorchBackend(ctx, name, style="seed"),
    "torch": lambda ctx, name: TorchBackend(ctx, name, style="best"),
    "torch-int8": lambda ctx, name: TorchBackend(ctx, name, style="best", int8=True),
    "optimum": lambda ctx, name: OptimumBackend(ctx, name),
    "optimum-int8": lambda ctx, name: OptimumBackend(ctx, name, int8=True),
}
# The peers "all" runs, fixed here so that test doubles added to FACTORIES later never join it.
# "bertfast" expands to every variant of the export that runs on the device (`bertfast:<variant>` names one).
STANDARD_BACKENDS: tuple[str, ...] = tuple(FACTORIES)


def runnable_variants(variants: dict, device: str) -> list[str]:
    """The export's variants that run on `device`, skipping those whose export failed (no file)."""
    return [v for v, spec in variants.items()
            if spec.get("status") != "failed" and device in spec.get("devices", [device])]


def expand_names(requested: tuple[str, ...], variants: dict, device: str, default: dict | None = None) -> list[str]:
    """Turn `--backends` into concrete names: "all" and "bertfast" expand to the export's variants,
    "bertfast:default" to the variant the export picked for the device (what users get)."""
    bertfast_all = [f"bertfast:{v}" for v in runnable_variants(variants, device)]
    names: list[str] = []
    for n in requested:
        if n == "all":
            names += [*STANDARD_BACKENDS, *bertfast_all]
        elif n == "bertfast":
            names += bertfast_all
        elif n == "bertfast:default":
            chosen = (default or {}).get(device)
            if chosen is None:
                raise BertfastError(f"--backends bertfast:default: TARGET has no default variant for {device} "
                                    "(is it an export folder?); name one as bertfast:<variant>.")
            names.append(f"bertfast:{chosen}")
        else:
            names.append(n)
    return list(dict.fromkeys(names))


def make_backend(name: str, ctx: BackendContext):
    """The backend object for `name` (not loaded yet)."""
    if name.startswith("bertfast:"):
        return BertfastBackend(ctx, name)
    return FACTORIES[name](ctx, name)


def describe(backend) -> dict:
    """JSON-ready facts about a backend for the report."""
    return {"precision": getattr(backend, "precision", "fp32"), "outputs": getattr(backend, "outputs", "logits"),
            **getattr(backend, "info", {})}
