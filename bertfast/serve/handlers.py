"""The POST routes' answers: read the body, check it (`schemas.py`), queue its inputs, answer.

One handler per route, reached only through `asgi.HotRoutes` (inside the user's middleware).
Scores follow the export's task exactly as `Classifier.predict` makes them; errors are TEI's
error body `{"error", "error_type"}` with TEI's status codes, each counted once in the metrics.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from typing import TYPE_CHECKING

import numpy as np

from .. import tasks as _tasks
from .asgi import PostRoute, Reader, dumps
from .batcher import DynamicBatcher, InputRejected, QueueFull, ShuttingDown
from .metrics import ServeMetrics
from .model import ServedModel
from .schemas import ApiError, Limits, parse_classify, parse_json, parse_predict, parse_rerank

if TYPE_CHECKING:
    from .config import ServeConfig

log = logging.getLogger(__name__)

ROUTES = ("/predict", "/invocations", "/", "/classify", "/rerank")  # the keys of `PostRoutes.table()`
_JSON_IN_THREAD = 1 << 20  # bodies above 1 MiB are parsed off the event loop
# parameters.function_to_apply's names for the task activations (`tasks.ACTIVATIONS`).
_FUNCTION_OF = {"softmax": "softmax", "sigmoid": "sigmoid", "identity": "none"}
_ACTIVATION_OF = {v: k for k, v in _FUNCTION_OF.items()}


class PostRoutes:
    """The answers of `/predict`, `/`, `/invocations`, `/classify` and `/rerank` over one batcher.

    Args:
        cfg: server settings (limits, timeout, queue size).
        clf: the served classifier.
        batcher: the dynamic batcher feeding `clf`.
        metrics: where requests and errors are counted.
        spec: what the export is (`app._export_kind`: task, pair, activation, thresholds, reranker).
        model_id: the name `/classify` and the 424 of `/rerank` report.
    """

    def __init__(self, cfg: ServeConfig, clf: ServedModel, batcher: DynamicBatcher, metrics: ServeMetrics,
                 spec: dict, model_id: str):
        self.cfg, self.clf, self.batcher, self.metrics, self.spec = cfg, clf, batcher, metrics, spec
        self.model_id = model_id
        self.labels = list(clf.labels)
        self.quoted = [dumps(lab) for lab in self.labels]  # each label as a JSON string, for _ranked_json
        self.limits = Limits(cfg.max_inputs, cfg.max_chars)
        self.pair = spec["pair"]
        self.default_function = _FUNCTION_OF.get(spec["activation"], "softmax")

    def table(self) -> dict[str, PostRoute]:
        """path -> route, for `asgi.ServeAPI`."""
        def route(path, answer, summary, in_schema=True):
            return PostRoute(functools.partial(self.respond, path, answer), summary, in_schema)

        flat, nested = functools.partial(self.predict, nested=False), functools.partial(self.predict, nested=True)
        return {
            "/predict": route("/predict", flat, "TEI: classify a text (or pair [a, b]) or a batch [[text], ...] / [[a, b], ...]"),
            "/invocations": route("/invocations", flat, "SageMaker: same as /predict", in_schema=False),
            "/": route("/", nested, "HF Inference API (InferenceClient.text_classification): always [[...]]"),
            "/classify": route("/classify", self.classify,
                               "bertfast: Classifier.predict per input (label/score, labels, or score by task)"),
            "/rerank": route("/rerank", self.rerank,
                             "TEI: texts ordered by relevance to a query (pair exports: cross-encoders)"),
        }

    async def respond(self, route: str, answer, read: Reader) -> tuple[int, bytes, dict]:
        """(status, JSON bytes, headers) of one POST: read the body, parse, answer; errors as TEI's."""
        t0 = time.perf_counter()
        try:
            body = await read()
            obj = await asyncio.to_thread(parse_json, body) if len(body) > _JSON_IN_THREAD else parse_json(body)
            answered = await answer(obj)  # JSON bytes already (predict), or an object
            out = (200, answered if isinstance(answered, bytes) else dumps(answered), {})
        except ApiError as e:
            self.metrics.error(e.error_type)
            out = (e.status, dumps(e.body()), e.headers)
        except Exception as e:  # a bug must answer JSON and leave the server up
            log.exception("%s failed", route)
            self.metrics.error("backend")
            out = (500, dumps({"error": f"internal error: {type(e).__name__}: {e}", "error_type": "backend"}), {})
        self.metrics.request_done(route, out[0], time.perf_counter() - t0)
        return out

    async def logits_for(self, texts: list, activation: str | None = None) -> np.ndarray:
        """Logits [len(texts), n_labels] of texts (or pairs), via the dynamic batcher; their
        scores under `activation` when given (applied once per model call there)."""
        cfg, batcher = self.cfg, self.batcher
        try:
            work = batcher.submit(texts, activation)
        except QueueFull:
            raise ApiError(429, f"model is overloaded: {batcher.queued} inputs are queued (--max-queue "
                                f"{cfg.max_queue}); retry later", "overloaded", {"Retry-After": "1"}) from None
        except ShuttingDown:
            raise ApiError(503, "server is shutting down; retry on another replica", "unhealthy") from None
        # A timer on the future, not asyncio.wait_for: that wraps every request in a Task.
        timer = work.loop.call_later(cfg.request_timeout, _time_out, work.future)
        try:
            return await work.future
        except asyncio.TimeoutError:
            work.cancelled = True  # skipped by the batcher if it has not started on it yet
            raise ApiError(503, f"no result within {cfg.request_timeout:g} s (--request-timeout); retry later",
                           "timeout", {"Retry-After": "1"}) from None
        except ShuttingDown:
            raise ApiError(503, "server is shutting down; retry on another replica", "unhealthy") from None
        except InputRejected as e:
            raise ApiError(422, f"the inputs cannot be encoded: {e}") from None
        except Exception as e:
            raise ApiError(500, f"inference failed: {type(e).__name__}: {e}", "backend") from None
        finally:
            timer.cancel()

    async def predict(self, obj: dict, nested: bool) -> bytes:
        """TEI `/predict` (`nested`: the HF Inference API's `/`, always a list of lists)."""
        req = parse_predict(obj, self.limits, pair=self.pair, default_function=self.default_function)
        rows = await self.logits_for(req.texts, _ACTIVATION_OF[req.function])
        out = [_ranked_json(r, self.labels, self.quoted, req.top_k) for r in rows]
        return out[0] if req.single and not nested else b"[" + b",".join(out) + b"]"

    async def classify(self, obj: dict) -> dict:
        """bertfast's `/classify`: one prediction per input, as `Classifier.predict` makes it."""
        spec, labels = self.spec, self.labels
        task = spec["task"]
        req = parse_classify(obj, self.limits, len(labels), pair=spec["pair"], task=task)
        scores = await self.logits_for(req.texts, spec["activation"])
        # The task's own answer (as `Classifier.predict`), plus the ranked labels and every score
        # when asked (top_k > 1 is refused above for tasks without a ranking of labels).
        preds = self.clf.task.outputs(scores, labels, spec["thresholds"])
        for p, row in zip(preds, scores):
            if req.top_k > 1:
                p["top_k"] = _ranked(row, labels, req.top_k)
            if req.all_scores and "scores" not in p:
                p["scores"] = {lab: float(s) for lab, s in zip(labels, row.tolist())}
        return {"model": self.model_id, "variant": self.clf.options.variant, "task": task, "predictions": preds}

    async def rerank(self, obj: dict) -> list[dict]:
        """TEI `/rerank`: the texts by relevance to the query, best first (pair exports)."""
        req = parse_rerank(obj, self.limits)  # a malformed body is a 422 first, as in TEI
        spec = self.spec
        if not spec["reranker"]:
            raise ApiError(424, f"model is not a re-ranker model: {spec['refusal']} Use /predict.", "backend")
        logits = await self.logits_for([(req.query, t) for t in req.texts])
        pos = spec["positive"]
        if req.raw_scores:  # the one logit, or the log-odds of the relevant class (its sigmoid: P(relevant))
            rel = logits[:, 0] if logits.shape[1] == 1 else logits[:, pos] - logits[:, 1 - pos]
        else:
            rel = self.clf.task.relevance(_tasks.activate(logits, spec["activation"]), pos)
        order = np.argsort(-rel, kind="stable")  # ties: request order, as Classifier.rerank
        scores = rel.tolist()
        if req.return_text:
            return [{"index": i, "score": scores[i], "text": req.texts[i]} for i in order.tolist()]
        return [{"index": i, "score": scores[i]} for i in order.tolist()]


def _time_out(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())


def _best_first(row: np.ndarray, scores: list[float], top_k: int | None) -> list[int]:
    """Label indices by score, best first (ties: label order), at most `top_k`."""
    if len(scores) <= 64:  # plain Python is cheaper than numpy's per-call overhead on a few labels
        return sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:top_k]  # stable
    return np.argsort(-row, kind="stable")[:top_k].tolist()


def _ranked_json(row: np.ndarray, labels: list[str], quoted: list[bytes], top_k: int | None = None) -> bytes:
    """`_ranked(row, labels, top_k)` as JSON bytes, written directly: the json module formats
    each float through a Python-level callback, most of a small response's cost. Float text is
    `repr`, as json writes it; a non-finite score goes through `dumps`, which refuses it."""
    scores = row.tolist()
    if not all(map(math.isfinite, scores)):
        return dumps(_ranked(row, labels, top_k))
    order = _best_first(row, scores, top_k)
    return b"[" + b",".join(b'{"label":%s,"score":%r}' % (quoted[j], scores[j]) for j in order) + b"]"


def _ranked(row: np.ndarray, labels: list[str], top_k: int | None = None) -> list[dict]:
    """[{"label", "score"}] best first (ties: label order), as TEI and HF return them."""
    scores = row.tolist()
    return [{"label": labels[j], "score": scores[j]} for j in _best_first(row, scores, top_k)]
