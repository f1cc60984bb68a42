"""The timed steps of a benchmark, on the backends `harness.run_benchmark` loaded.

Per batch size: a warm-up (with an RSS sampler), end-to-end throughput rounds, then model-only
rounds on inputs tokenized up front, every round rotating the backend order; then batch-1
latency, input by input, rotating the order per block. A backend that fails is recorded
(`Run.fail`) and left out of what follows; the others go on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from .timing import RssSampler, interleave_order, interleaved_rounds, summarize, time_call

if TYPE_CHECKING:
    from .harness import Run

log = logging.getLogger("bertfast.bench")


def throughput_entry(times: list[float], n: int, tokens: np.ndarray, flops: float | None, peak: float | None) -> dict:
    """Texts/s (median and best repeat), tokens/s and, with the FLOPs, GFLOP/s and share of `peak`."""
    st = summarize(times)
    med = st["p50"]
    entry = {
        "seq_per_s": n / med,
        "seq_per_s_best": n / st["min"],
        "tokens_per_s": float(tokens.sum()) / med,
        "time": st,
        "runs": st["n"],
    }
    if flops:
        entry["gflops_per_s"] = flops / med / 1e9
        entry["fraction_of_peak"] = flops / med / 1e9 / peak if peak else None
    return entry


def _peak(run: Run, name: str, peaks: dict) -> float | None:
    """The measured peak of the backend's precision: int8 backends against int8, fp32 against fp32."""
    return peaks["peaks"].get(run.results[name].get("precision", "fp32"), {}).get("gflops")


def measure_batch_size(run: Run, B: int, peaks: dict) -> None:
    """Warm-up + RSS, end-to-end rounds, model-only rounds for one batch size."""
    _warm_up(run, B)
    _end_to_end(run, B, peaks)
    _model_only(run, B, peaks)


def _warm_up(run: Run, B: int) -> None:
    log.info("batch size %d: warm-up", B)
    order = np.argsort(-run.tokens, kind="stable")
    # The B longest texts make the largest batch (ORT arenas and allocators grow to it);
    # then B more, so every code path ran at least once before timing.
    warm = [run.sample[i] for i in order[:B]] + [run.sample[i] for i in order[B : 2 * B]]
    for name in list(run.live):
        try:
            run.live[name].prepare(B)
            with RssSampler() as s:
                run.live[name].run(warm)
            mem = run.results[name]["memory"]
            mem["run_peak_extra_mb"] = max(mem["run_peak_extra_mb"], s.extra_mb)
        except Exception as e:
            run.fail(name, e, f"warm-up at batch {B}")


def _end_to_end(run: Run, B: int, peaks: dict) -> None:
    """Texts in, outputs out, tokenization included; the largest batch size's outputs are kept
    for the quality figures."""
    live, sample, cfg = run.live, run.sample, run.cfg
    last: dict[str, np.ndarray] = {}

    def e2e(name):
        def fn():
            last[name] = live[name].run(sample)

        return fn

    log.info("batch size %d: end-to-end rounds (%s)", B, ", ".join(live))
    times = interleaved_rounds(
        {n: e2e(n) for n in live}, int(cfg.min_runs), float(cfg.min_seconds),
        on_error=lambda n, e: run.fail(n, e, f"end-to-end run at batch {B}"),
    )
    for name in list(live):
        entry = throughput_entry(times[name], len(sample), *run.work[name], _peak(run, name, peaks))
        try:
            entry["padding_ratio"] = live[name].padding()
        except Exception:  # padding is informative only
            entry["padding_ratio"] = None
        run.results[name]["throughput"][str(B)] = entry
        if B == max(cfg.batch_sizes):
            run.outputs[name] = last[name]


def _model_only(run: Run, B: int, peaks: dict) -> None:
    """The same batches tokenized up front, for the backends that can split the two; a failure
    here is recorded beside the backend's end-to-end numbers, which stand."""
    live, results, cfg = run.live, run.results, run.cfg
    encoded = {}
    for name in list(live):
        b = live[name]
        if hasattr(b, "encode") and hasattr(b, "run_encoded"):
            try:
                encoded[name] = b.encode(run.sample)
            except Exception as e:
                results[name]["model_only_error"] = f"{type(e).__name__}: {e}"
    if not encoded:
        return
    log.info("batch size %d: model-only rounds", B)

    def model_only(name):
        enc = encoded[name]
        return lambda: live[name].run_encoded(enc)

    failed: dict[str, str] = {}
    times = interleaved_rounds(
        {n: model_only(n) for n in encoded}, int(cfg.min_runs), float(cfg.min_seconds),
        on_error=lambda n, e: failed.__setitem__(n, f"{type(e).__name__}: {e}"),
    )
    for name in encoded:
        if name in failed:
            results[name]["model_only_error"] = failed[name]
            continue
        results[name]["model_only"][str(B)] = throughput_entry(times[name], len(run.sample), *run.work[name],
                                                               _peak(run, name, peaks))
    encoded.clear()


def measure_latency(run: Run) -> None:
    """Batch-1 latency: one input (text or pair) per call, in blocks, rotating the backend order per block.

    The sample is cut into `min_runs` blocks; in each round every backend times one block,
    after one untimed call that absorbs the switch from the previous backend (thread pools
    of another runtime may still be spinning, caches are cold). Rounds repeat over the blocks
    until every backend has at least `min_seconds` of timed calls.
    """
    live, lat_texts, cfg = run.live, run.lat_texts, run.cfg
    log.info("batch-1 latency on %d texts", len(lat_texts))
    for name in list(live):
        try:
            live[name].prepare(1)
            for t in lat_texts[:3]:
                live[name].run([t])
        except Exception as e:
            run.fail(name, e, "latency warm-up")
    k = max(1, min(int(cfg.min_runs), len(lat_texts)))
    blocks = [lat_texts[i::k] for i in range(k)]
    lat: dict[str, list[float]] = {n: [] for n in live}
    for r in range(100 * k):
        for name in interleave_order(list(live), r):
            try:
                b = live[name]
                b.run([blocks[r % k][0]])  # untimed: the switch from the previous backend
                for text in blocks[r % k]:
                    dt, _ = time_call(lambda t=text, b=b: b.run([t]))
                    lat[name].append(dt)
            except Exception as e:
                run.fail(name, e, "latency")
        if r + 1 >= k and all(sum(lat[n]) >= cfg.min_seconds for n in live):
            break
    for name in live:
        ms = [x * 1000 for x in lat[name]]
        run.results[name]["latency_ms"] = summarize(ms)
        run.results[name]["latency_samples_ms"] = [round(x, 3) for x in ms]  # for the distribution plot
