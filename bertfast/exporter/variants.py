"""The export variants: one declaration each, read by the flag check, the build loop and validation.

A variant names its precision, the execution providers it targets (names from
`bertfast.runtime.providers.PROVIDERS`), its file, how it is built and when `--variants auto`
includes it. The int8 *preset* (what the CPU needs: `bertfast.hardware.int8_preset`) is separate:
every int8 variant is built for the preset the export resolved.
Adding a variant is one `Variant(...)` in `VARIANTS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BertfastError
from ..families import family_of
from ..hardware import INT8_PRESETS
from ..runtime.providers import PROVIDERS

log = logging.getLogger(__name__)

CPU = ("cpu",)
GPU = tuple(n for n, p in PROVIDERS.items() if p.gpu)  # cuda, tensorrt
ALL = tuple(PROVIDERS)
# `--device`: one provider, or every provider at once.
DEVICE_CHOICES = (*CPU, *GPU, "all")


@dataclass
class BuildContext:
    """What the build functions share during one export (they write into `folder`).

    The shape-inferred fp32 graph that every int8 variant quantizes is made once, on first use.
    """

    folder: Path
    scratch: Path
    raw: Path  # the unfused ONNX graph
    config: dict  # config.json of the model
    preset: str  # int8 preset (a key of hardware.INT8_PRESETS)
    tokenizer: object = None
    calibration_texts: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    max_length: int = 128
    calibration_samples: int = 128
    _shaped: Path | None = None

    def fused(self) -> Path:
        """The fused fp32 graph (built first; the other variants derive from it or from `raw`)."""
        return self.folder / VARIANTS["fp32"].file

    def shaped(self) -> Path:
        """The fused fp32 graph with symbolic shapes (what ORT's quantizer needs), made once."""
        from . import quantize

        if self._shaped is None:
            self._shaped = quantize.with_shapes(self.fused(), self.scratch / "shaped.onnx")
        return self._shaped

    def calibration_batches(self) -> list[dict]:
        """Tokenized calibration texts for static int8, fixed-length batches of 8."""
        rng = np.random.default_rng(0)
        texts = self.calibration_texts
        pick = [texts[i] for i in rng.permutation(len(texts))[:self.calibration_samples]]
        batches = []
        for i in range(0, len(pick), 8):
            # Fixed-length padding: the histogram calibrators stack activations across batches.
            enc = self.tokenizer(pick[i:i + 8], truncation=True, max_length=self.max_length,
                                 padding="max_length", return_tensors="np")
            batches.append({k: enc[k].astype(np.int64) if k in enc else np.zeros_like(enc["input_ids"], dtype=np.int64)
                            for k in self.inputs})
        return batches


def _fp32(ctx: BuildContext, dst: Path) -> None:
    from . import optimize

    optimize.fuse(ctx.raw, dst, ctx.config)


def _dynamic(per_channel: bool, reduce_range: bool | None = None, mixed: bool = False):
    def build(ctx: BuildContext, dst: Path) -> None:
        from . import quantize

        exclude = quantize.sensitive_nodes(ctx.shaped(), family_of(ctx.config), ctx.config) if mixed else None
        quantize.dynamic(ctx.shaped(), dst, ctx.preset, per_channel=per_channel, exclude=exclude,
                         reduce_range=reduce_range)
    return build


def _static(ctx: BuildContext, dst: Path) -> None:
    from . import quantize

    quantize.static(ctx.shaped(), dst, ctx.preset, per_channel=True, calib_batches=ctx.calibration_batches())


def _fp16(ctx: BuildContext, dst: Path) -> None:
    from . import optimize

    optimize.to_fp16(ctx.raw, dst, ctx.config)


def _always(preset: str) -> bool:
    return True


def _reduced_range(preset: str) -> bool:
    # reduce_range (7-bit weights) avoids AVX2's int16 saturation but costs precision; where the
    # preset uses it, also build the full-range variant and let validation on real data decide.
    return INT8_PRESETS[preset]["reduce_range"]


@dataclass(frozen=True)
class Variant:
    """One export variant.

    Attributes:
        name: what `--variants` and `Classifier.load(variant=...)` take.
        precision: fp32, int8 or fp16 (checked against each provider's `precisions`).
        providers: provider names it targets (the manifest's `devices`).
        file: its ONNX file in the export folder.
        description: one line for the manifest and logs.
        build: `build(ctx, dst)` writes the file; raising records the variant as failed.
        auto: `auto(preset)` says whether `--variants auto` builds it (when the export targets
            one of its providers); None: never up front.
        fallback: built by `auto` only when no plain int8 variant keeps the accuracy budget.
        calibrated: needs calibration texts (`BuildContext.calibration_texts`), which the export
            holds out of validation when no training split is saved.
        searched: as a fallback, built by a search on the eval data instead of `build`
            (int8-mixed: `exporter/mixed.py` measures which layers to keep in fp32); `build`
            is what `--variants NAME` gets.
    """

    name: str
    precision: str
    providers: tuple[str, ...]
    file: str
    description: str
    build: Callable[[BuildContext, Path], None] = field(repr=False)
    auto: Callable[[str], bool] | None = field(default=_always, repr=False)
    fallback: bool = False
    calibrated: bool = False  # quantized with activation ranges measured on calibration texts
    searched: bool = False

    def __post_init__(self):
        for p in self.providers:  # a typo in the table fails at import, not in a user's export
            if self.precision not in PROVIDERS[p].precisions:
                raise ValueError(f"variant {self.name}: provider {p} does not run {self.precision}")


# The table. fp32 comes first: every other variant derives from it (or from the same raw graph).
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("fp32", "fp32", ALL, "model.onnx",
            "fp32, ORT transformer fusions (Attention, SkipLayerNorm, EmbedLayerNorm, BiasGelu)", _fp32),
    Variant("int8-dynamic", "int8", CPU, "model_int8_dynamic.onnx",
            "int8 dynamic, per-tensor weights, fused graph (QAttention)", _dynamic(per_channel=False)),
    Variant("int8-dynamic-pc", "int8", CPU, "model_int8_dynamic_pc.onnx",
            "int8 dynamic, per-channel weights, fused graph (QAttention)", _dynamic(per_channel=True)),
    Variant("int8-dynamic-pc-fr", "int8", CPU, "model_int8_dynamic_pc_fr.onnx",
            "int8 dynamic, per-channel, full 8-bit weight range (no reduce_range)",
            _dynamic(per_channel=True, reduce_range=False), auto=_reduced_range),
    Variant("int8-static", "int8", CPU, "model_int8_static.onnx",
            "int8 static QDQ, activation ranges calibrated on held-out texts (never validated on)", _static,
            calibrated=True),
    Variant("int8-mixed", "int8", CPU, "model_int8_mixed.onnx",
            "int8 dynamic per-channel, first/last layer and head kept fp32", _dynamic(per_channel=True, mixed=True),
            auto=None, fallback=True, searched=True),
    Variant("fp16", "fp16", GPU, "model_fp16.onnx",
            "fp16 for GPU providers, fused for GPU, LayerNorm/Softmax kept fp32", _fp16),
)}


def targets(device: str) -> tuple[str, ...]:
    """Provider names an export for `--device device` builds for."""
    return ALL if device == "all" else (device,)


def check_device(device: str) -> str:
    """`device` if `--device` accepts it, else an error naming the choices."""
    if device not in DEVICE_CHOICES:
        raise BertfastError(f"--device {device!r} is not valid; choose {', '.join(DEVICE_CHOICES)}.")
    return device


def parse_names(spec: str) -> list[str]:
    """The variant names of a `--variants` comma list (not `auto`), checked against the table."""
    names = [v.strip() for v in spec.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise BertfastError(f"--variants: unknown {', '.join(unknown) or '(empty)'}; "
                            f"choose from auto, {', '.join(VARIANTS)}.")
    return names


def auto_names(device: str, preset: str) -> list[str]:
    """What `--variants auto` builds up front for `device` and the int8 `preset` (table order)."""
    want = set(targets(device))
    return [v.name for v in VARIANTS.values() if v.auto is not None and v.auto(preset) and want & set(v.providers)]


def fallback_names(device: str) -> list[str]:
    """What `--variants auto` adds when no plain int8 variant keeps the accuracy budget."""
    want = set(targets(device))
    return [v.name for v in VARIANTS.values() if v.fallback and want & set(v.providers)]


def build(name: str, ctx: BuildContext, make: Callable[[BuildContext, Path], dict] | None = None) -> dict:
    """Build variant `name` into `ctx.folder`; return its manifest record.

    `make(ctx, dst)`: builds the file instead of the variant's own `build` and returns fields
    that extend or replace the record's (a searched variant's description and findings).

    A variant whose build raises is recorded as `{"status": "failed", "reason": ...}` and the
    export goes on. Exceptions that are about the machine, not the variant (OSError such as a
    full disk, MemoryError), and any failure of fp32, which every other variant derives from,
    propagate.
    """
    from . import optimize

    v = VARIANTS[name]
    dst = ctx.folder / v.file
    base = {"precision": v.precision, "devices": list(v.providers), "description": v.description}
    try:
        extra = make(ctx, dst) if make is not None else v.build(ctx, dst)
    except (OSError, MemoryError):
        raise
    except Exception as e:
        if name == "fp32":
            raise
        text = str(e).strip()
        reason = text.splitlines()[0] if text else type(e).__name__
        log.warning("variant %s failed to build (%s); the export goes on without it", name, reason)
        dst.unlink(missing_ok=True)
        return {"status": "failed", "reason": reason, **base}
    return {"status": "ok", "file": v.file, **base, "fused_ops": optimize.op_counts(dst),
            "size_mb": round(dst.stat().st_size / 2**20, 2), **(extra or {})}
