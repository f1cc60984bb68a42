"""`ServeConfig`: what `bertfast serve` does, one field per flag, checked when built."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import BertfastError
from ..runtime.options import RuntimeOptions

ENV_CONFIG = "BERTFAST_SERVE_CONFIG"  # how `--workers N` hands the config to each worker process


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


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
