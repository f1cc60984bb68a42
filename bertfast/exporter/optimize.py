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

from ..errors import ExportError

log = logging.getLogger(__name__)

FUSED_OPS = ("Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization",
             "LayerNormalization", "BiasGelu", "FastGelu", "Gelu", "QAttention", "MatMulInteger",
             "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "MatMul")
# Ops kept in fp32 in the fp16 variant: their reductions overflow or lose precision in fp16.
FP16_KEEP_FP32 = ["LayerNormalization", "SimplifiedLayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt"]


def ort_model_type(hf_model_type: str) -> str:
    """ORT's optimizer knows encoder fusions under 'bert' for the BERT family."""
    return {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert",
            "electra": "bert", "distilbert": "bert", "mpnet": "bert", "deberta-v2": "bert"}.get(hf_model_type, "bert")


def heads_and_hidden(config: dict) -> tuple[int, int]:
    heads = config.get("num_attention_heads") or config.get("n_heads") or 0
    hidden = config.get("hidden_size") or config.get("dim") or 0
    return int(heads), int(hidden)


def op_counts(model_or_path) -> dict[str, int]:
    """Node counts by op type (what tests and the manifest check fusion by)."""
    import onnx

    m = onnx.load(str(model_or_path), load_external_data=False) if not hasattr(model_or_path, "graph") else model_or_path
    c = Counter(n.op_type for n in m.graph.node)
    return {k: c[k] for k in sorted(c)}


def fuse(src: Path, dst: Path, config: dict, use_gpu: bool = False):
    """Fuse `src` into `dst` for the CPU (or CUDA) execution provider; returns the OnnxModel."""
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = heads_and_hidden(config)
    try:
        opt = optimize_model(
            str(src), model_type=ort_model_type(config.get("model_type", "bert")), num_heads=heads,
            hidden_size=hidden, opt_level=0, use_gpu=use_gpu,
        )
    except Exception as e:
        raise ExportError(f"ONNX Runtime's transformer optimizer failed on {src.name}: {type(e).__name__}: {e}") from None
    counts = Counter(n.op_type for n in opt.model.graph.node)
    n_layers = config.get("num_hidden_layers") or config.get("n_layers") or 0
    if counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0) < n_layers:
        # Not fatal (the graph is still correct), but the user should know speed is left behind.
        log.warning("only %d of %d attention blocks fused (model_type %s); the unfused graph is slower.",
                    counts.get("Attention", 0), n_layers, config.get("model_type"))
    opt.save_model_to_file(str(dst))
    return opt


def to_fp16(src: Path, dst: Path, config: dict) -> None:
    """CUDA variant: fuse for GPU, then convert weights/activations to fp16 (I/O stays fp32 ids/logits)."""
    opt = fuse(src, dst, config, use_gpu=True)
    opt.convert_float_to_float16(keep_io_types=True, op_block_list=FP16_KEEP_FP32)
    opt.save_model_to_file(str(dst))
