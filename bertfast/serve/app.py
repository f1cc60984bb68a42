"""The app: TEI- and HF-compatible routes over one `DynamicBatcher`, all behind one middleware stack.

`build_app` loads (or takes) the classifier, starts the batcher and assembles the app: the POST
routes (`handlers.PostRoutes`: read a size-capped body, check it, queue its inputs, answer) are
dispatched by `asgi.HotRoutes`, innermost in the middleware stack; the GET routes (`/health`,
`/info`, `/metrics`) and 404/405 are FastAPI's. Errors are TEI's error body `{"error",
"error_type"}` with TEI's status codes (422 bad input, 413 over a limit, 429 overloaded, 424
wrong model type), plus 503 for a timeout or a server shutting down.
FastAPI is imported at the top: this module is only imported through `bertfast.serve.serve` /
`build_app`, which check the `[serve]` extra first.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager

from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import BertfastError
from .asgi import ServeAPI
from .batcher import DynamicBatcher
from .config import ServeConfig
from .handlers import ROUTES, PostRoutes
from .metrics import ServeMetrics
from .model import ServedModel, check_served
from .schemas import ApiError


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

    if cfg.options.streams is not None or clf.options.device != "cpu" or clf.options.threads < 2:
        return None
    return Classifier.load(cfg.export, options=clf.options.replace(streams=2))


def build_app(cfg: ServeConfig, classifier: ServedModel | None = None) -> ServeAPI:
    """Build the ASGI app serving `cfg.export`.

    Args:
        cfg: server settings (limits, batching).
        classifier: an already loaded classifier to serve (a `ServedModel`: a `Classifier`, or
            a stand-in in tests; Ray Serve); it is not closed at shutdown. Default: load one
            from `cfg.export` and `cfg.options`.

    Returns:
        A FastAPI app (`asgi.ServeAPI`) whose every route passes the middleware added with
        `app.add_middleware`. Its lifespan shutdown drains the queue; `app.state` holds
        `batcher`, `metrics`, `classifier` and `config`.
    """
    owned = classifier is None
    clf = load_classifier(cfg) if owned else check_served(classifier)
    spec = _export_kind(clf)
    if spec["pair"] and clf.options.long_text == "head-tail":
        if owned:
            clf.close()
        raise BertfastError("--long-text head-tail is for single texts; this export classifies text pairs, which are "
                            "cut by --pair-truncation or windowed with --long-text sliding-window.")
    metrics = ServeMetrics(ROUTES)
    split = split_classifier(cfg, clf) if owned else None
    batcher = DynamicBatcher(clf, cfg.max_batch_texts, cfg.max_wait_ms / 1000, cfg.max_queue, metrics,
                             workers=clf.options.streams or 1, split=split)
    info = _info(cfg, clf, spec)
    routes = PostRoutes(cfg, clf, batcher, metrics, spec, info["model_id"])

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

    app = ServeAPI(routes.table(), cfg.max_body_bytes, title="bertfast", version=__version__, lifespan=lifespan,
                   description="Text classification with dynamic batching (TEI-compatible).")
    app.state.batcher, app.state.metrics, app.state.classifier, app.state.config = batcher, metrics, clf, cfg
    _add_get_routes(app, batcher, metrics, info)
    return app


def _add_get_routes(app: ServeAPI, batcher: DynamicBatcher, metrics: ServeMetrics, info: dict) -> None:
    """/health (also / and /ping), /info, /metrics, and TEI's error body for 404/405."""

    def error(e: ApiError):
        metrics.error(e.error_type)
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

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


def app_from_env() -> ServeAPI:
    """App factory for `--workers N`: each worker process builds its own app and session."""
    from .config import ENV_CONFIG

    return build_app(ServeConfig.from_json(os.environ[ENV_CONFIG]))


def _export_kind(clf: ServedModel) -> dict:
    """What the export is: task name, pair inputs, activation, thresholds, and whether it can
    rerank, decided once by the classifier at load (`Classifier.rerank_refusal`: a pair model
    with one score, or two classes of which the relevant one is known)."""
    task = clf.task
    thresholds = task.decision_thresholds(clf.thresholds, len(clf.labels))
    return {"task": task.name, "pair": bool(clf.pair), "activation": clf.activation, "thresholds": thresholds,
            "reranker": clf.rerank_refusal is None, "refusal": clf.rerank_refusal, "positive": clf.positive}


def _info(cfg: ServeConfig, clf: ServedModel, spec: dict) -> dict:
    """`/info`: TEI's fields first (so TEI clients read them), bertfast's under "bertfast"."""
    m, opts = clf.manifest, clf.options
    labels = list(clf.labels)
    max_length = opts.max_length
    name = cfg.model_id or m.folder.name
    mapping = {"id2label": {str(i): lab for i, lab in enumerate(labels)},
               "label2id": {lab: i for i, lab in enumerate(labels)}}
    return {
        "model_id": name,
        "model_sha": (m.source or {}).get("sha256"),
        "model_dtype": opts.variant,
        # TEI: a cross-encoder (pair model, one score or two classes) is a reranker.
        "model_type": {"reranker" if spec["reranker"] else "classifier": mapping},
        "max_concurrent_requests": cfg.max_queue,
        "max_input_length": max_length,
        "max_batch_tokens": opts.batch_tokens,
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
            "variant": opts.variant,
            "device": opts.device,
            "providers": list(clf.providers),
            "threads": opts.threads,
            "max_length": max_length,
            "long_text": opts.long_text,
            "batching": {"max_batch_texts": cfg.max_batch_texts, "max_wait_ms": cfg.max_wait_ms,
                         "max_queue": cfg.max_queue, "batch_tokens": opts.batch_tokens,
                         "max_batch_size": opts.max_batch_size},
            "limits": {"max_inputs": cfg.max_inputs, "max_chars": cfg.max_chars, "max_body_mb": cfg.max_body_mb,
                       "request_timeout": cfg.request_timeout},
            "workers": cfg.workers,
            "pid": os.getpid(),
        },
    }

