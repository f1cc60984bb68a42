"""`run_benchmark(cfg) -> Report`: every backend on the same texts, same threads, interleaved.

Order of work:
1. resolve TARGET (export folder or model folder, its task and whether it takes text pairs), the
   data (texts or `(text, text_pair)` tuples), the max length, the device (`target`);
2. record the environment and measure the peak matmul rates (roofline);
3. load each backend (load time and RSS delta recorded; a failure is recorded, not fatal);
4. per batch size: warm-up (with an RSS sampler), end-to-end throughput rounds, then
   model-only rounds, every round rotating the backend order;
5. batch-1 latency, text by text, rotating the backend order per text;
6. quality vs `torch` in the task's terms (agreement, score difference) and the task's metric
   vs labels (`quality`: accuracy, micro-F1 or Pearson);
7. write results.json / results.md / plot.png (`report`), every path as `paths.display_path` shows it.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

import numpy as np

from .. import tasks as _tasks
from ..errors import BertfastError
from ..hardware import cpu_flags
from ..runtime.providers import PROVIDERS
from .backends import BackendContext, BackendSkipped, describe, expand_names, make_backend
from .config import BenchConfig
from .paths import display_path, scrub_paths
from .quality import quality
from .report import Report
from .roofline import measure_peaks, total_flops
from .target import load_data, resolve_device, resolve_target, token_counts
from .timing import RssSampler, interleave_order, interleaved_rounds, rss_mb, summarize, time_call

log = logging.getLogger("bertfast.bench")


def _preimport() -> None:
    import importlib

    for mod in ("transformers", "transformers.models.bert.modeling_bert", "onnxruntime",
                "optimum.onnxruntime", "bertfast.runtime.classifier"):
        try:
            importlib.import_module(mod)
        except Exception:  # a missing optional library is reported by its backend
            pass


def _sample(n: int, k: int, rng: random.Random) -> list[int]:
    """`k` of `n` indices, seeded, kept in the original order (the data's own order and mix)."""
    return list(range(n)) if k >= n else sorted(rng.sample(range(n), k))


def run_benchmark(cfg: BenchConfig) -> Report:
    """Benchmark every requested backend on the same texts and threads; write the reports.

    Args:
        cfg: the benchmark settings (see `BenchConfig`).

    Returns:
        The `Report`; `report.paths` lists the files written under `cfg.out`.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers run 1 thread for all backends
    t_start = time.time()
    target = resolve_target(cfg, cfg.model_dir)
    L = int(target.max_length)
    if L > target.model_max_length:
        raise BertfastError(f"--max-length {L} exceeds the model's limit of {target.model_max_length} tokens.")
    warnings: list[str] = []
    texts, labels, source = load_data(cfg, target, warnings)  # texts: str, or (text, text_pair) tuples
    rng = random.Random(cfg.seed)
    sample_idx = _sample(len(texts), int(cfg.max_texts), rng)
    lat_idx = _sample(len(texts), int(cfg.latency_texts), rng)
    sample = [texts[i] for i in sample_idx]
    lat_texts = [texts[i] for i in lat_idx]
    pair = bool(texts) and isinstance(texts[0], (tuple, list))

    from ..errors import require

    torch = require("torch", "train")  # set threads before any backend exists
    torch.set_num_threads(cfg.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable once per process, before parallel work
        pass
    device = resolve_device(cfg.device)

    from .env import environment

    env = environment(cfg.threads)
    env["device"] = device
    load1 = (env.get("loadavg_start") or [0])[0]
    if load1 >= 0.5 * env["usable_cpus"]:
        warnings.append(
            f"the machine was busy at start (1-min load average {load1:.1f} on {env['usable_cpus']} usable CPUs): "
            "absolute numbers are low; the side-by-side ratios are less affected, but rerun on a quiet machine."
        )

    tokens = token_counts(target, sample, L)
    tokens_all = token_counts(target, texts, L) if len(texts) <= 20000 else tokens
    shape = target.shape
    sample_flops = total_flops(shape, tokens) if shape else None
    workload = {
        "name": cfg.name,
        "target": display_path(cfg.target),
        "export_dir": display_path(target.export_dir),
        "model_dir": display_path(target.model_dir),
        "data": display_path(source),
        "n_data_texts": len(texts),
        "n_texts": len(sample),
        "n_latency_texts": len(lat_texts),
        "max_length": L,
        "device": device,
        "tokens": {
            "mean": float(tokens.mean()), "median": float(np.median(tokens)),
            "p90": float(np.percentile(tokens, 90)), "max": int(tokens.max()),
            "truncated_share": float((tokens_all >= L).mean()),
        },
        "model": shape.__dict__ if shape else None,
        "flops_per_text_mean": sample_flops / len(sample) if sample_flops else None,
        "flops_per_text_at_max_length": None,
        "task": target.task,
        "pair": pair,
        "metric": _tasks.get(target.task).primary,
        "activation": target.activation,
        "thresholds": target.thresholds,
        "labels_known": labels is not None,
        "default_variant": None,
        "note": cfg.note,
    }
    if target.manifest is not None:
        try:
            workload["default_variant"] = target.manifest.pick_variant(device)
        except BertfastError:
            pass
    if shape:
        from .roofline import flops_per_text

        workload["flops_per_text_at_max_length"] = flops_per_text(shape, L)

    peaks = {"peaks": {}, "kernels": [], "skipped": True}
    if cfg.peak_seconds > 0:
        log.info("measuring peak matmul rates (%d threads)...", cfg.threads)
        peaks = measure_peaks(cfg.threads, seconds=cfg.peak_seconds, quick=cfg.preset == "quick", cuda=PROVIDERS[device].gpu)

    ctx = BackendContext(
        model_dir=target.model_dir, export_dir=target.export_dir, max_length=L, threads=cfg.threads, device=device,
        cache_dir=Path(cfg.cache_dir or Path.home() / ".cache" / "bertfast" / "bench"),
        optimum_per_channel=cfg.optimum_per_channel, cpu_flags=cpu_flags(),
        variants=target.manifest.variants if target.manifest is not None else {},
        pair=pair, export_max_length=target.manifest.max_length if target.manifest is not None else None,
    )
    names = expand_names(cfg.backends, ctx.variants, device,
                         target.manifest.default if target.manifest is not None else None)
    _preimport()  # so the first backend's RSS delta is its model, not library code
    results: dict[str, dict] = {}
    live: dict[str, object] = {}

    def fail(name: str, e: BaseException, stage: str) -> None:
        results[name]["status"] = "failed"
        results[name]["error"] = f"{stage}: {type(e).__name__}: {e}"
        log.warning("backend %s failed during %s: %s", name, stage, e)
        backend = live.pop(name, None)
        if backend is not None:
            try:
                backend.close()
            except Exception:  # closing a broken backend may fail too; nothing to add
                pass

    work: dict[str, tuple] = {}  # per backend: (tokens per text it runs, FLOPs of the sample)
    for name in names:
        results[name] = {"name": name, "status": "ok", "error": None, "throughput": {}, "model_only": {}}
        try:
            backend = make_backend(name, ctx)
            results[name].update(describe(backend))
            before = rss_mb()
            load_s, _ = time_call(backend.load)
            results[name].update(describe(backend))
            results[name]["load_s"] = load_s
            results[name]["memory"] = {"load_rss_mb": rss_mb() - before, "run_peak_extra_mb": 0.0}
            live[name] = backend
            work[name] = _backend_work(backend, tokens, sample_flops, shape, L)
            log.info("loaded %s in %.1f s", name, load_s)
        except BackendSkipped as e:
            results[name].update(status="skipped", error=str(e))
            log.info("skipping %s: %s", name, e)
        except Exception as e:
            fail(name, e, "load")

    outputs: dict[str, np.ndarray] = {}
    for B in cfg.batch_sizes:
        _measure_batch_size(cfg, B, live, results, outputs, sample, tokens, work, peaks, fail)
    if lat_texts:
        _measure_latency(cfg, live, results, lat_texts, fail)
    for backend in list(live.values()):
        try:
            backend.close()
        except Exception:  # pragma: no cover
            pass

    quality(results, outputs, sample_idx, labels, target.id2label, warnings, task=target.task,
            activation=target.activation, thresholds=target.thresholds)
    noisy = [
        f"{name}@{B} ({100 * t['time']['cv']:.0f}%)"
        for name, r in results.items() for B, t in r["throughput"].items()
        if t.get("time", {}).get("cv", 0) > cfg.busy_cv
    ]
    if noisy:
        warnings.append(
            f"the machine seemed busy: repeats varied by more than {100 * cfg.busy_cv:.0f}% (coefficient of "
            f"variation) for {len(noisy)} measurement(s): {', '.join(noisy)}. Rerun on a quiet machine "
            "before quoting absolute numbers."
        )
    import resource

    env["peak_rss_mb_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    env["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    data = {
        "format": "bertfast-bench",
        "format_version": 1,
        "name": cfg.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": time.time() - t_start,
        "config": cfg.to_dict(),
        "environment": env,
        "workload": workload,
        "roofline": peaks,
        "backends": [results[n] for n in names],
        "warnings": warnings,
    }
    report = Report(scrub_paths(data))  # paths quoted in errors/warnings too: never the machine's layout
    if cfg.out is not None:
        report.write(cfg.out, plot=cfg.plot)
    return report


def _backend_work(backend, tokens: np.ndarray, flops: float | None, shape, L: int) -> tuple:
    """(tokens per text, sample FLOPs) a backend really runs: a bertfast export's chosen window
    shorter than the benchmark's max length runs fewer tokens, and its tokens/s and share of
    peak count those, not the ones it never computed."""
    win = ((getattr(backend, "info", None) or {}).get("window") or {}).get("max_length")
    if not win or win >= L:
        return tokens, flops
    from .roofline import total_flops

    cut = np.minimum(tokens, win)
    return cut, (total_flops(shape, cut) if shape else None)


def _throughput_entry(times: list[float], n: int, tokens: np.ndarray, flops: float | None, peak: float | None) -> dict:
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


def _measure_batch_size(cfg, B, live, results, outputs, sample, tokens, work, peaks, fail) -> None:
    """Warm-up + RSS, end-to-end rounds, model-only rounds for one batch size."""
    log.info("batch size %d: warm-up", B)
    order = np.argsort(-tokens, kind="stable")
    # The B longest texts make the largest batch (ORT arenas and allocators grow to it);
    # then B more, so every code path ran at least once before timing.
    warm = [sample[i] for i in order[:B]] + [sample[i] for i in order[B : 2 * B]]
    for name in list(live):
        try:
            live[name].prepare(B)
            with RssSampler() as s:
                live[name].run(warm)
            mem = results[name]["memory"]
            mem["run_peak_extra_mb"] = max(mem["run_peak_extra_mb"], s.extra_mb)
        except Exception as e:
            fail(name, e, f"warm-up at batch {B}")
    last: dict[str, np.ndarray] = {}

    def e2e(name):
        def fn():
            last[name] = live[name].run(sample)

        return fn

    log.info("batch size %d: end-to-end rounds (%s)", B, ", ".join(live))
    times = interleaved_rounds(
        {n: e2e(n) for n in live}, int(cfg.min_runs), float(cfg.min_seconds),
        on_error=lambda n, e: fail(n, e, f"end-to-end run at batch {B}"),
    )
    for name in list(live):
        r = results[name]
        peak = peaks["peaks"].get(r.get("precision", "fp32"), {}).get("gflops")
        entry = _throughput_entry(times[name], len(sample), *work[name], peak)
        try:
            entry["padding_ratio"] = live[name].padding()
        except Exception:  # padding is informative only
            entry["padding_ratio"] = None
        r["throughput"][str(B)] = entry
        if B == max(cfg.batch_sizes):
            outputs[name] = last[name]
    encoded = {}
    for name in list(live):
        b = live[name]
        if hasattr(b, "encode") and hasattr(b, "run_encoded"):
            try:
                encoded[name] = b.encode(sample)
            except Exception as e:
                results[name]["model_only_error"] = f"{type(e).__name__}: {e}"
    if not encoded:
        return
    log.info("batch size %d: model-only rounds", B)

    def model_only(name):
        enc = encoded[name]
        return lambda: live[name].run_encoded(enc)

    failed_mo: dict[str, str] = {}
    mo_times = interleaved_rounds(
        {n: model_only(n) for n in encoded}, int(cfg.min_runs), float(cfg.min_seconds),
        on_error=lambda n, e: failed_mo.__setitem__(n, f"{type(e).__name__}: {e}"),
    )
    for name in encoded:
        if name in failed_mo:
            results[name]["model_only_error"] = failed_mo[name]
            continue
        peak = peaks["peaks"].get(results[name].get("precision", "fp32"), {}).get("gflops")
        results[name]["model_only"][str(B)] = _throughput_entry(mo_times[name], len(sample), *work[name], peak)
    encoded.clear()


def _measure_latency(cfg, live, results, lat_texts, fail) -> None:
    """Batch-1 latency: one input (text or pair) per call, in blocks, rotating the backend order per block.

    The sample is cut into `min_runs` blocks; in each round every backend times one block,
    after one untimed call that absorbs the switch from the previous backend (thread pools
    of another runtime may still be spinning, caches are cold). Rounds repeat over the blocks
    until every backend has at least `min_seconds` of timed calls.
    """
    log.info("batch-1 latency on %d texts", len(lat_texts))
    for name in list(live):
        try:
            live[name].prepare(1)
            for t in lat_texts[:3]:
                live[name].run([t])
        except Exception as e:
            fail(name, e, "latency warm-up")
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
                fail(name, e, "latency")
        if r + 1 >= k and all(sum(lat[n]) >= cfg.min_seconds for n in live):
            break
    for name in live:
        ms = [x * 1000 for x in lat[name]]
        results[name]["latency_ms"] = summarize(ms)
        results[name]["latency_samples_ms"] = [round(x, 3) for x in ms]  # for the distribution plot
