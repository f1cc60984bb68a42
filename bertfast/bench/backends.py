"""The backends a benchmark compares: small objects chosen by name, no class hierarchy.

Every backend has `name`, `precision` ("fp32" | "int8" | "fp16"), `outputs` ("logits" |
"probs") and:

- `load()`: build/load the model (not timed as inference; its time and RSS are reported);
- `prepare(batch_size)`: set the batch size for the next runs (bertfast reloads its
  `Classifier`, because its batch size is a load-time setting);
- `run(texts) -> np.ndarray [n, labels]`: end to end, tokenization included, rows in the
  order of `texts`;
- `encode(texts)` + `run_encoded(enc)` (optional): tokenization done up front, so that
  `run_encoded` times the model alone (plus batching/padding bookkeeping);
- `padding() -> float | None`: padded share of the positions the last `run` computed;
- `close()`: free the model.

A backend that does not apply here (optimum not installed, int8 on CUDA) raises
`BackendSkipped` from `load()`; any other exception marks it failed, and the others go on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import STANDARD_BACKENDS

log = logging.getLogger(__name__)


class BackendSkipped(Exception):
    """The backend does not apply on this machine/device; the message says why."""


@dataclass
class BackendContext:
    """What every backend needs to know, resolved once by the harness."""

    model_dir: Path | None
    export_dir: Path | None
    max_length: int
    threads: int
    device: str  # "cpu" | "cuda" (already resolved from "auto")
    cache_dir: Path
    optimum_per_channel: bool = False
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    variants: dict = field(default_factory=dict)  # manifest variants (bertfast backends)

    def need_model_dir(self, backend: str) -> Path:
        if self.model_dir is None or not (self.model_dir / "config.json").is_file():
            where = f" ({self.model_dir} has no config.json)" if self.model_dir is not None else ""
            raise FileNotFoundError(
                f"{backend} needs the PyTorch model folder the export came from{where}; pass it with --model-dir."
            )
        return self.model_dir


def _pad(rows: list[list[int]], value: int) -> np.ndarray:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for j, r in enumerate(rows):
        out[j, : len(r)] = r
    return out


def _chunks(idx: np.ndarray, size: int) -> list[np.ndarray]:
    return [idx[i : i + size] for i in range(0, len(idx), size)]


# ---------------------------------------------------------------------------------------
# PyTorch: the notebook baseline, PyTorch at its best, and dynamic int8.

class TorchBackend:
    """PyTorch + transformers. `style="seed"` is the classic notebook, `"best"` the tuned one.

    seed: model as `from_pretrained` gives it, batches in the original order, each padded to
    its longest text by the tokenizer call, `torch.no_grad`.
    best: SDPA attention, texts tokenized once, sorted by length so each batch holds similar
    lengths (little padding), `torch.inference_mode`; `int8` adds `quantize_dynamic` on Linear.
    """

    outputs = "logits"

    def __init__(self, ctx: BackendContext, name: str, style: str = "best", int8: bool = False) -> None:
        self.ctx, self.name, self.style, self.int8 = ctx, name, style, int8
        self.precision = "int8" if int8 else "fp32"
        self.batch_size = 1
        self._pad_stats = (0, 0)
        self.info: dict = {}

    def load(self) -> None:
        if self.int8 and self.ctx.device == "cuda":
            raise BackendSkipped("PyTorch dynamic int8 (quantize_dynamic) runs on CPU only")
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model_dir = self.ctx.need_model_dir(self.name)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
        kwargs = {} if self.style == "seed" else {"attn_implementation": "sdpa"}
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, **kwargs).eval()
        if self.int8:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model.to(self.ctx.device)
        self.pad_id = self.tok.pad_token_id or 0
        self.info = {
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "batching": "original order, pad to longest" if self.style == "seed" else "length-sorted",
            "grad_mode": "no_grad" if self.style == "seed" else "inference_mode",
        }

    def prepare(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> list[tuple[np.ndarray, dict]]:
        """Tokenize and batch per this backend's policy; returns (row indices, tensors) pairs."""
        L, B, torch = self.ctx.max_length, self.batch_size, self.torch
        batches = []
        real = padded = 0
        if self.style == "seed":
            for idx in _chunks(np.arange(len(texts)), B):
                enc = self.tok([texts[i] for i in idx], padding=True, truncation=True, max_length=L, return_tensors="pt")
                real += int(enc["attention_mask"].sum())
                padded += enc["input_ids"].numel()
                batches.append((idx, {k: v.to(self.ctx.device) for k, v in enc.items()}))
        else:
            enc = self.tok(list(texts), truncation=True, max_length=L)
            lengths = np.array([len(ids) for ids in enc["input_ids"]])
            order = np.argsort(-lengths, kind="stable")  # longest first: peak memory up front
            keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
            for idx in _chunks(order, B):
                t = {}
                for k in keys:
                    t[k] = torch.from_numpy(_pad([enc[k][i] for i in idx], self.pad_id if k == "input_ids" else 0))
                real += int(lengths[idx].sum())
                padded += t["input_ids"].numel()
                batches.append((idx, {k: v.to(self.ctx.device) for k, v in t.items()}))
        self._pad_stats = (real, padded)
        return batches

    def run_encoded(self, batches: list[tuple[np.ndarray, dict]]) -> np.ndarray:
        torch = self.torch
        out: np.ndarray | None = None
        ctx = torch.no_grad() if self.style == "seed" else torch.inference_mode()
        with ctx:
            for idx, t in batches:
                logits = self.model(**t).logits.float().cpu().numpy()
                if out is None:
                    out = np.empty((sum(len(i) for i, _ in batches), logits.shape[1]), dtype=np.float32)
                out[idx] = logits
        return out

    def run(self, texts: list[str]) -> np.ndarray:
        return self.run_encoded(self.encode(texts))

    def padding(self) -> float | None:
        real, padded = self._pad_stats
        return 1 - real / padded if padded else None

    def close(self) -> None:
        self.model = None
        self.tok = None


# ---------------------------------------------------------------------------------------
# Optimum: ORTModelForSequenceClassification + a transformers pipeline, exactly what an
# Optimum user writes. The ONNX files are built once per model into a cache folder.

def quantization_preset(flags: frozenset[str]) -> str:
    """The `AutoQuantizationConfig` preset an Optimum user would pick on this CPU."""
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx2" in flags:
        return "avx2"
    if "asimd" in flags or "neon" in flags:
        return "arm64"
    return "avx2"


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

    from ..utils import atomic_dir

    root = cache_dir / "optimum" / f"{model_dir.resolve().name}-{_cache_key(model_dir)}"
    fp32 = root / "fp32"
    if not (fp32 / "model.onnx").is_file():
        log.info("optimum: exporting %s to ONNX (cached in %s)", model_dir, fp32)
        with atomic_dir(fp32) as tmp:
            ORTModelForSequenceClassification.from_pretrained(model_dir, export=True).save_pretrained(tmp)
    if not int8:
        return fp32, "model.onnx"
    q = root / f"int8-{preset}-{'per-channel' if per_channel else 'per-tensor'}"
    if not (q / "model_quantized.onnx").is_file():
        log.info("optimum: quantizing (%s, dynamic) into %s", preset, q)
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
        self._last: tuple[list[str], int] | None = None
        self.info: dict = {}

    def load(self) -> None:
        if self.int8 and self.ctx.device == "cuda":
            raise BackendSkipped("ONNX Runtime dynamic int8 (MatMulInteger) is a CPU kernel")
        try:
            from optimum.onnxruntime import ORTModelForSequenceClassification
        except ImportError as e:
            raise BackendSkipped(
                f"optimum is not installed ({e}); pip install 'optimum-onnx[onnxruntime]' to compare with it"
            ) from None
        import onnxruntime as ort
        from transformers import AutoTokenizer, pipeline

        model_dir = self.ctx.need_model_dir(self.name)
        preset = quantization_preset(self.ctx.cpu_flags)
        folder, file_name = build_optimum_model(
            model_dir, self.ctx.cache_dir, self.int8, preset, self.ctx.optimum_per_channel
        )
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.ctx.threads
        so.inter_op_num_threads = 1
        provider = "CUDAExecutionProvider" if self.ctx.device == "cuda" else "CPUExecutionProvider"
        self.model = ORTModelForSequenceClassification.from_pretrained(
            folder, file_name=file_name, session_options=so, provider=provider
        )
        self.tok = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
        self.pipe = pipeline("text-classification", model=self.model, tokenizer=self.tok)
        self.label2id = {str(k): int(v) for k, v in self.model.config.label2id.items()}
        self.n_labels = len(self.model.config.id2label)
        self.input_names = set(getattr(self.model, "input_names", None) or ["input_ids", "attention_mask", "token_type_ids"])
        self.info = {
            "onnx": str(folder / file_name),
            "quantization": f"AutoQuantizationConfig.{preset}(is_static=False, per_channel={self.ctx.optimum_per_channel})"
            if self.int8 else None,
            "batching": "pipeline: original order, pad to longest",
        }

    def prepare(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def run(self, texts: list[str]) -> np.ndarray:
        L = self.ctx.max_length
        results = self.pipe(
            list(texts), batch_size=self.batch_size, truncation=True, max_length=L,
            top_k=None, function_to_apply="none",
        )
        out = np.empty((len(texts), self.n_labels), dtype=np.float32)
        for i, scores in enumerate(results):
            for d in scores:
                out[i, self.label2id[d["label"]]] = d["score"]
        self._last = (texts, self.batch_size)  # padding is computed later, outside the timing
        return out

    def encode(self, texts: list[str]) -> list[tuple[np.ndarray, dict]]:
        """The batches the pipeline would build: original order, padded to the longest."""
        batches = []
        for idx in _chunks(np.arange(len(texts)), self.batch_size):
            enc = self.tok([texts[i] for i in idx], padding=True, truncation=True,
                           max_length=self.ctx.max_length, return_tensors="pt")
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
        ids = self.tok(list(texts), truncation=True, max_length=self.ctx.max_length)["input_ids"]
        lengths = np.array([len(x) for x in ids])
        real = padded = 0
        for idx in _chunks(np.arange(len(lengths)), bs):
            real += int(lengths[idx].sum())
            padded += int(lengths[idx].max()) * len(idx)
        return 1 - real / padded if padded else None

    def close(self) -> None:
        self.pipe = self.model = None


# ---------------------------------------------------------------------------------------
# bertfast: each export variant through the public `Classifier`.

class BertfastBackend:
    """`bertfast.Classifier` on one export variant; `max_batch_size` = the batch size."""

    outputs = "probs"

    def __init__(self, ctx: BackendContext, name: str) -> None:
        self.ctx, self.name = ctx, name
        self.variant = name.split(":", 1)[1]
        spec = ctx.variants.get(self.variant, {})
        self.precision = spec.get("precision", "fp32")
        self.info = {k: spec.get(k) for k in ("file", "description", "eligible", "reason") if k in spec}
        self.clf = None
        self.batch_size: int | None = None

    def _load(self, batch_size: int) -> None:
        from ..runtime.classifier import Classifier

        if self.clf is not None:
            self.clf.close()
        self.clf = Classifier.load(
            self.ctx.export_dir, device=self.ctx.device, variant=self.variant, threads=self.ctx.threads,
            max_length=self.ctx.max_length, max_batch_size=batch_size,
        )
        self.batch_size = batch_size

    def load(self) -> None:
        if self.ctx.export_dir is None:
            raise BackendSkipped("TARGET is a model folder, not an export")
        if self.variant not in self.ctx.variants:
            raise ValueError(f"variant {self.variant!r} is not in the export; available: {', '.join(self.ctx.variants)}")
        self._load(1)

    def prepare(self, batch_size: int) -> None:
        if batch_size != self.batch_size:
            self._load(batch_size)

    def run(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.clf.predict_proba(list(texts)), dtype=np.float32)

    def encode(self, texts: list[str]):
        return self.clf.encode(list(texts))

    def run_encoded(self, enc) -> np.ndarray:
        return np.asarray(self.clf.logits_from_encoded(enc), dtype=np.float32)

    def padding(self) -> float | None:
        stats = getattr(self.clf, "last_stats", None) or {}
        return stats.get("padding_ratio")

    def close(self) -> None:
        if self.clf is not None:
            self.clf.close()
            self.clf = None


# Name -> factory(ctx, name). Tests may add entries (e.g. a backend whose load raises).
FACTORIES: dict[str, Callable[[BackendContext, str], object]] = {
    "torch-seed": lambda ctx, name: TorchBackend(ctx, name, style="seed"),
    "torch": lambda ctx, name: TorchBackend(ctx, name, style="best"),
    "torch-int8": lambda ctx, name: TorchBackend(ctx, name, style="best", int8=True),
    "optimum": lambda ctx, name: OptimumBackend(ctx, name),
    "optimum-int8": lambda ctx, name: OptimumBackend(ctx, name, int8=True),
}


def expand_names(requested: tuple[str, ...], variants: dict, device: str, default: dict | None = None) -> list[str]:
    """Turn `--backends` into concrete names: "all" and "bertfast" expand to the export's variants,
    "bertfast:default" to the variant the export picked for the device (what users get)."""
    bertfast_all = [f"bertfast:{v}" for v, spec in variants.items() if device in spec.get("devices", [device])]
    names: list[str] = []
    for n in requested:
        if n == "all":
            names += [*STANDARD_BACKENDS, *bertfast_all]
        elif n == "bertfast":
            names += bertfast_all
        elif n == "bertfast:default":
            chosen = (default or {}).get(device)
            if chosen is None:
                from ..errors import BertfastError

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
