"""bertfast itself: each export variant through the public `Classifier`, as users load it.

Inputs go to the Classifier as they are: texts, or `(text, text_pair)` tuples for a pair export.
Outputs are the Classifier's scores, with the export's activation already applied ("probs").
"""

from __future__ import annotations

import numpy as np

from .base import BackendContext, BackendSkipped


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
        # The batch size is a load-time setting of `Classifier`, so each batch size is a reload.
        from ...runtime.classifier import Classifier

        if self.clf is not None:
            self.clf.close()
        # At the export's max length (the user's), the variant runs as users get it: with the
        # window the export's search chose, if it chose one for this variant. At another length
        # the benchmark's length is forced.
        at_export_length = self.ctx.max_length == self.ctx.export_max_length
        self.clf = Classifier.load(
            self.ctx.export_dir, device=self.ctx.device, variant=self.variant, threads=self.ctx.threads,
            max_length=None if at_export_length else self.ctx.max_length, max_batch_size=batch_size,
        )
        self.batch_size = batch_size
        self.info["window"] = {"max_length": self.clf.options.max_length, "long_text": self.clf.options.long_text}

    def load(self) -> None:
        if self.ctx.export_dir is None:
            raise BackendSkipped("TARGET is a model folder, not an export")
        if self.variant not in self.ctx.variants:
            raise ValueError(f"variant {self.variant!r} is not in the export; available: {', '.join(self.ctx.variants)}")
        spec = self.ctx.variants[self.variant]
        if spec.get("status") == "failed":  # the export recorded the failure; there is no file to load
            raise BackendSkipped(f"variant {self.variant!r} failed at export: {spec.get('error') or spec.get('reason')}")
        self._load(1)

    def prepare(self, batch_size: int) -> None:
        if batch_size != self.batch_size:
            self._load(batch_size)

    def run(self, texts: list) -> np.ndarray:
        return np.asarray(self.clf.predict_proba(list(texts)), dtype=np.float32)

    def encode(self, texts: list):
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
