"""The FastAPI app: TEI- and HF-compatible routes over one `DynamicBatcher`.

Every POST route reads a size-capped body, checks it (`schemas.py`), queues its inputs (texts, or
`(text, text_pair)` pairs for a pair export; `/rerank` queues one (query, text) pair per text)
and awaits their logits; nothing on the event loop waits for the model. Scores follow the
export's task: softmax (single-label), sigmoid per label (multi-label), the raw or sigmoid score
(regression), exactly as `Classifier.predict` makes them. Errors are TEI's error body
`{"error", "error_type"}` with TEI's status codes (422 bad input, 413 over a limit, 429
overloaded, 424 wrong model type), plus 503 for a timeout or a server shutting down.
FastAPI is imported at the top: this module is only imported through `bertfast.serve.serve` /
`build_app`, which check the `[serve]` extra first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time
from contextlib import asynccontextmanager

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from .. import __version__
from .. import tasks as _tasks
from ..errors import BertfastError
from . import ServeConfig
from .batcher import DynamicBatcher, InputRejected, QueueFull, ShuttingDown
from .fastpath import FastPathAPI, dumps
from .metrics import ServeMetrics
from .schemas import ApiError, Limits, parse_classify, parse_json, parse_predict, parse_rerank

log = logging.getLogger(__name__)

_JSON_IN_THREAD = 1 << 20  # bodies above 1 MiB are parsed off the event loop
ROUTES = ("/predict", "/invocations", "/", "/classify", "/rerank")
# parameters.function_to_apply's names for the task activations (`tasks.ACTIVATIONS`).
_FUNCTION_OF = {"softmax": "softmax", "sigmoid": "sigmoid", "identity": "none"}
_ACTIVATION_OF = {v: k for k, v in _FUNCTION_OF.items()}


def load_classifier(cfg: ServeConfig):
    """The Classifier for one server process: `usable CPUs // workers` threads unless set."""
    from ..runtime.classifier import Classifier
    from ..utils import usable_cpus

    opts = cfg.options
    if opts.threads is None:
        opts = opts.replace(threads=max(1, usable_cpus() // cfg.workers))
    return Classifier.load(cfg.export, options=opts)


def split_classifier(cfg: ServeConfig, clf):
    """The same export on two single-threaded streams, for the batcher to run overlapping
    calls side by side (batcher.py); None when `--streams` was set, or off the CPU, or on one
    thread. It shares every resolved setting of `clf` but the streams."""
    from ..runtime.classifier import Classifier

    if cfg.options.streams is not None or clf.device != "cpu" or clf.threads < 2:
        return None
    return Classifier.load(cfg.export, options=clf.options.replace(streams=2))


def build_app(cfg: ServeConfig, classifier=None):
    """Build the ASGI app serving `cfg.export`.

    Args:
        cfg: server settings (limits, batching).
        classifier: an already loaded `Classifier` to serve (tests, Ray Serve); it is not
            closed at shutdown. Default: load one from `cfg.export` and `cfg.options`.

    Returns:
        A FastAPI app. Its lifespan shutdown drains the queue; `app.state` holds `batcher`,
        `metrics`, `classifier` and `config`.
    """
    owned = classifier is None
    clf = load_classifier(cfg) if owned else classifier
    labels = list(clf.labels)
    spec = _export_kind(clf)
    task, pair, activation = spec["task"], spec["pair"], spec["activation"]
    if pair and getattr(clf.batcher, "long_text", None) == "head-tail":
        if owned:
            clf.close()
        raise BertfastError("--long-text head-tail is for single texts; this export classifies text pairs, which are "
                            "cut by --pair-truncation or windowed with --long-text sliding-window.")
    metrics = ServeMetrics(ROUTES)
    split = split_classifier(cfg, clf) if owned else None
    batcher = DynamicBatcher(clf, cfg.max_batch_texts, cfg.max_wait_ms / 1000, cfg.max_queue, metrics,
                             workers=getattr(clf, "streams", 1), split=split)
    limits = Limits(cfg.max_inputs, cfg.max_chars)
    quoted = [dumps(lab) for lab in labels]  # each label as a JSON string, for _ranked_json
    info = _info(cfg, clf)

    @asynccontextmanager
    async def lifespan(app):
        yield
        # uvicorn has stopped accepting connections and waited for in-flight requests; anything
        # still queued is classified before the process exits.
        await asyncio.to_thread(batcher.close, True)
        if owned:
            clf.close()
            if split is not None:
                split.close()

    app = FastPathAPI(title="bertfast", version=__version__, lifespan=lifespan,
                      description="Text classification with dynamic batching (TEI-compatible).")
    app.state.batcher, app.state.metrics, app.state.classifier, app.state.config = batcher, metrics, clf, cfg

    def error(e: ApiError):
        metrics.error(e.error_type)
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    async def respond(route: str, read, answer) -> tuple[int, bytes, dict]:
        """(status, JSON bytes, headers) of one POST: read the body, parse, answer; errors as TEI's."""
        t0 = time.perf_counter()
        try:
            body = await read()
            obj = await asyncio.to_thread(parse_json, body) if len(body) > _JSON_IN_THREAD else parse_json(body)
            answered = await answer(obj)  # JSON bytes already (predict), or an object
            out = (200, answered if isinstance(answered, bytes) else dumps(answered), {})
        except ApiError as e:
            metrics.error(e.error_type)
            out = (e.status, dumps(e.body()), e.headers)
        except Exception as e:  # a bug must answer JSON and leave the server up
            log.exception("%s failed", route)
            metrics.error("backend")
            out = (500, dumps({"error": f"internal error: {type(e).__name__}: {e}", "error_type": "backend"}), {})
        metrics.request_done(route, out[0], time.perf_counter() - t0)
        return out

    async def handle(route: str, request, answer):
        """The FastAPI route's answer (the fast path answers these routes before FastAPI does)."""
        status, body, headers = await respond(route, lambda: _read_body(request, cfg.max_body_bytes), answer)
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    async def logits_for(texts: list, activation: str | None = None) -> np.ndarray:
        """Logits [len(texts), n_labels] of texts (or pairs), via the dynamic batcher; their
        scores under `activation` when given (applied once per model call there)."""
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

    async def predict(obj, nested: bool):
        req = parse_predict(obj, limits, pair=pair, default_function=_FUNCTION_OF.get(activation, "softmax"))
        rows = await logits_for(req.texts, _ACTIVATION_OF[req.function])
        out = [_ranked_json(r, labels, quoted, req.top_k) for r in rows]
        return (out[0] if req.single and not nested else b"[" + b",".join(out) + b"]")

    answers = {}  # route -> answer(obj), shared by the FastAPI routes and the fast path

    @app.post("/predict", summary="TEI: classify a text (or pair [a, b]) or a batch [[text], ...] / [[a, b], ...]")
    async def tei_predict(request: Request):
        return await handle("/predict", request, answers["/predict"])

    @app.post("/invocations", summary="SageMaker: same as /predict", include_in_schema=False)
    async def invocations(request: Request):
        return await handle("/invocations", request, answers["/invocations"])

    @app.post("/", summary="HF Inference API (InferenceClient.text_classification): always [[...]]")
    async def hf_predict(request: Request):
        return await handle("/", request, answers["/"])

    answers["/predict"] = answers["/invocations"] = lambda obj: predict(obj, nested=False)
    answers["/"] = lambda obj: predict(obj, nested=True)

    async def classify_answer(obj):
        req = parse_classify(obj, limits, len(labels), pair=pair, task=task)
        scores = await logits_for(req.texts, activation)
        if task == "regression":
            preds = [{"score": s} for s in scores[:, 0].tolist()]
        elif task == "multi_label":
            on = _tasks.decide(_tasks.get(task), scores, spec["thresholds"])
            preds = [{"labels": [labels[j] for j in np.flatnonzero(row).tolist()], "scores": dict(zip(labels, ss))}
                     for row, ss in zip(on, scores.tolist())]
        else:
            preds = []
            for row in scores:
                ranked = _ranked(row, labels, req.top_k)
                p = dict(ranked[0])
                if req.top_k > 1:
                    p["top_k"] = ranked
                if req.all_scores:
                    p["scores"] = {lab: float(s) for lab, s in zip(labels, row.tolist())}
                preds.append(p)
        return {"model": info["model_id"], "variant": clf.variant, "task": task, "predictions": preds}

    async def rerank_answer(obj):
        req = parse_rerank(obj, limits)  # a malformed body is a 422 first, as in TEI
        if not spec["reranker"]:
            raise ApiError(424, _not_reranker(info["model_id"], task, pair, labels), "backend")
        logits = await logits_for([(req.query, t) for t in req.texts])
        if req.raw_scores:  # the one logit, or the log-odds of the last class (sigmoid of it: P(last))
            rel = logits[:, 0] if logits.shape[1] == 1 else logits[:, -1] - logits[:, 0]
        else:
            rel = _tasks.relevance(_tasks.activate(logits, activation))
        order = np.argsort(-rel, kind="stable")  # ties: request order, as Classifier.rerank
        scores = rel.tolist()
        if req.return_text:
            return [{"index": i, "score": scores[i], "text": req.texts[i]} for i in order.tolist()]
        return [{"index": i, "score": scores[i]} for i in order.tolist()]

    answers["/classify"], answers["/rerank"] = classify_answer, rerank_answer

    @app.post("/classify", summary="bertfast: Classifier.predict per input (label/score, labels, or score by task)")
    async def classify(request: Request):
        return await handle("/classify", request, classify_answer)

    @app.post("/rerank", summary="TEI: texts ordered by relevance to a query (pair exports: cross-encoders)")
    async def rerank(request: Request):
        return await handle("/rerank", request, rerank_answer)

    @app.get("/health", summary="200 while the batcher runs and accepts work, else 503")
    @app.get("/ping", include_in_schema=False)
    @app.get("/", include_in_schema=False)
    async def health():
        if batcher.healthy:
            return {"status": "ok"}
        return error(ApiError(503, "unhealthy: shutting down or the batcher thread stopped", "unhealthy"))

    @app.get("/info", summary="model, variant, device, labels, limits and batching settings")
    async def get_info():
        return info

    @app.get("/metrics", summary="Prometheus metrics")
    async def get_metrics():
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):  # 404/405 in TEI's error body too
        kind = "not_found" if exc.status_code == 404 else "validation"
        metrics.requests.labels("other", str(exc.status_code)).inc()
        return error(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", kind))

    # The hot POST routes skip FastAPI's per-request machinery (fastpath.py); same handlers.
    app.fast_routes = {r: functools.partial(respond, r, answer=a) for r, a in answers.items()}
    app.fast_limit = cfg.max_body_bytes
    return app


def _time_out(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())


def app_from_env():
    """App factory for `--workers N`: each worker process builds its own app and session."""
    from . import ENV_CONFIG

    return build_app(ServeConfig.from_json(os.environ[ENV_CONFIG]))


async def _read_body(request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (never read whole first)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body has {int(declared):,} bytes; the limit is {limit:,} (--max-body-mb).")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body is over {limit:,} bytes (--max-body-mb).")
        chunks.append(chunk)
    return b"".join(chunks)


def _export_kind(clf) -> dict:
    """What the export is: task name, pair inputs, activation, thresholds, and whether it can
    rerank (the rule of `Classifier.rerank`: a pair model with one score or two classes)."""
    task_obj = getattr(clf, "task", None)
    task = getattr(task_obj, "name", None) or "single_label"
    pair = bool(getattr(clf, "pair", False))
    n = len(clf.labels)
    activation = getattr(clf, "activation", None) or _tasks.get(task).activation
    thresholds = None
    if task == "multi_label":
        th = getattr(clf, "thresholds", None)
        thresholds = [float(t) for t in th] if th is not None else [0.5] * n
    reranker = pair and (task == "regression" or (task == "single_label" and n == 2))
    return {"task": task, "pair": pair, "activation": activation, "thresholds": thresholds, "reranker": reranker}


def _not_reranker(model_id: str, task: str, pair: bool, labels: list[str]) -> str:
    if not pair:
        return (f"model is not a re-ranker model: export {model_id!r} classifies single texts ({task}, "
                f"{len(labels)} labels); it is not a pair / cross-encoder model. Use /predict.")
    return (f"model is not a re-ranker model: export {model_id!r} is a pair model but {task} with {len(labels)} "
            "labels; reranking needs one score (regression) or two classes (P(last class) is the relevance). "
            "Use /predict with pairs.")


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


def _info(cfg: ServeConfig, clf) -> dict:
    """`/info`: TEI's fields first (so TEI clients read them), bertfast's under "bertfast"."""
    m = clf.manifest
    labels = list(clf.labels)
    opts = getattr(clf, "options", cfg.options)
    max_length = getattr(clf.batcher, "max_length", m.max_length)
    name = cfg.model_id or m.folder.name
    spec = _export_kind(clf)
    mapping = {"id2label": {str(i): lab for i, lab in enumerate(labels)},
               "label2id": {lab: i for i, lab in enumerate(labels)}}
    return {
        "model_id": name,
        "model_sha": (m.source or {}).get("sha256"),
        "model_dtype": clf.variant,
        # TEI: a cross-encoder (pair model, one score or two classes) is a reranker.
        "model_type": {"reranker" if spec["reranker"] else "classifier": mapping},
        "max_concurrent_requests": cfg.max_queue,
        "max_input_length": max_length,
        "max_batch_tokens": clf.batcher.batch_tokens,
        "max_batch_requests": None,
        "max_client_batch_size": cfg.max_inputs,
        "auto_truncate": True,  # long texts follow --long-text; they are never refused
        "tokenization_workers": 1,
        "version": __version__,
        "sha": None,
        "docker_label": None,
        "bertfast": {
            "task": spec["task"],
            "pair": spec["pair"],
            "activation": spec["activation"],
            "thresholds": spec["thresholds"],
            "reranker": spec["reranker"],
            "labels": labels,
            "variant": clf.variant,
            "device": clf.device,
            "providers": list(getattr(clf, "providers", [])),
            "threads": clf.threads,
            "max_length": max_length,
            "long_text": getattr(opts, "long_text", None),
            "batching": {"max_batch_texts": cfg.max_batch_texts, "max_wait_ms": cfg.max_wait_ms,
                         "max_queue": cfg.max_queue, "batch_tokens": clf.batcher.batch_tokens,
                         "max_batch_size": clf.batcher.max_batch_size},
            "limits": {"max_inputs": cfg.max_inputs, "max_chars": cfg.max_chars, "max_body_mb": cfg.max_body_mb,
                       "request_timeout": cfg.request_timeout},
            "workers": cfg.workers,
            "pid": os.getpid(),
        },
    }

