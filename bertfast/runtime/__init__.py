"""Inference: `Classifier` (Python API), `bertfast predict` (files) and `bertfast doctor`.

Nothing here imports torch or transformers. `Classifier` is imported lazily so that
`import bertfast.runtime` stays cheap.
"""

from __future__ import annotations

__all__ = ["Classifier"]


def __getattr__(name: str):
    if name == "Classifier":
        from .classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'bertfast.runtime' has no attribute {name!r}")
