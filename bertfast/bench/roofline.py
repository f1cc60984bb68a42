"""Roofline: model FLOPs per text, and this machine's peak matrix-multiply rates.

FLOPs count multiply-adds as 2 operations and include only the matrix products (the
projections, the feed-forward layers, attention scores and attention-weighted values, the
pooler and classifier); embeddings, layer norms, softmax and GELU are a few percent at most
and are left out, as is usual for transformer rooflines. Token counts are the real ones
(after truncation, with [CLS]/[SEP]), so padding shows up as a lower fraction of peak.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ModelShape:
    """The dimensions that set an encoder's FLOPs (from its `config.json`, any family in `bertfast.families`)."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    num_labels: int = 2
    vocab: int = 0
    model_type: str = "bert"

    @classmethod
    def from_config(cls, cfg: dict | str | Path) -> ModelShape:
        """Read the shape from a Hugging Face config dict, `config.json` path, or model folder.

        Raises:
            ModelError: the config names none of its family's keys for a dimension.
        """
        if not isinstance(cfg, dict):
            p = Path(cfg)
            cfg = json.loads((p / "config.json" if p.is_dir() else p).read_text())
        from ..families import family_of

        dims = family_of(cfg).dims(cfg)  # each family names its widths its own way (DistilBERT: n_layers, dim)
        n_labels = len(cfg.get("id2label") or {}) or int(cfg.get("num_labels", 2))
        return cls(
            layers=dims["layers"],
            hidden=dims["hidden"],
            intermediate=dims["intermediate"],
            heads=dims["heads"],
            num_labels=n_labels,
            vocab=int(cfg.get("vocab_size", 0)),
            model_type=str(cfg.get("model_type", "bert")),
        )


def flops_per_text(shape: ModelShape, tokens: int) -> float:
    """FLOPs to classify one text of `tokens` tokens.

    Per layer: Q, K, V and output projections 4 x 2*s*h*h; feed-forward 2 x 2*s*h*i;
    attention scores Q.K^T 2*s*s*h and weights.V 2*s*s*h (summed over heads, h = heads*d).
    Then the pooler (one token) 2*h*h and the classifier 2*h*labels.
    MiniLM-L6 (h=384, i=1536, 6 layers) at 128 tokens: 2.87 GFLOP; BERT-base: 22.3 GFLOP.
    """
    s, h, i = float(tokens), float(shape.hidden), float(shape.intermediate)
    per_layer = 8 * s * h * h + 4 * s * h * i + 4 * s * s * h
    return shape.layers * per_layer + 2 * h * h + 2 * h * shape.num_labels


def total_flops(shape: ModelShape, token_counts) -> float:
    """Sum of `flops_per_text` over texts with the given token counts."""
    return float(sum(flops_per_text(shape, int(t)) for t in token_counts))


# ---------------------------------------------------------------------------------------
# Peak rates. Each kernel is timed like a backend: warm-up, then repeats until both a
# minimum count and a minimum duration; the best repeat is the least-disturbed estimate.

def _best_rate(fn, flops: float, seconds: float, min_runs: int = 3) -> dict:
    fn()  # warm-up: allocations, kernel selection
    times = []
    t_end = time.perf_counter() + seconds
    while len(times) < min_runs or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"gflops": flops / best / 1e9, "gflops_median": flops / float(np.median(times)) / 1e9, "runs": len(times)}


def _ort_session(model, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def ort_matmul_graph(m: int, k: int, n: int, int8: bool, seed: int = 0):
    """A one-node ONNX graph: A[m,k] x B[k,n] with B a constant (like model weights).

    fp32: MatMul. int8: MatMulInteger with uint8 activations and int8 weights, the u8 x s8
    kernel ONNX Runtime's dynamic quantization uses (VNNI on avx512_vnni CPUs).
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    if int8:
        b = numpy_helper.from_array(rng.integers(-127, 128, size=(k, n), dtype=np.int8), "B")
        zp = numpy_helper.from_array(np.array(128, dtype=np.uint8), "a_zp")
        node = helper.make_node("MatMulInteger", ["A", "B", "a_zp"], ["Y"])
        a = helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])
        y = helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])
        inits = [b, zp]
    else:
        b = numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
        y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
        inits = [b]
    graph = helper.make_graph([node], "peak", [a], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    return model


def measure_peaks(threads: int, seconds: float = 1.0, quick: bool = False, cuda: bool = False) -> dict:
    """Peak matmul rates on this machine: fp32 (ORT MatMul, torch), int8 (ORT MatMulInteger), fp16 (CUDA).

    Shapes: the BERT-base feed-forward product (4096 tokens x 768 x 3072) and a square
    2048^3; `quick` uses small shapes. Returns per-precision best rates and every kernel's
    reading; a kernel that cannot run is recorded with its error.
    """
    shapes = [(512, 384, 1536)] if quick else [(4096, 768, 3072), (2048, 2048, 2048)]
    kernels: list[dict] = []
    rng = np.random.default_rng(0)

    def record(kernel: str, precision: str, shape, fn_factory) -> None:
        m, k, n = shape
        entry = {"kernel": kernel, "precision": precision, "shape": [m, k, n]}
        try:
            entry.update(_best_rate(fn_factory(), 2.0 * m * k * n, seconds))
        except Exception as e:  # a missing library or provider must not sink the report
            entry["error"] = f"{type(e).__name__}: {e}"
        kernels.append(entry)

    for m, k, n in shapes:
        a32 = rng.standard_normal((m, k), dtype=np.float32)
        a8 = rng.integers(0, 256, size=(m, k), dtype=np.uint8)

        def ort_fp32(m=m, k=k, n=n, a32=a32):
            sess = _ort_session(ort_matmul_graph(m, k, n, int8=False), threads)
            return lambda: sess.run(None, {"A": a32})

        def ort_int8(m=m, k=k, n=n, a8=a8):
            sess = _ort_session(ort_matmul_graph(m, k, n, int8=True), threads)
            return lambda: sess.run(None, {"A": a8})

        def torch_fp32(m=m, k=k, n=n):
            import torch

            torch.set_num_threads(threads)
            x, w = torch.randn(m, k), torch.randn(k, n)
            return lambda: torch.matmul(x, w)

        record("ort MatMul", "fp32", (m, k, n), ort_fp32)
        record("ort MatMulInteger u8s8", "int8", (m, k, n), ort_int8)
        record("torch.matmul", "fp32", (m, k, n), torch_fp32)
        if cuda:

            def cuda_fp16(m=m, k=k, n=n):
                import torch

                x = torch.randn(m, k, device="cuda", dtype=torch.float16)
                w = torch.randn(k, n, device="cuda", dtype=torch.float16)

                def run():
                    for _ in range(10):
                        torch.matmul(x, w)
                    torch.cuda.synchronize()

                return run

            # 10 products per call (counted as a 10x taller A): one GPU matmul is shorter
            # than the launch + synchronize overhead.
            record("torch.matmul cuda x10", "fp16", (10 * m, k, n), cuda_fp16)
    peaks: dict[str, dict] = {}
    for e in kernels:
        if "gflops" in e and e["gflops"] > peaks.get(e["precision"], {}).get("gflops", 0):
            peaks[e["precision"]] = {"gflops": e["gflops"], "kernel": e["kernel"], "shape": e["shape"]}
    return {"peaks": peaks, "kernels": kernels, "threads": threads}
