"""Timing primitives: summary statistics, interleaving order, run-until-enough loops, RSS sampling.

Pure Python + numpy so the statistics can be tested on fixed values.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def summarize(samples: Sequence[float]) -> dict:
    """Mean, std, min, max, coefficient of variation and p50/p90/p95/p99 of `samples`.

    Percentiles use linear interpolation between order statistics (numpy's default), so
    p50 of [1, 2, 3, 4] is 2.5. An empty input gives `{"n": 0}`.
    """
    x = np.asarray(list(samples), dtype=np.float64)
    if x.size == 0:
        return {"n": 0}
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    out = {
        "n": int(x.size),
        "mean": mean,
        "std": std,
        "cv": std / mean if mean > 0 else 0.0,
        "min": float(x.min()),
        "max": float(x.max()),
    }
    for p in PERCENTILES:
        out[f"p{p}"] = float(np.percentile(x, p))
    return out


def interleave_order(names: Sequence[str], round_index: int) -> list[str]:
    """Order of the backends in round `round_index`: a rotation by one place per round.

    Over `len(names)` rounds every backend runs once in every position, so slow drifts in
    machine load (another job starting, thermal throttling) hit all backends alike instead
    of whichever happens to run last.
    """
    names = list(names)
    if not names:
        return []
    k = round_index % len(names)
    return names[k:] + names[:k]


def time_call(fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds one call of `fn` takes (wall clock, `perf_counter`) and its result."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def time_slice(fn: Callable[[], object], seconds: float) -> list[float]:
    """Call `fn` back to back until at least `seconds` have passed (at least once); return each call's time."""
    times: list[float] = []
    total = 0.0
    while True:
        dt, _ = time_call(fn)
        times.append(dt)
        total += dt
        if total >= seconds:
            return times


def interleaved_rounds(
    fns: dict[str, Callable[[], object]],
    min_runs: int,
    min_seconds: float,
    on_error: Callable[[str, BaseException], None] | None = None,
    max_rounds: int = 1000,
) -> dict[str, list[float]]:
    """Time every function in rounds, rotating the order each round, until each has enough.

    Each round gives each function a time slice of `min_seconds / min_runs` (at least one
    call), so after `min_runs` rounds every function has at least `min_runs` samples and at
    least `min_seconds` of timed work, however fast or slow it is, and fast functions do not
    force slow ones into hundreds of repeats. A function that raises is reported through
    `on_error` and dropped from later rounds; the others go on.

    Returns:
        name -> list of per-call seconds.
    """
    times: dict[str, list[float]] = {n: [] for n in fns}
    alive = list(fns)
    slice_s = min_seconds / max(min_runs, 1)
    r = 0
    while alive and r < max_rounds:
        enough = all(len(times[n]) >= min_runs and sum(times[n]) >= min_seconds for n in alive)
        if enough:
            break
        for name in interleave_order(alive, r):
            try:
                times[name].extend(time_slice(fns[name], slice_s))
            except Exception as e:  # a failing backend must not stop the others
                alive.remove(name)
                if on_error is None:
                    raise
                on_error(name, e)
        r += 1
    return times


class RssSampler:
    """Sample this process's resident set size in a thread; `peak` is the highest reading.

    Used only around un-timed runs: polling costs a little CPU, which must not leak into
    timings.
    """

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.start_rss = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def extra_mb(self) -> float:
        """Peak RSS above the reading at start, in MiB."""
        return (self.peak - self.start_rss) / 2**20


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20
