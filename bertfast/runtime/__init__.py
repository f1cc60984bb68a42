"""Inference: `Classifier` (Python API), `RuntimeOptions` (its settings), `bertfast predict`
(files) and `bertfast doctor`.

Nothing here imports torch or transformers. Both names are imported lazily so that
`import bertfast.runtime` stays cheap.
"""

from __future__ import annotations

__all__ = ["Classifier", "RuntimeOptions"]


def __getattr__(name: str):
    if name == "Classifier":
        from .classifier import Classifier

        return Classifier
    if name == "RuntimeOptions":
        from .options import RuntimeOptions

        return RuntimeOptions
    raise AttributeError(f"module 'bertfast.runtime' has no attribute {name!r}")
