#!/usr/bin/env python
"""`bertfast predict` on a large file: rows/s and peak memory stay bounded as rows grow.

Builds a CSV of N rows by cycling real short texts (BBC News headlines and article openings
cut at 200 characters, so lengths vary from ~5 to ~50 tokens), runs `bertfast predict` as a user would (a child process), and records wall
time, rows/s and the child's peak RSS for two sizes: memory must not grow with the row count.

    python benchmarks/predict_scale.py --export exports/quickstart-minilm-bbc --rows 10000,100000
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_input(path: Path, n: int) -> None:
    from bertfast.training.data import read_labeled

    heads = read_labeled("bbc-news-headlines").texts
    bodies = [t.split("\n", 1)[-1].strip()[:200] for t in read_labeled("bbc-news").texts]  # ~40 tokens
    pool = [x for pair in zip(heads, bodies) for x in pair]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for i in range(n):
            w.writerow([i, pool[i % len(pool)]])


def run(export: Path, inp: Path, out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "bertfast.cli", "predict", str(export), "--input", str(inp),
                        "--output", str(out), "--force", "--no-progress"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"predict failed: {r.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"wall_seconds": wall, "peak_rss_mb": max(peak, before) / 1024}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", type=Path, default=ROOT / "exports/quickstart-minilm-bbc")
    p.add_argument("--rows", default="10000,100000", help="comma list of row counts")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/predict-scale")
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(int(x) for x in args.rows.split(",")):
            inp, out = Path(tmp) / f"in-{n}.csv", Path(tmp) / f"out-{n}.csv"
            make_input(inp, n)
            # ru_maxrss of children is a high-water mark over all children: run the smallest first.
            r = run(args.export, inp, out)
            with open(out, newline="") as f:
                rows_out = sum(1 for _ in csv.reader(f)) - 1  # texts may hold quoted newlines
            results.append({"rows": n, "rows_written": rows_out, **r, "rows_per_s": n / r["wall_seconds"]})
            print(results[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    from bertfast.utils import library_versions, usable_cpus

    manifest = json.loads((args.export / "bertfast.json").read_text())
    from bertfast.bench.paths import display_path

    data = {"export": display_path(args.export), "variant": manifest["default"]["cpu"], "cpus": usable_cpus(),
            "versions": library_versions(), "results": results,
            "note": "wall time includes process start, model load and writing the CSV; peak RSS is the "
                    "child process high-water mark (runs go smallest first, so growth would show)."}
    (args.out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"# `bertfast predict` at scale ({data['variant']}, {data['cpus']} CPUs)", "",
             "| rows | wall s | rows/s | peak RSS MB |", "|---|---|---|---|"]
    lines += [f"| {r['rows']:,} | {r['wall_seconds']:.1f} | {r['rows_per_s']:.0f} | {r['peak_rss_mb']:.0f} |" for r in results]
    lines += ["", data["note"]]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
