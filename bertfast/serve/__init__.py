"""Serve an export over HTTP, batching texts ACROSS requests; speaks TEI's and HF's APIs.

`bertfast serve EXPORT` answers text-embeddings-inference routes (`POST /predict`, `/rerank`,
`GET /health`, `/info`, `/metrics`), the HF Inference API route that
`huggingface_hub.InferenceClient.text_classification` calls (`POST /`), and bertfast's own
`POST /classify`, for every task of an export: single-label, multi-label or regression, of
single texts or of text pairs (a pair export with one score or two classes is a TEI reranker).
Requests are queued and one batcher thread per model session classifies everything queued in
one model call (see `batcher.py`); the queue is bounded (429 when full).
Needs `pip install 'bertfast[serve]'` (FastAPI, uvicorn, prometheus-client). See docs/serve.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import require
from ..runtime.options import RuntimeOptions
from ..runtime.options import add_arguments as add_runtime_arguments
from .config import ENV_CONFIG, ServeConfig

log = logging.getLogger(__name__)

__all__ = ["ServeConfig", "serve", "build_app", "add_arguments", "main"]


def serve(cfg: ServeConfig) -> None:
    """Run the server until SIGTERM/SIGINT, then drain the queue and return.

    Args:
        cfg: the server settings. With `workers == 1` the model is loaded here (load errors
            surface before the port is bound); with more, each worker process loads its own.

    Raises:
        BertfastError: a bad setting or export; MissingDependencyError without the extra.
    """
    uvicorn = require("uvicorn", "serve")
    require("fastapi", "serve")
    kwargs: dict[str, Any] = dict(host=cfg.host, port=cfg.port, access_log=cfg.access_log, lifespan="on",
                                  timeout_graceful_shutdown=cfg.graceful_timeout, log_level="info")
    if cfg.workers == 1:
        from .app import build_app

        target: Any = build_app(cfg)
    else:
        from ..manifest import load_manifest

        load_manifest(cfg.export)  # a bad path fails once here, not in every worker
        # Workers are fresh processes (spawned): they rebuild the app from this variable.
        os.environ[ENV_CONFIG] = cfg.to_json()
        target = "bertfast.serve.app:app_from_env"
        kwargs.update(factory=True, workers=cfg.workers)
    log.info("serving %s on http://%s:%d (%d worker(s))", cfg.export, cfg.host, cfg.port, cfg.workers)
    # uvicorn handles SIGTERM/SIGINT itself (stop accepting, finish in-flight requests, run the
    # lifespan shutdown that drains the queue) and then re-raises the signal under the handler
    # it found. By then the shutdown is complete, so that handler must do nothing: the CLI's
    # would report an interrupted run.
    saved = {}
    if threading.current_thread() is threading.main_thread():
        saved = {s: signal.signal(s, _after_shutdown) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.run(target, **kwargs)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _after_shutdown(signum, frame) -> None:
    log.info("stopped after draining the queue (signal %d)", signum)


def build_app(cfg: ServeConfig, classifier=None):
    """The ASGI app (FastAPI) for `cfg`; see `bertfast.serve.app.build_app`."""
    require("fastapi", "serve")
    from .app import build_app as _build

    return _build(cfg, classifier)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`bertfast serve` flags: server settings, then the runtime flags shared with `predict`."""
    d = {f.name: f.default for f in fields(ServeConfig) if f.name not in ("export", "options")}
    parser.add_argument("export", type=Path, help="export folder (written by `bertfast export`)")
    s = parser.add_argument_group("server")
    s.add_argument("--host", default=d["host"], help="interface to listen on (0.0.0.0 in a container)")
    s.add_argument("--port", type=int, default=d["port"], help="TCP port (0: any free port)")
    s.add_argument("--workers", type=int, default=d["workers"],
                   help="worker processes, each with its own model session and usable CPUs / N threads")
    s.add_argument("--model-id", default=None, help="model name reported by /info (None: the export folder name)")
    s.add_argument("--access-log", action="store_true", help="log every request (costs CPU at high request rates)")
    b = parser.add_argument_group("batching and limits")
    b.add_argument("--max-batch-texts", type=int, default=d["max_batch_texts"],
                   help="most texts per model call, gathered across requests")
    b.add_argument("--max-wait-ms", type=float, default=d["max_wait_ms"],
                   help="how long a queued request may wait for others to share its model call")
    b.add_argument("--max-queue", type=int, default=d["max_queue"],
                   help="most texts waiting for the model; beyond it: 429 with Retry-After")
    b.add_argument("--max-inputs", type=int, default=d["max_inputs"], help="most texts per request (413 beyond)")
    b.add_argument("--max-chars", type=int, default=d["max_chars"], help="most characters per text (413 beyond)")
    b.add_argument("--max-body-mb", type=float, default=d["max_body_mb"], help="largest request body in MiB (413 beyond)")
    b.add_argument("--request-timeout", type=float, default=d["request_timeout"],
                   help="seconds a request waits for its result (503 after)")
    b.add_argument("--graceful-timeout", type=float, default=d["graceful_timeout"],
                   help="seconds SIGTERM waits for in-flight requests")
    add_runtime_arguments(parser.add_argument_group("runtime (as in `bertfast predict`)"))


def main(args: argparse.Namespace) -> int:
    """CLI entry: build a `ServeConfig` from the flags and `serve` it."""
    names = {f.name for f in fields(ServeConfig)} - {"options"}
    cfg = ServeConfig(**{k: v for k, v in vars(args).items() if k in names},
                      options=RuntimeOptions.from_namespace(args))
    serve(cfg)
    return 0
