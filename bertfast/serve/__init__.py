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
import json
import logging
import os
import signal
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import BertfastError, require
from ..runtime.options import RuntimeOptions
from ..runtime.options import add_arguments as add_runtime_arguments

log = logging.getLogger(__name__)

ENV_CONFIG = "BERTFAST_SERVE_CONFIG"  # how `--workers N` hands the config to each worker process

__all__ = ["ServeConfig", "serve", "build_app", "add_arguments", "main"]


@dataclass
class ServeConfig:
    """What `bertfast serve` does; every field is the CLI flag of the same name.

    Attributes:
        export: export folder (written by `bertfast export`).
        host: interface to listen on (0.0.0.0 in a container).
        port: TCP port (0: any free port).
        workers: uvicorn worker processes, each with its own model session and
            `usable CPUs // workers` threads unless `options.threads` is set.
        max_batch_texts: most texts per model call, gathered across requests (a request is
            never split, so one larger request still runs whole).
        max_wait_ms: once a request is queued, how long it may wait for others to share its
            model call (0: never wait; the queue still fills while the model runs).
        max_queue: most texts waiting for the model; beyond it requests get 429 + Retry-After.
        max_inputs: most texts per request (413 beyond).
        max_chars: most characters per text (413 beyond).
        max_body_mb: largest request body read, in MiB (413 beyond).
        request_timeout: seconds a request waits for its result before a 503.
        graceful_timeout: seconds SIGTERM waits for in-flight requests before closing them.
        model_id: name reported by /info (default: the export folder's name).
        access_log: log every request (costs CPU at high request rates).
        options: every inference setting (device, variant, threads, batch_tokens, ...).
    """

    export: Path
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_batch_texts: int = 256
    max_wait_ms: float = 2.0
    max_queue: int = 4096
    max_inputs: int = 256
    max_chars: int = 50_000
    max_body_mb: float = 16.0
    request_timeout: float = 30.0
    graceful_timeout: float = 30.0
    model_id: str | None = None
    access_log: bool = False
    options: RuntimeOptions = field(default_factory=RuntimeOptions)

    def __post_init__(self) -> None:
        self.export = Path(self.export)
        if isinstance(self.options, dict):  # from to_json()
            self.options = RuntimeOptions(**self.options)
        if not isinstance(self.options, RuntimeOptions):
            raise BertfastError(f"options must be a RuntimeOptions; got {type(self.options).__name__}.")
        for name, low in (("workers", 1), ("max_batch_texts", 1), ("max_queue", 1), ("max_inputs", 1),
                          ("max_chars", 1), ("port", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise BertfastError(f"{_flag(name)} must be an integer >= {low}; got {value!r}.")
        if self.port > 65535:
            raise BertfastError(f"--port must be at most 65535; got {self.port}.")
        for name, low in (("max_wait_ms", 0.0), ("max_body_mb", 1e-6), ("request_timeout", 1e-3),
                          ("graceful_timeout", 0.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < low:
                raise BertfastError(f"{_flag(name)} must be a number >= {low:g}; got {value!r}.")
        if self.max_queue < self.max_inputs:
            raise BertfastError(f"--max-queue ({self.max_queue}) must be >= --max-inputs ({self.max_inputs}), "
                                "or a request of --max-inputs texts could never be queued.")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    def to_json(self) -> str:
        d = asdict(self)
        d["export"] = str(self.export)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))


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


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
