"""Graph fusion with ONNX Runtime's transformer optimizer, and fp16 conversion for CUDA.

The optimizer rewrites the exported graph into ORT's fused contrib operators (Attention,
EmbedLayerNormalization, SkipLayerNormalization, BiasGelu). We run only its Python fusions
(`opt_level=0`): the result holds no hardware-specific kernels, so one fp32 file serves both
CPU and CUDA, and ONNX Runtime applies its own level-99 rewrites when a session loads it.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from ..errors import ExportError, ModelError
from ..families import Family, family_of
from .rewrite import masked_fill_to_additive

log = logging.getLogger(__name__)

FUSED_OPS = ("Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization",
             "LayerNormalization", "BiasGelu", "FastGelu", "Gelu", "QAttention", "MatMulInteger",
             "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "MatMul")
# Ops kept in fp32 in the fp16 variant: their reductions overflow or lose precision in fp16.
FP16_KEEP_FP32 = ["LayerNormalization", "SimplifiedLayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt"]


def op_counts(model_or_path) -> dict[str, int]:
    """Node counts by op type (what tests and the manifest check fusion by)."""
    import onnx

    m = onnx.load(str(model_or_path), load_external_data=False) if not hasattr(model_or_path, "graph") else model_or_path
    c = Counter(n.op_type for n in m.graph.node)
    return {k: c[k] for k in sorted(c)}


def fuse(src: Path, dst: Path, config: dict, use_gpu: bool = False):
    """Fuse `src` into `dst` for the CPU (or CUDA) execution provider; returns the OnnxModel.

    The ORT model type, heads and hidden size come from the model's family (`families.py`).
    """
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    family = family_of(config)
    model = onnx.load(str(src))
    masked_fill_to_additive(model)  # DistilBERT's masked_fill attention, see rewrite.py
    try:
        opt = optimize_model(
            model, model_type=family.ort_model_type, num_heads=_dim(family, config, "heads"),
            hidden_size=_dim(family, config, "hidden"), opt_level=0, use_gpu=use_gpu,
        )
    except Exception as e:
        raise ExportError(f"ONNX Runtime's transformer optimizer failed on {src.name}: {type(e).__name__}: {e}") from None
    counts = Counter(n.op_type for n in opt.model.graph.node)
    n_layers = _dim(family, config, "layers")
    if counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0) < n_layers:
        # Not fatal (the graph is still correct), but the user should know speed is left behind.
        log.warning("only %d of %d attention blocks fused (model_type %s, family %s); the unfused graph is slower.",
                    counts.get("Attention", 0), n_layers, config.get("model_type"), family.model_type)
    if family.fuses_embeddings and not counts.get("EmbedLayerNormalization"):
        log.info("embeddings not fused into EmbedLayerNormalization (model_type %s)", config.get("model_type"))
    opt.save_model_to_file(str(dst))
    return opt


def _dim(family: Family, config: dict, what: str) -> int:
    """A size from the config; 0 (let ORT detect it from the graph) when the config lacks it."""
    try:
        return family.get(config, what)
    except ModelError:
        return 0


def to_fp16(src: Path, dst: Path, config: dict) -> None:
    """CUDA variant: fuse for GPU, then convert weights/activations to fp16 (I/O stays fp32 ids/logits)."""
    opt = fuse(src, dst, config, use_gpu=True)
    opt.convert_float_to_float16(keep_io_types=True, op_block_list=FP16_KEEP_FP32)
    opt.save_model_to_file(str(dst))
