"""`run_benchmark(cfg) -> Report`: every backend on the same texts, same threads, interleaved.

Order of work:
1. resolve TARGET (export folder or model folder, its task and whether it takes text pairs), the
   data (texts or `(text, text_pair)` tuples), the max length, the device (`target`);
2. record the environment, the workload (token counts, FLOPs) and the peak matmul rates (roofline);
3. load each backend (load time and RSS delta recorded; a failure is recorded, not fatal);
4. per batch size: warm-up (with an RSS sampler), end-to-end throughput rounds, then
   model-only rounds, every round rotating the backend order (`measure`);
5. batch-1 latency, text by text, rotating the backend order per block (`measure`);
6. quality vs `torch` in the task's terms (agreement, score difference) and the task's metric
   vs labels (`quality`: accuracy, micro-F1 or Pearson);
7. write results.json / results.md / plot.png (`report`), every path as `paths.display_path` shows it.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import tasks as _tasks
from ..errors import BertfastError
from ..hardware import cpu_flags
from ..runtime.providers import PROVIDERS
from .backends import BackendContext, BackendSkipped, describe, expand_names, make_backend
from .config import BenchConfig
from .measure import measure_batch_size, measure_latency
from .paths import display_path, scrub_paths
from .quality import quality
from .report import Report
from .roofline import measure_peaks, total_flops
from .target import Target, load_data, resolve_device, resolve_target, token_counts
from .timing import rss_mb, time_call

log = logging.getLogger("bertfast.bench")


@dataclass
class Run:
    """What one benchmark works on, filled in step by step by `run_benchmark`."""

    cfg: BenchConfig
    target: Target
    device: str
    inputs: list  # texts, or (text, text_pair) tuples
    labels: list | None
    source: str  # the data as reports show it
    sample_idx: list[int]  # the throughput sample's rows (quality's too)
    sample: list
    lat_texts: list  # timed one by one at batch 1
    warnings: list[str]
    tokens: np.ndarray | None = None  # per sample text, after truncation
    flops: float | None = None  # of the whole sample
    results: dict[str, dict] = field(default_factory=dict)  # per backend: its report entry
    live: dict[str, object] = field(default_factory=dict)  # loaded backends not failed (yet)
    work: dict[str, tuple] = field(default_factory=dict)  # per backend: (tokens per text it runs, sample FLOPs)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # per backend: its outputs on the sample

    @property
    def max_length(self) -> int:
        return int(self.target.max_length)

    @property
    def pair(self) -> bool:
        return bool(self.inputs) and isinstance(self.inputs[0], (tuple, list))

    def fail(self, name: str, e: BaseException, stage: str) -> None:
        """Record that backend `name` failed at `stage` and drop it; the others go on."""
        self.results[name]["status"] = "failed"
        self.results[name]["error"] = f"{stage}: {type(e).__name__}: {e}"
        log.warning("backend %s failed during %s: %s", name, stage, e)
        self.close(name)

    def close(self, name: str) -> None:
        backend = self.live.pop(name, None)
        if backend is not None:
            try:
                backend.close()
            except Exception:  # closing a broken backend may fail too; nothing to add
                pass


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
    run = _start(cfg)
    env = _environment(run)
    workload = _workload(run)
    peaks = {"peaks": {}, "kernels": [], "skipped": True}
    if cfg.peak_seconds > 0:
        log.info("measuring peak matmul rates (%d threads)...", cfg.threads)
        peaks = measure_peaks(cfg.threads, seconds=cfg.peak_seconds, quick=cfg.preset == "quick",
                              cuda=PROVIDERS[run.device].gpu)
    names = _load_backends(run)
    for B in cfg.batch_sizes:
        measure_batch_size(run, B, peaks)
    if run.lat_texts:
        measure_latency(run)
    for name in list(run.live):
        run.close(name)
    t = run.target
    quality(run.results, run.outputs, run.sample_idx, run.labels, t.id2label, run.warnings, task=t.task,
            activation=t.activation, thresholds=t.thresholds)
    _busy_warning(run)
    return _write(run, env, workload, peaks, names, t_start)


def _start(cfg: BenchConfig) -> Run:
    """TARGET, the data and its seeded samples, torch's threads, then the device."""
    target = resolve_target(cfg, cfg.model_dir)
    L = int(target.max_length)
    if L > target.model_max_length:
        raise BertfastError(f"--max-length {L} exceeds the model's limit of {target.model_max_length} tokens.")
    warnings: list[str] = []
    inputs, labels, source = load_data(cfg, target, warnings)  # inputs: str, or (text, text_pair) tuples
    rng = random.Random(cfg.seed)
    sample_idx = _sample(len(inputs), int(cfg.max_texts), rng)
    lat_idx = _sample(len(inputs), int(cfg.latency_texts), rng)

    from ..errors import require

    torch = require("torch", "train")  # set threads before any backend exists
    torch.set_num_threads(cfg.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable once per process, before parallel work
        pass
    device = resolve_device(cfg.device)
    return Run(cfg, target, device, inputs, labels, source, sample_idx, sample=[inputs[i] for i in sample_idx],
               lat_texts=[inputs[i] for i in lat_idx], warnings=warnings)


def _environment(run: Run) -> dict:
    """The machine and library versions; a warning when the machine is already busy."""
    from .env import environment

    env = environment(run.cfg.threads)
    env["device"] = run.device
    load1 = (env.get("loadavg_start") or [0])[0]
    if load1 >= 0.5 * env["usable_cpus"]:
        run.warnings.append(
            f"the machine was busy at start (1-min load average {load1:.1f} on {env['usable_cpus']} usable CPUs): "
            "absolute numbers are low; the side-by-side ratios are less affected, but rerun on a quiet machine."
        )
    return env


def _workload(run: Run) -> dict:
    """What is replayed: the data, its token counts (kept on `run` for the measurements), the
    model's shape and work per text, the task."""
    cfg, target, L, sample = run.cfg, run.target, run.max_length, run.sample
    run.tokens = tokens = token_counts(target, sample, L)
    tokens_all = token_counts(target, run.inputs, L) if len(run.inputs) <= 20000 else tokens
    shape = target.shape
    run.flops = total_flops(shape, tokens) if shape else None
    workload = {
        "name": cfg.name,
        "target": display_path(cfg.target),
        "export_dir": display_path(target.export_dir),
        "model_dir": display_path(target.model_dir),
        "data": display_path(run.source),
        "n_data_texts": len(run.inputs),
        "n_texts": len(sample),
        "n_latency_texts": len(run.lat_texts),
        "max_length": L,
        "device": run.device,
        "tokens": {
            "mean": float(tokens.mean()), "median": float(np.median(tokens)),
            "p90": float(np.percentile(tokens, 90)), "max": int(tokens.max()),
            "truncated_share": float((tokens_all >= L).mean()),
        },
        "model": shape.__dict__ if shape else None,
        "flops_per_text_mean": run.flops / len(sample) if run.flops else None,
        "flops_per_text_at_max_length": None,
        "task": target.task,
        "pair": run.pair,
        "metric": _tasks.get(target.task).primary,
        "activation": target.activation,
        "thresholds": target.thresholds,
        "labels_known": run.labels is not None,
        "default_variant": None,
        "note": cfg.note,
    }
    if target.manifest is not None:
        try:
            workload["default_variant"] = target.manifest.pick_variant(run.device)
        except BertfastError:
            pass
    if shape:
        from .roofline import flops_per_text

        workload["flops_per_text_at_max_length"] = flops_per_text(shape, L)
    return workload


def _load_backends(run: Run) -> list[str]:
    """Load every requested backend (load time and RSS delta recorded); the names in report order.
    A backend that cannot run here is skipped, one that fails is recorded: neither stops the run."""
    cfg, target = run.cfg, run.target
    manifest = target.manifest
    ctx = BackendContext(
        model_dir=target.model_dir, export_dir=target.export_dir, max_length=run.max_length, threads=cfg.threads,
        device=run.device, cache_dir=Path(cfg.cache_dir or Path.home() / ".cache" / "bertfast" / "bench"),
        optimum_per_channel=cfg.optimum_per_channel, cpu_flags=cpu_flags(),
        variants=manifest.variants if manifest is not None else {},
        pair=run.pair, export_max_length=manifest.max_length if manifest is not None else None,
    )
    names = expand_names(cfg.backends, ctx.variants, run.device, manifest.default if manifest is not None else None)
    _preimport()  # so the first backend's RSS delta is its model, not library code
    for name in names:
        result = run.results[name] = {"name": name, "status": "ok", "error": None, "throughput": {}, "model_only": {}}
        try:
            backend = make_backend(name, ctx)
            result.update(describe(backend))
            before = rss_mb()
            load_s, _ = time_call(backend.load)
            result.update(describe(backend))
            result["load_s"] = load_s
            result["memory"] = {"load_rss_mb": rss_mb() - before, "run_peak_extra_mb": 0.0}
            run.live[name] = backend
            run.work[name] = _backend_work(backend, run.tokens, run.flops, target.shape, run.max_length)
            log.info("loaded %s in %.1f s", name, load_s)
        except BackendSkipped as e:
            result.update(status="skipped", error=str(e))
            log.info("skipping %s: %s", name, e)
        except Exception as e:
            run.fail(name, e, "load")
    return names


def _backend_work(backend, tokens: np.ndarray, flops: float | None, shape, L: int) -> tuple:
    """(tokens per text, sample FLOPs) a backend really runs: a bertfast export's chosen window
    shorter than the benchmark's max length runs fewer tokens, and its tokens/s and share of
    peak count those, not the ones it never computed."""
    win = ((getattr(backend, "info", None) or {}).get("window") or {}).get("max_length")
    if not win or win >= L:
        return tokens, flops
    cut = np.minimum(tokens, win)
    return cut, (total_flops(shape, cut) if shape else None)


def _busy_warning(run: Run) -> None:
    """Warn when repeats varied more than `busy_cv`: another process was competing."""
    cv = run.cfg.busy_cv
    noisy = [
        f"{name}@{B} ({100 * t['time']['cv']:.0f}%)"
        for name, r in run.results.items() for B, t in r["throughput"].items()
        if t.get("time", {}).get("cv", 0) > cv
    ]
    if noisy:
        run.warnings.append(
            f"the machine seemed busy: repeats varied by more than {100 * cv:.0f}% (coefficient of "
            f"variation) for {len(noisy)} measurement(s): {', '.join(noisy)}. Rerun on a quiet machine "
            "before quoting absolute numbers."
        )


def _write(run: Run, env: dict, workload: dict, peaks: dict, names: list[str], t_start: float) -> Report:
    """The report (every path as `paths.display_path` shows it), written to `--out` when set."""
    import resource

    cfg = run.cfg
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
        "backends": [run.results[n] for n in names],
        "warnings": run.warnings,
    }
    report = Report(scrub_paths(data))  # paths quoted in errors/warnings too: never the machine's layout
    if cfg.out is not None:
        report.write(cfg.out, plot=cfg.plot)
    return report
