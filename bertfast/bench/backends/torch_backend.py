"""PyTorch peers: the notebook baseline (`torch-seed`), PyTorch at its best (`torch`), dynamic int8."""

from __future__ import annotations

import numpy as np

from .base import BackendContext, BackendSkipped, chunks, pad_rows


class TorchBackend:
    """PyTorch + transformers. `style="seed"` is the classic notebook, `"best"` the tuned one.

    seed: model as `from_pretrained` gives it, batches in the original order, each padded to
    its longest text by the tokenizer call, `torch.no_grad`.
    best: SDPA attention, texts tokenized once, sorted by length so each batch holds similar
    lengths (little padding), `torch.inference_mode`; `int8` adds `quantize_dynamic` on Linear.

    Inputs are texts, or `(text, text_pair)` tuples tokenized as `tok(texts, text_pairs, ...)`.
    Outputs are logits; the benchmark applies the task's activation (`bench.quality`).
    """

    outputs = "logits"

    def __init__(self, ctx: BackendContext, name: str, style: str = "best", int8: bool = False) -> None:
        self.ctx, self.name, self.style, self.int8 = ctx, name, style, int8
        self.precision = "int8" if int8 else "fp32"
        self.batch_size = 1
        self._pad_stats = (0, 0)
        self.info: dict = {}

    def load(self) -> None:
        if self.int8 and self.ctx.provider.gpu:
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
        self.model = model.to(self.ctx.torch_device)
        self.pad_id = self.tok.pad_token_id or 0
        self.info = {
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "batching": "original order, pad to longest" if self.style == "seed" else "length-sorted",
            "grad_mode": "no_grad" if self.style == "seed" else "inference_mode",
        }

    def prepare(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def encode(self, texts: list) -> list[tuple[np.ndarray, dict]]:
        """Tokenize and batch per this backend's policy; returns (row indices, tensors) pairs."""
        B, torch = self.batch_size, self.torch
        batches = []
        real = padded = 0
        if self.style == "seed":
            for idx in chunks(np.arange(len(texts)), B):
                enc = self.ctx.tokenize(self.tok, [texts[i] for i in idx], padding=True, return_tensors="pt")
                real += int(enc["attention_mask"].sum())
                padded += enc["input_ids"].numel()
                batches.append((idx, {k: v.to(self.ctx.torch_device) for k, v in enc.items()}))
        else:
            enc = self.ctx.tokenize(self.tok, texts)
            lengths = np.array([len(ids) for ids in enc["input_ids"]])
            order = np.argsort(-lengths, kind="stable")  # longest first: peak memory up front
            keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
            for idx in chunks(order, B):
                t = {}
                for k in keys:
                    t[k] = torch.from_numpy(pad_rows([enc[k][i] for i in idx], self.pad_id if k == "input_ids" else 0))
                real += int(lengths[idx].sum())
                padded += t["input_ids"].numel()
                batches.append((idx, {k: v.to(self.ctx.torch_device) for k, v in t.items()}))
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

    def run(self, texts: list) -> np.ndarray:
        return self.run_encoded(self.encode(texts))

    def padding(self) -> float | None:
        real, padded = self._pad_stats
        return 1 - real / padded if padded else None

    def close(self) -> None:
        self.model = None
        self.tok = None
