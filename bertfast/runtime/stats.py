"""What one Classifier call did: texts, windows, batches, real and padded tokens (`last_stats`)."""

from __future__ import annotations

from .batching import Encoded


class Stats:
    """Counts accumulated over the encoded chunks of one call."""

    def __init__(self):
        self.n_texts = self.n_windows = self.real = self.padded = self.batches = 0
        self.tokenize_s = 0.0

    def add(self, enc: Encoded) -> None:
        self.n_texts += enc.n_texts
        self.n_windows += enc.n_windows
        self.real += enc.real_tokens
        self.padded += enc.padded_tokens
        self.batches += len(enc.batches)

    def as_dict(self, seconds: float) -> dict:
        return {
            "n_texts": self.n_texts,
            "n_windows": self.n_windows,
            "n_batches": self.batches,
            "real_tokens": self.real,
            "padded_tokens": self.padded,
            "padding_ratio": 0.0 if not self.padded else 1.0 - self.real / self.padded,
            "seconds": seconds,
            "tokenize_seconds": self.tokenize_s,
        }
