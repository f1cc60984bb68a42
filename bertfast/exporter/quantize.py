"""int8 quantization of the fused graph: dynamic (per-tensor / per-channel), static QDQ, mixed.

Presets follow Optimum's `AutoQuantizationConfig` names, expressed as ONNX Runtime settings:
- `avx512_vnni`: u8 activations x s8 weights, full 8-bit range (VNNI's dot product does not
  saturate);
- `avx2`: same types with `reduce_range` (7-bit weights): AVX2's u8xs8 multiply-add (vpmaddubsw)
  saturates int16 sums with full-range weights;
- `arm64`: u8 x s8, full range (ARM's sdot/udot do not saturate).

We quantize the *fused* graph so Attention becomes QAttention. ORT's quantizer needs tensor
types for every intermediate; the optimizer's output lacks some, so we run ORT's symbolic shape
inference first (Optimum's ORTQuantizer fails on fused graphs for that reason, see
shared/MEASURED.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from pathlib import Path

from ..errors import BertfastError, ExportError
from ..families import Family
from ..hardware import INT8_PRESETS, int8_preset

log = logging.getLogger(__name__)

# The presets live in bertfast.hardware (one table and one detection rule for every stage);
# `PRESETS` is the name this module always exported.
PRESETS = INT8_PRESETS
QUANT_OPS = ["MatMul", "Attention"]


def check_preset(preset: str) -> str:
    """The `--quantize` preset to use: `auto` resolves from this CPU's flags, names are checked."""
    if preset == "auto":
        return int8_preset()
    if preset not in PRESETS:
        raise BertfastError(f"--quantize {preset!r} is not a preset; choose one of auto, {', '.join(PRESETS)}.")
    return preset


class _QuietAdvice(logging.Filter):
    """Drops what ONNX Runtime's quantizer logs on the *root* logger (`logging.warning(...)`):
    its "Please consider to run pre-processing before quantization" advice, repeated on every
    call, is noise to bertfast's users (the shape inference it asks for is done here). Shown with
    `-v` (root at DEBUG); errors always pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or logging.getLogger().getEffectiveLevel() <= logging.DEBUG


@contextlib.contextmanager
def _quiet_quantizer():
    # A filter on the root *logger* sees only records logged on it directly, which is what the
    # quantizer does; records from named loggers (bertfast's own) propagate past it untouched.
    # The calibrators also print() their progress ("Collecting tensor data and making histogram
    # ...", "Number of tensors : 36") to stdout, which would interleave with the export's own
    # lines and, under `-o -`-style pipes, with data: kept unless -v.
    root, f = logging.getLogger(), _QuietAdvice()
    root.addFilter(f)
    quiet = root.getEffectiveLevel() > logging.DEBUG
    try:
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            yield
    finally:
        root.removeFilter(f)


def with_shapes(src: Path, dst: Path) -> Path:
    """Symbolic shape inference over the fused graph (gives the quantizer its tensor types)."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(src))
    try:
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception as e:  # fall back to the plain graph: quantization may still work
        log.warning("symbolic shape inference failed (%s); quantizing without it", e)
        inferred = model
    onnx.save(inferred, str(dst))
    return dst


_LAYER = re.compile(r"layer[._](\d+)[./_]")


def layer_nodes(path: Path) -> dict[int, list[str]]:
    """Quantizable node names (QUANT_OPS) per encoder layer index of the graph.

    A node belongs to the layer its *output* names (a fused Attention's input comes from the
    previous layer); nodes outside any layer are not grouped.
    """
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    out: dict[int, list[str]] = {}
    for n in m.graph.node:
        if n.op_type in QUANT_OPS:
            hit = _LAYER.search(" ".join([*n.output, n.name]))
            if hit:
                out.setdefault(int(hit.group(1)), []).append(n.name)
    return dict(sorted(out.items()))


def sensitive_nodes(path: Path, family: Family, config) -> list[str]:
    """Nodes kept in fp32 by `--variants int8-mixed` (no eval data to measure with): the first
    and last encoder layer and the head.

    Quantization error is largest where activations have outliers (first layer, right after
    the embeddings) and matters most right before the logits (last layer, pooler, classifier).
    The layer count and the head's parameter prefixes come from the model's family.
    """
    import onnx

    layers = layer_nodes(path)
    last = max(family.get(config, "layers") - 1, 0)
    keep = [n for i in {0, last} for n in layers.get(i, [])]
    # Exported node names follow the module path: `roberta.pooler` -> "/roberta/pooler/dense/MatMul".
    heads = tuple(f"/{p.replace('.', '/')}/" for p in family.head_params) + ("/pooler/",)
    for n in onnx.load(str(path), load_external_data=False).graph.node:
        where = " ".join([*n.output, n.name])
        if n.op_type in QUANT_OPS and n.name not in keep and any(h in f"/{where}" for h in heads):
            keep.append(n.name)
    return keep


def dynamic(src: Path, dst: Path, preset: str, per_channel: bool, exclude: list[str] | None = None,
            reduce_range: bool | None = None) -> None:
    """Dynamic int8 (weights quantized ahead, activations at run time) of `src` into `dst`.

    `reduce_range` None follows the preset; `exclude` names nodes kept in fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_quantizer():
        try:
            quantize_dynamic(
                str(src), str(dst), op_types_to_quantize=QUANT_OPS, per_channel=per_channel,
                reduce_range=PRESETS[preset]["reduce_range"] if reduce_range is None else reduce_range,
                weight_type=QuantType.QInt8, nodes_to_exclude=exclude or [],
                # Symmetric weights let ORT use its faster u8s8 kernels without zero-point fixups.
                extra_options={"WeightSymmetric": True, "MatMulConstBOnly": True},
            )
        except Exception as e:
            raise ExportError(f"dynamic int8 quantization failed: {type(e).__name__}: {e}") from None


class _Calibration:
    """Feeds tokenized calibration texts to ORT's calibrator, one small batch at a time."""

    def __init__(self, batches: list[dict]):
        self._it = iter(batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - used by some calibrators
        pass


def static(src: Path, dst: Path, preset: str, per_channel: bool, calib_batches: list[dict]) -> None:
    """Static int8 in QDQ format, activation ranges calibrated on real (training) texts."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with _quiet_quantizer():
        try:
            quantize_static(
                str(src), str(dst), _Calibration(calib_batches), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"], per_channel=per_channel,
                reduce_range=PRESETS[preset]["reduce_range"],
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                # Percentile clipping ignores the rare outlier activations that make MinMax ranges
                # so wide that ordinary values lose all precision.
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                               "CalibPercentile": 99.999, "MatMulConstBOnly": True},
            )
        except Exception as e:
            raise ExportError(f"static int8 quantization failed: {type(e).__name__}: {e}") from None
