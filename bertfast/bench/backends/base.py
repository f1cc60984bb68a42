"""What every backend shares: the context the harness resolves once, the skip signal, batching helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...runtime.providers import PROVIDERS, Provider
from ..paths import display_path


class BackendSkipped(Exception):
    """The backend does not apply on this machine/device; the message says why."""


@dataclass
class BackendContext:
    """What every backend needs to know, resolved once by the harness."""

    model_dir: Path | None
    export_dir: Path | None
    max_length: int
    threads: int
    device: str  # a provider name ("cpu", "cuda", "tensorrt"), already resolved from "auto"
    cache_dir: Path
    optimum_per_channel: bool = False
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    variants: dict = field(default_factory=dict)  # manifest variants (bertfast backends)
    pair: bool = False  # inputs are (text, text_pair) tuples
    # The export's max length: benchmarked at it, bertfast runs the window its export chose.
    export_max_length: int | None = None

    def tokenize(self, tok, inputs, **kwargs):
        """`tok(texts, ...)`, or `tok(first texts, second texts, ...)` for pairs: the call a
        transformers user writes, truncating to `max_length` (longest first for pairs)."""
        a, b = split_inputs(inputs)
        return tok(a, b, truncation=True, max_length=self.max_length, **kwargs)

    @property
    def provider(self) -> Provider:
        """The execution-provider row of `device` (its ONNX Runtime name, whether it is a GPU)."""
        return PROVIDERS[self.device]

    @property
    def torch_device(self) -> str:
        """The device PyTorch runs on: torch knows one "cuda" for every GPU provider."""
        return "cuda" if self.provider.gpu else "cpu"

    def need_model_dir(self, backend: str) -> Path:
        """The PyTorch model folder, or a FileNotFoundError that says to pass --model-dir."""
        if self.model_dir is None or not (self.model_dir / "config.json").is_file():
            where = f" ({display_path(self.model_dir)} has no config.json)" if self.model_dir is not None else ""
            raise FileNotFoundError(
                f"{backend} needs the PyTorch model folder the export came from{where}; pass it with --model-dir."
            )
        return self.model_dir


def split_inputs(inputs) -> tuple[list[str], list[str] | None]:
    """(first texts, second texts or None) of a list of texts or of `(text, text_pair)` tuples."""
    inputs = list(inputs)
    if inputs and isinstance(inputs[0], (tuple, list)):
        return [a for a, _ in inputs], [b for _, b in inputs]
    return inputs, None


def pad_rows(rows: list[list[int]], value: int) -> np.ndarray:
    """Token-id rows right-padded with `value` to the longest, as an int64 matrix."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for j, r in enumerate(rows):
        out[j, : len(r)] = r
    return out


def chunks(idx: np.ndarray, size: int) -> list[np.ndarray]:
    """`idx` cut into consecutive batches of `size` (the last one may be shorter)."""
    return [idx[i : i + size] for i in range(0, len(idx), size)]
