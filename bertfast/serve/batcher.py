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
"Texts" below counts inputs (a pair is one). The batcher returns logits; each route turns them
into its task's scores.

Why one thread: ONNX Runtime already spreads one call over every intra-op thread; two callers
would only split those threads and make smaller batches. Under load the queue fills while a
call runs, so the next call is bigger: batch size adapts to load with no tuning.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import BertfastError

log = logging.getLogger(__name__)


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
    """One request's inputs (texts or pairs) waiting for the model; `future` gets logits [n, n_labels]."""

    texts: list
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False  # set by a timed-out request: skipped if not yet taken


class DynamicBatcher:
    """Collects queued requests into model calls on one background thread.

    Args:
        clf: a loaded `Classifier` (only `encode` and `logits_from_encoded` are used).
        max_batch_texts: most texts per model call (one request is never split, so a call
            may exceed it when a single request is larger).
        max_wait_s: how long the oldest queued request may wait for company.
        max_queue: most texts queued; `submit` raises `QueueFull` beyond it.
        metrics: a `ServeMetrics` (or None).
    """

    def __init__(self, clf, max_batch_texts: int, max_wait_s: float, max_queue: int, metrics=None):
        self.clf = clf
        self.max_batch_texts = max_batch_texts
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: deque[Work] = deque()
        self._queued = 0  # texts in _queue, cancelled ones included until taken
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="bertfast-batcher", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Texts waiting for the model."""
        return self._queued

    @property
    def healthy(self) -> bool:
        """True while the thread runs and the server accepts work."""
        return self._thread.is_alive() and not self._closing

    def submit(self, texts: list) -> Work:
        """Queue `texts` (strings, or `(text, text_pair)` tuples for a pair export; call from the
        event loop); await `work.future` for their logits.

        Raises:
            QueueFull: the queue cannot take `len(texts)` more texts.
            ShuttingDown: `close` was called.
        """
        loop = asyncio.get_running_loop()
        work = Work(texts, loop.create_future(), loop)
        with self._cond:
            if self._closing:
                raise ShuttingDown()
            if self._queued + len(texts) > self.max_queue:
                raise QueueFull()
            self._queue.append(work)
            self._queued += len(texts)
            self._gauge()
            self._cond.notify()
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
        self._thread.join(timeout)

    # -- the batcher thread ------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _take(self) -> list[Work] | None:
        """Block for the next batch; None when closing and drained."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            # Wait for company until the OLDEST request's deadline: after a long model call the
            # queue is already full and past its deadline, so the next call starts at once.
            deadline = self._queue[0].enqueued + self.max_wait_s
            while self._queued < self.max_batch_texts and not self._closing:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, n = [], 0
            while self._queue and (not batch or n + len(self._queue[0].texts) <= self.max_batch_texts):
                w = self._queue.popleft()
                self._queued -= len(w.texts)
                if not w.cancelled:
                    batch.append(w)
                    n += len(w.texts)
            self._gauge()
            return batch

    def _run(self, batch: list[Work]) -> None:
        texts = [t for w in batch for t in w.texts]
        t0 = time.perf_counter()
        try:
            try:
                enc = self.clf.encode(texts)
            except Exception as e:  # an input no request's check could see: fail only its request
                batch = self._without_bad_inputs(batch, e)
                if not batch:
                    return
                texts = [t for w in batch for t in w.texts]
                enc = self.clf.encode(texts)
            logits = np.asarray(self.clf.logits_from_encoded(enc), dtype=np.float32)
        except Exception as e:  # a failed call fails its requests, never the thread
            log.exception("model call on %d inputs failed", len(texts))
            for w in batch:
                _resolve(w, error=e)
            return
        seconds = time.perf_counter() - t0
        # Counted before any answer goes out, so a caller that got its response sees its call
        # in the metrics (a scrape right after a request is consistent).
        if self.metrics is not None:
            self.metrics.observe_batch(len(texts), len(batch), int(enc.padded_tokens), seconds,
                                       [t0 - w.enqueued for w in batch])
        i = 0
        for w in batch:
            _resolve(w, value=logits[i : i + len(w.texts)])
            i += len(w.texts)

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
