"""Prometheus metrics of one server process, in a registry of its own.

A registry per app (not prometheus_client's global one) means two apps in one process (tests,
Ray Serve replicas sharing a worker) never collide, and `/metrics` shows only the server's
series. With `--workers N` each worker answers for itself (see docs/serve.md, "Scaling").
"""

from __future__ import annotations

from ..errors import require

# Texts per model call: powers of two up to well past --max-batch-texts' default.
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Padded tokens per model call (batch x longest window, summed over the Classifier's batches).
_TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
# Request and batch seconds: sub-millisecond (tiny models) to the request timeout.
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServeMetrics:
    """The server's counters, gauges and histograms, plus plain counters tests can read.

    Args:
        routes: the POST routes (`/predict`, `/rerank`, ...) whose `bertfast_request_seconds`
            series are created up front, so dashboards see them before the first request.

    Attributes:
        batches: model calls made.
        max_batch_texts: the most texts one model call has held (proof of cross-request batching).
    """

    def __init__(self, routes: tuple[str, ...] = ()) -> None:
        pc = require("prometheus_client", "serve", "prometheus-client")
        self._pc = pc
        r = self.registry = pc.CollectorRegistry()
        self.requests = pc.Counter("bertfast_requests", "HTTP requests by route and status code",
                                   ["route", "status"], registry=r)
        self.errors = pc.Counter("bertfast_errors", "Failed requests by kind (validation, overloaded, "
                                 "timeout, backend, shutdown, not_found)", ["kind"], registry=r)
        self.queue_depth = pc.Gauge("bertfast_queue_texts", "Texts waiting for the model", registry=r)
        self.batch_size = pc.Histogram("bertfast_batch_texts", "Texts per model call (across requests)",
                                       buckets=_BATCH_BUCKETS, registry=r)
        self.batch_requests = pc.Histogram("bertfast_batch_requests", "Requests per model call",
                                           buckets=_BATCH_BUCKETS, registry=r)
        self.batch_tokens = pc.Histogram("bertfast_batch_tokens", "Padded tokens per model call",
                                         buckets=_TOKEN_BUCKETS, registry=r)
        self.batch_seconds = pc.Histogram("bertfast_batch_seconds", "Tokenization + inference time per model call",
                                          buckets=_SECONDS, registry=r)
        self.queue_seconds = pc.Histogram("bertfast_queue_seconds", "Time a request waited before its model call",
                                          buckets=_SECONDS, registry=r)
        self.latency = pc.Histogram("bertfast_request_seconds", "Request latency (body read to response)",
                                    ["route"], buckets=_SECONDS, registry=r)
        self.texts = pc.Counter("bertfast_texts", "Inputs classified (texts, or text pairs of a pair export; "
                                "/rerank: one per document)", registry=r)
        self.batches = 0
        self.max_batch_texts = 0
        self._children: dict = {}  # (route, status) -> (requests child, latency child)
        self._errors: dict = {}  # kind -> errors child
        for route in routes:  # every route's latency series exists (at 0) before its first request
            self.latency.labels(route)

    def request_done(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency (on the event loop, every request)."""
        key = (route, status)
        pair = self._children.get(key)
        if pair is None:  # labels() takes a lock and builds a key tuple: once per series
            pair = self._children[key] = (self.requests.labels(route, str(status)), self.latency.labels(route))
        pair[0].inc()
        pair[1].observe(seconds)

    def error(self, kind: str) -> None:
        """Count one failed request of `kind`."""
        child = self._errors.get(kind)
        if child is None:
            child = self._errors[kind] = self.errors.labels(kind)
        child.inc()

    def observe_batch(self, texts: int, requests: int, padded_tokens: int, seconds: float, waits: list[float]) -> None:
        """Record one model call (called by the batcher thread only)."""
        self.batches += 1
        self.max_batch_texts = max(self.max_batch_texts, texts)
        self.batch_size.observe(texts)
        self.batch_requests.observe(requests)
        self.batch_tokens.observe(padded_tokens)
        self.batch_seconds.observe(seconds)
        self.texts.inc(texts)
        for w in waits:
            self.queue_seconds.observe(w)

    def render(self) -> tuple[bytes, str]:
        """(body, content type) in the Prometheus text exposition format."""
        return self._pc.generate_latest(self.registry), self._pc.CONTENT_TYPE_LATEST
