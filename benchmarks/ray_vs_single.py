"""Rows/s and peak memory of `bertfast predict --engine ray` vs single-process `bertfast predict`.

Both engines classify the same rows, with the same export variant, as CLI subprocesses on this
machine:

- single: `bertfast predict EXPORT --input all.parquet --output single.parquet` (the rows of the
  part files concatenated into one file; one process, ONNX Runtime on all usable CPUs);
- ray: `bertfast predict EXPORT --input parts/ --output ray/ --engine ray` (a local Ray instance
  started and shut down by the command, the default pool for this machine unless `--workers`).

What is timed: the whole command, from process start to exit: Python imports, model loading,
reading, tokenization, inference and writing, plus, for Ray, starting the local cluster and its
workers and shutting it down. That is what a user waits for. Ray's own figure without cluster
start/stop (from the output's `_SUCCESS`) is reported beside it, so the fixed start-up cost can
be told apart from the per-row overhead; more `--rows` amortize the former.

Peak memory: the largest sum of PSS (proportional set size: shared pages split among the
processes that map them, so the Ray object store and shared libraries are not counted once per
process) over the command's process tree (for Ray: driver, GCS, raylet, workers), sampled every
`--sample-every` seconds. Labels of the two outputs are compared by row id.

    python benchmarks/ray_vs_single.py --export exports/quickstart-minilm-bbc --rows 20000 --files 8

writes `results.json` and `results.md` under `--out`. The numbers depend on the CPU count: on a
2-core machine Ray keeps a core for its own I/O tasks and pays its start-up; Ray is for more
machines than one, not for beating one process on one small machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--export", required=True, type=Path, help="export folder (bertfast export)")
    ap.add_argument("--texts", type=Path, help="JSONL with a `text` field; default: the export's eval.jsonl")
    ap.add_argument("--rows", type=int, default=20000, help="rows to classify (texts repeated to this count)")
    ap.add_argument("--files", type=int, default=8, help="Parquet part files the rows are split into")
    ap.add_argument("--variant", help="export variant for both engines; default: the export's CPU default")
    ap.add_argument("--workers", type=int, help="Ray actor pool size; default: bertfast's plan for this machine")
    ap.add_argument("--repeats", type=int, default=1, help="runs per engine; the median is reported")
    ap.add_argument("--sample-every", type=float, default=0.2, help="seconds between memory samples")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ray-vs-single"), help="where results go")
    ap.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)

    texts = _texts(args.texts or args.export / "eval.jsonl", args.rows)
    with tempfile.TemporaryDirectory(prefix="bertfast-ray-bench-") as tmp:
        work = args.workdir or Path(tmp)
        parts, whole = _write_inputs(work, texts, args.files)
        base = [sys.executable, "-m", "bertfast.cli", "predict", str(args.export), "--no-progress", "--device", "cpu"]
        if args.variant:
            base += ["--variant", args.variant]
        runs: dict[str, list[dict]] = {"single": [], "ray": []}
        for i in range(args.repeats):
            out = work / f"single-{i}.parquet"
            runs["single"].append(_run(base + ["--input", str(whole), "--output", str(out)], args.sample_every))
            runs["single"][-1]["output"] = _shown(out)
            out = work / f"ray-{i}"
            cmd = base + ["--input", str(parts), "--output", str(out), "--engine", "ray"]
            if args.workers:
                cmd += ["--workers", str(args.workers)]
            runs["ray"].append(_run(cmd, args.sample_every))
            runs["ray"][-1]["output"] = _shown(out)
            done = json.loads((out / "_SUCCESS").read_text())
            runs["ray"][-1]["ray_seconds_without_cluster_start"] = done["seconds"]
            runs["ray"][-1]["plan"] = done["plan"]
        agreement = _agreement(work / "single-0.parquet", work / "ray-0")

    report = _report(args, runs, agreement)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "results.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


def _shown(arg) -> str:
    """An argument as the report records it: absolute paths never (they name this machine's folders)."""
    from bertfast.bench.paths import display_path

    return display_path(arg) if os.path.isabs(str(arg)) else str(arg)


def _texts(path: Path, rows: int) -> list[str]:
    base = [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    if not base:
        raise SystemExit(f"{path} holds no texts")
    return [base[i % len(base)] for i in range(rows)]


def _write_inputs(work: Path, texts: list[str], files: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = work / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    step = -(-len(texts) // files)
    for k in range(files):
        ids = list(range(k * step, min((k + 1) * step, len(texts))))
        pq.write_table(pa.table({"id": ids, "text": [texts[i] for i in ids]}), parts / f"part-{k:03d}.parquet")
    whole = work / "all.parquet"
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), whole)
    return parts, whole


def _run(cmd: list[str], every: float) -> dict:
    """Run `cmd`, return wall seconds and the peak PSS of its process tree."""
    import psutil

    # A local, throw-away Ray instance: no auth token written under ~/.ray, no usage stats.
    env = os.environ | {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"bytes": 0, "processes": 0}
    stop = threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            total, n = 0, 0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for p in tree:
                try:
                    mem = p.memory_full_info()
                    total += getattr(mem, "pss", mem.rss)
                    n += 1
                except psutil.Error:
                    pass
            if total > peak["bytes"]:
                peak.update(bytes=total, processes=n)
            stop.wait(every)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    log, _ = proc.communicate()
    secs = time.perf_counter() - t0
    stop.set()
    th.join()
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{log[-3000:]}")
    return {"seconds": round(secs, 3), "peak_pss_mib": round(peak["bytes"] / 2**20, 1),
            "processes_at_peak": peak["processes"], "command": " ".join(_shown(a) for a in cmd)}


def _agreement(single: Path, ray_dir: Path) -> float:
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    ref = dict(zip(*pq.read_table(single, columns=["id", "label"]).to_pydict().values()))
    got = pads.dataset(str(ray_dir), format="parquet").to_table(columns=["id", "label"]).to_pydict()
    same = sum(ref[i] == lab for i, lab in zip(got["id"], got["label"]))
    if len(got["id"]) != len(ref):
        raise SystemExit(f"row counts differ: single {len(ref)}, ray {len(got['id'])}")
    return same / len(ref)


def _report(args, runs: dict, agreement: float) -> dict:
    import importlib.metadata as md

    from bertfast.utils import usable_cpus

    out = {"rows": args.rows, "files": args.files, "export": _shown(args.export), "variant": args.variant,
           "label_agreement": agreement, "engines": {}}
    for name, rs in runs.items():
        secs = statistics.median(r["seconds"] for r in rs)
        out["engines"][name] = {
            "seconds_median": secs, "rows_per_second": round(args.rows / secs, 1),
            "peak_pss_mib_max": max(r["peak_pss_mib"] for r in rs), "runs": rs,
        }
    ray_inner = statistics.median(r["ray_seconds_without_cluster_start"] for r in runs["ray"])
    out["engines"]["ray"]["rows_per_second_without_cluster_start"] = round(args.rows / ray_inner, 1)
    versions = {}
    for pkg in ("bertfast", "ray", "onnxruntime", "pyarrow"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    out["environment"] = {"cpus_usable": usable_cpus(), "cpu": platform.processor() or platform.machine(),
                          "python": platform.python_version(), "versions": versions,
                          "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    return out


def _markdown(r: dict) -> str:
    s, y = r["engines"]["single"], r["engines"]["ray"]
    plan = y["runs"][0]["plan"]
    lines = [
        f"# Ray vs single process: {r['rows']} rows in {r['files']} Parquet files, {r['environment']['cpus_usable']} CPUs",
        "",
        "| engine | wall s (whole command) | rows/s | peak memory (PSS, MiB) |",
        "|---|---:|---:|---:|",
        f"| single process | {s['seconds_median']:.1f} | {s['rows_per_second']:.0f} | {s['peak_pss_mib_max']:.0f} |",
        f"| ray ({plan['workers']} workers x {plan['threads']} thread) | {y['seconds_median']:.1f} | "
        f"{y['rows_per_second']:.0f} | {y['peak_pss_mib_max']:.0f} |",
        "",
        f"Ray without starting/stopping its local cluster: {y['rows_per_second_without_cluster_start']:.0f} rows/s. "
        f"Label agreement: {100 * r['label_agreement']:.2f}%. Versions: "
        + ", ".join(f"{k} {v}" for k, v in r["environment"]["versions"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
