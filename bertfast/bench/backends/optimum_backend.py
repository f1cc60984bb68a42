"""Optimum peers: ORTModelForSequenceClassification in a transformers pipeline, exactly what an
Optimum user writes. The ONNX files are built once per model into a cache folder.

Text pairs go to the pipeline as `{"text": a, "text_pair": b}` (its documented pair input, which
it tokenizes as `tokenizer(text=a, text_pair=b, truncation=True, max_length=...)`); the pipeline
returns raw scores (`function_to_apply="none"`) and the benchmark applies the task's activation.

The int8 peer is quantized with the preset `bertfast.hardware.int8_preset` picks for this CPU,
the same rule bertfast's own export uses, so both int8 models target the same kernels.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from ...hardware import int8_preset
from ..paths import display_path
from .base import BackendContext, BackendSkipped, chunks

log = logging.getLogger(__name__)


def _cache_key(model_dir: Path) -> str:
    """Changes when the model folder's weights or config change (path, size, mtime)."""
    h = hashlib.sha256(str(model_dir.resolve()).encode())
    for f in sorted(model_dir.iterdir()):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".bin"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def build_optimum_model(model_dir: Path, cache_dir: Path, int8: bool, preset: str, per_channel: bool) -> tuple[Path, str]:
    """Export (and quantize) `model_dir` with Optimum into the cache; returns (folder, onnx file name)."""
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    from ...utils import atomic_dir

    root = cache_dir / "optimum" / f"{model_dir.resolve().name}-{_cache_key(model_dir)}"
    fp32 = root / "fp32"
    if not (fp32 / "model.onnx").is_file():
        log.info("optimum: exporting %s to ONNX (cached in %s)", display_path(model_dir), display_path(fp32))
        with atomic_dir(fp32) as tmp:
            ORTModelForSequenceClassification.from_pretrained(model_dir, export=True).save_pretrained(tmp)
    if not int8:
        return fp32, "model.onnx"
    q = root / f"int8-{preset}-{'per-channel' if per_channel else 'per-tensor'}"
    if not (q / "model_quantized.onnx").is_file():
        log.info("optimum: quantizing (%s, dynamic) into %s", preset, display_path(q))
        qconfig = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=per_channel)
        with atomic_dir(q) as tmp:
            ORTQuantizer.from_pretrained(fp32).quantize(save_dir=tmp, quantization_config=qconfig)
            if not (tmp / "config.json").is_file():
                (tmp / "config.json").write_bytes((fp32 / "config.json").read_bytes())
    return q, "model_quantized.onnx"


class OptimumBackend:
    """Optimum's ORTModelForSequenceClassification in a `text-classification` pipeline."""

    outputs = "logits"  # the pipeline is asked for raw scores (function_to_apply="none")

    def __init__(self, ctx: BackendContext, name: str, int8: bool = False) -> None:
        self.ctx, self.name, self.int8 = ctx, name, int8
        self.precision = "int8" if int8 else "fp32"
        self.batch_size = 1
        self._last: tuple[list, int] | None = None
        self.info: dict = {}

    def load(self) -> None:
        if self.int8 and self.ctx.provider.gpu:
            raise BackendSkipped("ONNX Runtime dynamic int8 (MatMulInteger) is a CPU kernel")
        try:
            from optimum.onnxruntime import ORTModelForSequenceClassification
        except ImportError as e:
            raise BackendSkipped(
                f"optimum is not installed ({e}); pip install 'bertfast[optimum]' to compare with it"
            ) from None
        import onnxruntime as ort
        from transformers import AutoTokenizer, pipeline

        model_dir = self.ctx.need_model_dir(self.name)
        preset = int8_preset(self.ctx.cpu_flags)
        folder, file_name = build_optimum_model(
            model_dir, self.ctx.cache_dir, self.int8, preset, self.ctx.optimum_per_channel
        )
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.ctx.threads
        so.inter_op_num_threads = 1
        self.model = ORTModelForSequenceClassification.from_pretrained(
            folder, file_name=file_name, session_options=so, provider=self.ctx.provider.ort_name
        )
        self.tok = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
        self.pipe = pipeline("text-classification", model=self.model, tokenizer=self.tok)
        self.label2id = {str(k): int(v) for k, v in self.model.config.label2id.items()}
        self.n_labels = len(self.model.config.id2label)
        self.input_names = set(getattr(self.model, "input_names", None) or ["input_ids", "attention_mask", "token_type_ids"])
        self.info = {
            "onnx": display_path(folder / file_name, root=self.ctx.cache_dir),
            "quantization": f"AutoQuantizationConfig.{preset}(is_static=False, per_channel={self.ctx.optimum_per_channel})"
            if self.int8 else None,
            "batching": "pipeline: original order, pad to longest",
        }

    def prepare(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def run(self, texts: list) -> np.ndarray:
        L = self.ctx.max_length
        items = [{"text": a, "text_pair": b} for a, b in texts] if self.ctx.pair else list(texts)
        results = self.pipe(
            items, batch_size=self.batch_size, truncation=True, max_length=L,
            top_k=None, function_to_apply="none",
        )
        out = np.empty((len(texts), self.n_labels), dtype=np.float32)
        for i, scores in enumerate(results):
            for d in scores:
                out[i, self.label2id[d["label"]]] = d["score"]
        self._last = (texts, self.batch_size)  # padding is computed later, outside the timing
        return out

    def encode(self, texts: list) -> list[tuple[np.ndarray, dict]]:
        """The batches the pipeline would build: original order, padded to the longest."""
        batches = []
        for idx in chunks(np.arange(len(texts)), self.batch_size):
            enc = self.ctx.tokenize(self.tok, [texts[i] for i in idx], padding=True, return_tensors="pt")
            batches.append((idx, {k: v for k, v in enc.items() if k in self.input_names}))
        return batches

    def run_encoded(self, batches: list[tuple[np.ndarray, dict]]) -> np.ndarray:
        out = np.empty((sum(len(i) for i, _ in batches), self.n_labels), dtype=np.float32)
        for idx, t in batches:
            out[idx] = self.model(**t).logits.float().cpu().numpy()
        return out

    def padding(self) -> float | None:
        """The pipeline pads each batch of `batch_size` consecutive texts to its longest."""
        if self._last is None:
            return None
        texts, bs = self._last
        ids = self.ctx.tokenize(self.tok, texts)["input_ids"]
        lengths = np.array([len(x) for x in ids])
        real = padded = 0
        for idx in chunks(np.arange(len(lengths)), bs):
            real += int(lengths[idx].sum())
            padded += int(lengths[idx].max()) * len(idx)
        return 1 - real / padded if padded else None

    def close(self) -> None:
        self.pipe = self.model = None
