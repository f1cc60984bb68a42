"""Dynamic batching across requests: one thread feeds the model from a bounded queue.

Requests append their inputs to a queue (from the event loop, never waiting on the model); one
batcher thread per model session takes everything queued, up to `max_batch_texts`, waiting at
most `max_wait_s` after the oldest request arrived for more to come, and makes ONE model call.
The Classifier then sorts those texts by length and cuts token-budget batches itself, so a
server full of one-text requests computes like an offline run over large batches. Results go
back to each request's asyncio future with `loop.call_soon_threadsafe`, in its own order.

Inputs are what the export classifies: strings, or `(text, text_pair)` tuples for a pair export
(`clf.pair`). One export takes one kind, so every queued request holds the same kind and any of
them can share a call: `/predict` pairs and `/rerank`'s (query, document) pairs batch together.
"Texts" below counts inputs (a pair is one). The batcher returns logits, or the scores of the
activation a request names (`submit(..., activation=)`): applied once per model call to every
row that asks for it, in the batcher thread, instead of one small numpy call per request on
the event loop.

Why one thread by default: ONNX Runtime already spreads one call over every intra-op thread.
Under load the queue fills while a call runs, so the next call is bigger: batch size adapts to
load with no tuning. But on a few cores the event loop (HTTP, JSON) needs CPU too, and taking a
core from a call that splits every op over all cores stalls the whole call at each op's barrier.
So with a `split` Classifier (the same export on single-threaded streams) the batcher adapts:
at light load one thread takes calls and runs them on `clf` with every core (lowest latency);
under heavy load (a call finds `HEAVY_TEXTS` waiting) a second thread takes calls too and both
run on `split`, one core each, side by side, so a stolen core slows one call instead of
stalling both.

A model call that fails is retried by halves (`_call`), so one request whose input breaks the
model fails alone instead of every request that shared its call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .. import tasks as _tasks
from ..errors import BertfastError
from .model import ModelCalls

log = logging.getLogger(__name__)


# Heavy load: a call found this many texts waiting (its own and those left queued). Then, and for
# HEAVY_HOLD_S after, calls run on the split streams with two workers. Lighter load keeps one
# worker on every core: on 2 cores with one headline per request, splitting at 8 clients (calls
# of ~4 texts) cost 40% of throughput, while at 64 clients (calls of 30+) it gained ~10%.
HEAVY_TEXTS = 16
HEAVY_HOLD_S = 0.5


class QueueFull(Exception):
    """The queue holds `max_queue` texts already (answered 429 with Retry-After)."""


class ShuttingDown(Exception):
    """The server is draining its queue before exiting (answered 503)."""


class InputRejected(Exception):
    """One request's inputs cannot be encoded (answered 422 with the reason): e.g. a pair whose
    first text leaves no room for the second under `pair_truncation="only_second"`. Only that
    request fails; the others queued with it are classified as usual."""


@dataclass(eq=False)
class Work:
    """One request's inputs (texts or pairs) waiting for the model; `future` gets logits
    [n, n_labels], or their scores under `activation` (a `tasks.ACTIVATIONS` name) when set."""

    texts: list
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    activation: str | None = None
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False  # set by a timed-out request: skipped if not yet taken


class DynamicBatcher:
    """Collects queued requests into model calls on one background thread.

    Args:
        clf: a loaded `Classifier`, or any `ModelCalls` (only `encode` and `logits_from_encoded`
            are used).
        max_batch_texts: most texts per model call (one request is never split, so a call
            may exceed it when a single request is larger).
        max_wait_s: how long the oldest queued request may wait for company.
        max_queue: most texts queued; `submit` raises `QueueFull` beyond it.
        metrics: a `ServeMetrics` (or None).
    """

    def __init__(self, clf: ModelCalls, max_batch_texts: int, max_wait_s: float, max_queue: int, metrics=None,
                 workers: int = 1, split: ModelCalls | None = None):
        self.clf, self.split = clf, split
        workers = 2 if split is not None else workers
        self._running = 0  # calls in flight
        self._heavy_at = -HEAVY_HOLD_S  # when a call last found HEAVY_TEXTS texts waiting
        self._company_at = -HEAVY_HOLD_S  # when a call last had company (2+ requests, or others waiting)
        self.max_batch_texts = max_batch_texts
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: deque[Work] = deque()
        self._queued = 0  # texts in _queue, cancelled ones included until taken
        self._cond = threading.Condition()
        self._closing = False
        self._threads = [threading.Thread(target=self._loop, args=(i,), name=f"bertfast-batcher-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    @property
    def queued(self) -> int:
        """Texts waiting for the model."""
        return self._queued

    @property
    def healthy(self) -> bool:
        """True while the thread runs and the server accepts work."""
        return all(t.is_alive() for t in self._threads) and not self._closing

    def submit(self, texts: list, activation: str | None = None) -> Work:
        """Queue `texts` (strings, or `(text, text_pair)` tuples for a pair export; call from the
        event loop); await `work.future` for their logits, or their scores under `activation`.

        Raises:
            QueueFull: the queue cannot take `len(texts)` more texts.
            ShuttingDown: `close` was called.
        """
        loop = asyncio.get_running_loop()
        work = Work(texts, loop.create_future(), loop, activation)
        with self._cond:
            if self._closing:
                raise ShuttingDown()
            if self._queued + len(texts) > self.max_queue:
                raise QueueFull()
            self._queue.append(work)
            self._queued += len(texts)
            self._gauge()
            self._cond.notify_all()  # all: an idle second worker must not swallow the wake-up
        return work

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting work; finish what is queued (`drain`) or fail it; join the thread."""
        with self._cond:
            self._closing = True
            if not drain:
                while self._queue:
                    _resolve(self._queue.popleft(), error=ShuttingDown())
                self._queued = 0
                self._gauge()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    # -- the batcher thread ------------------------------------------------------------

    def _loop(self, worker: int = 0) -> None:
        while True:
            taken = self._take(worker)
            if taken is None:
                return
            batch, clf = taken
            try:
                if batch:
                    self._run(batch, clf)
            finally:
                with self._cond:
                    self._running -= 1

    def _heavy(self, now: float) -> bool:
        return self.split is not None and now - self._heavy_at < HEAVY_HOLD_S

    def _take(self, worker: int = 0) -> tuple[list[Work], ModelCalls] | None:
        """Block for the next batch and the Classifier to run it on; None when closing and drained.

        Worker 0 always takes work; with a `split` Classifier the others only under heavy load
        (see `HEAVY_TEXTS`); with a fixed `--streams N`, all N do.
        """
        adaptive = worker and self.split is not None
        with self._cond:
            while not self._queue or (adaptive and not self._heavy(time.perf_counter())):
                if self._closing and not self._queue:
                    return None
                if self._closing:
                    break  # drain with every worker
                self._cond.wait(HEAVY_HOLD_S if adaptive else None)
            # Wait for company until the OLDEST request's deadline: after a long model call the
            # queue is already full and past its deadline, so the next call starts at once. A
            # lone caller (no call lately found company) is not kept waiting for nobody.
            deadline = self._queue[0].enqueued + self.max_wait_s
            lone = time.perf_counter() - self._company_at > HEAVY_HOLD_S and self._queued == 1
            while self._queued < self.max_batch_texts and not self._closing and not lone:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            now = time.perf_counter()
            if self._queued >= HEAVY_TEXTS:
                self._heavy_at = now
            limit = self.max_batch_texts
            if self._heavy(now) and not self._running:
                # The other worker is idle: leave it half of the work, so both cores compute.
                limit = min(limit, max(1, (self._queued + 1) // 2))
            batch, n = [], 0
            while self._queue and (not batch or n + len(self._queue[0].texts) <= limit):
                w = self._queue.popleft()
                self._queued -= len(w.texts)
                if not w.cancelled:
                    batch.append(w)
                    n += len(w.texts)
            self._gauge()
            if len(batch) > 1 or self._queue or self._running:
                self._company_at = now
            if self._heavy(now) and self._queue:
                self._cond.notify_all()  # wake the other worker for what is left
            self._running += 1
            # Heavy load lately: the single-threaded streams, side by side; else every core.
            return batch, (self.split if self._heavy(now) else self.clf)

    def _run(self, batch: list[Work], clf: ModelCalls) -> None:
        t0 = time.perf_counter()
        try:
            enc = clf.encode([t for w in batch for t in w.texts])
        except Exception as e:  # an input no request's check could see: fail only its request
            batch = self._without_bad_inputs(batch, e)
            if not batch:
                return
            enc = None  # the others are encoded again without it
        self._call(batch, clf, enc, t0)

    def _call(self, batch: list[Work], clf: ModelCalls, enc, t0: float) -> None:
        """Run one model call on `batch` (encoded as `enc`, or None) and answer its requests.

        A failed call may be one input's doing (e.g. one longer than the model's position table
        fails the whole call in ONNX Runtime): each half of the batch is then retried on its
        own, down to single requests, so only the requests that fail alone get the error (and
        count once each in the metrics); the thread always survives.
        """
        try:
            if enc is None:
                enc = clf.encode([t for w in batch for t in w.texts])
            logits = np.asarray(clf.logits_from_encoded(enc), dtype=np.float32)
        except Exception as e:
            if len(batch) == 1:
                log.exception("model call on the %d input(s) of one request failed", len(batch[0].texts))
                _resolve(batch[0], error=e)
                return
            log.warning("model call on %d requests failed (%s: %s); retrying each half on its own", len(batch),
                        type(e).__name__, str(e)[:200])
            mid = len(batch) // 2
            for half in (batch[:mid], batch[mid:]):
                self._call(half, clf, None, time.perf_counter())
            return
        self._answer(batch, logits, enc, t0)

    def _answer(self, batch: list[Work], logits: np.ndarray, enc, t0: float) -> None:
        seconds = time.perf_counter() - t0
        n_texts = sum(len(w.texts) for w in batch)
        # Counted before any answer goes out, so a caller that got its response sees its call
        # in the metrics (a scrape right after a request is consistent).
        if self.metrics is not None:
            self.metrics.observe_batch(n_texts, len(batch), int(enc.padded_tokens), seconds,
                                       [t0 - w.enqueued for w in batch])
        scores = {None: logits}
        for w in batch:  # each activation once over the whole call (rows are independent)
            if w.activation not in scores:
                scores[w.activation] = _tasks.activate(logits, w.activation)
        # One wake-up of each event loop per call, not one per request (each is a syscall and a
        # trip through the loop; a call answers dozens of requests).
        by_loop: dict = {}
        i = 0
        for w in batch:
            by_loop.setdefault(w.loop, []).append((w, scores[w.activation][i : i + len(w.texts)]))
            i += len(w.texts)
        for loop, done in by_loop.items():
            try:
                loop.call_soon_threadsafe(_set_results, done)
            except RuntimeError:  # that event loop is closed: nobody is waiting any more
                pass

    def _without_bad_inputs(self, batch: list[Work], error: Exception) -> list[Work]:
        """After encoding a whole call failed with `error`: encode each request alone, fail those
        that fail (a `BertfastError` there is the input's fault: `InputRejected`, 422), and return
        the others. When none fails alone, all fail with `error`."""
        if len(batch) == 1:
            bad = {batch[0]: error}
        else:
            bad = {}
            for w in batch:
                try:
                    self.clf.encode(w.texts)
                except Exception as e:
                    bad[w] = e
            if not bad:
                bad = dict.fromkeys(batch, error)
        for w, e in bad.items():
            _resolve(w, error=InputRejected(str(e)) if isinstance(e, BertfastError) else e)
        return [w for w in batch if w not in bad]

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self._queued)


def _set_results(done: list) -> None:
    """On the event loop: each request's logits to its future (skipping timed-out ones)."""
    for work, value in done:
        if not work.future.done():
            work.future.set_result(value)


def _resolve(work: Work, value=None, error: BaseException | None = None) -> None:
    def set_() -> None:
        if work.future.done():  # the request timed out and stopped waiting
            return
        if error is not None:
            work.future.set_exception(error)
        else:
            work.future.set_result(value)

    try:
        work.loop.call_soon_threadsafe(set_)
    except RuntimeError:  # the request's event loop is closed: nobody is waiting any more
        pass
