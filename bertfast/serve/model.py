"""What serving needs from a classifier, as two small protocols; `runtime.Classifier` fills both.

`ModelCalls` is what the batcher calls from its threads; `ServedModel` adds what the routes
and `/info` read. A stand-in (tests, a wrapper that gates or records calls) implements them
explicitly instead of relying on defaults, so a missing member is an error at `build_app`,
not a wrong `/info` at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import BertfastError

if TYPE_CHECKING:
    import numpy as np

    from ..manifest import Manifest
    from ..runtime.options import RuntimeOptions


class ModelCalls(Protocol):
    """A model call in two steps: tokenize (`encode`), then run (`logits_from_encoded`).

    `encode(texts)` takes strings, or `(text, text_pair)` tuples for a pair export; its result
    has `padded_tokens` when the batcher records metrics. `logits_from_encoded` returns
    [len(texts), n_labels] in the order of `texts`. Both are called from batcher threads.
    """

    def encode(self, texts: list) -> Any: ...

    def logits_from_encoded(self, enc: Any) -> np.ndarray: ...


class ServedModel(ModelCalls, Protocol):
    """A classifier `build_app` can serve.

    Attributes:
        labels: output names, in logit order.
        task: the export's `tasks` row (its `name` is what the routes branch on).
        pair: inputs are `(text, text_pair)` pairs (a cross-encoder).
        activation: logits -> scores (a `tasks.ACTIVATIONS` name).
        thresholds: per-label thresholds of a multi-label export (None: 0.5 each).
        options: the settings in use, resolved (device, variant, threads, streams,
            max_length, long_text, batch_tokens, max_batch_size), as `Classifier.load` fills them.
        manifest: the export's manifest (`/info`: folder name, source sha).
        providers: ONNX Runtime's execution providers in use, first = preferred.
        positive: the relevant class of a two-class reranker (None: a score model, or none).
        rerank_refusal: why the export cannot rerank, in one line (None: it can).
    """

    labels: Sequence[str]
    task: Any
    pair: bool
    activation: str
    thresholds: Sequence[float] | None
    options: RuntimeOptions
    manifest: Manifest
    providers: Sequence[str]
    positive: int | None
    rerank_refusal: str | None

    def close(self) -> None: ...


SERVED_MEMBERS = ("labels", "task", "pair", "activation", "thresholds", "options", "manifest", "providers",
                  "positive", "rerank_refusal",
                  "encode", "logits_from_encoded", "close")


def check_served(clf: object) -> ServedModel:
    """`clf` itself, once it has every `ServedModel` member; else an error naming the missing ones."""
    missing = [name for name in SERVED_MEMBERS if not hasattr(clf, name)]
    if missing:
        raise BertfastError(f"classifier ({type(clf).__name__}) lacks {', '.join(missing)}; build_app serves a "
                            "bertfast.serve.model.ServedModel such as runtime.Classifier.")
    return clf  # type: ignore[return-value]
