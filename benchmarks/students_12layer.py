#!/usr/bin/env python
"""The 12-layer case of `--compress`: how fast its students run beside Optimum's int8 (speed only).

No installable package ships real 12-layer classifier weights, so the teacher is a BERT-base-
shaped model with random weights (`reproduce.random_bert_base`: `BertConfig()`, MiniLM's
tokenizer, BBC's labels). Speed does not depend on the weights, so:

1. `bertfast export TEACHER --compress` with a token distillation (`--distill-epochs` tiny: the
   students are built, predicted, exported and timed exactly as for a real model; their accuracy
   means nothing here, and `--accept-weak-reference` says so to the gate);
2. `bertfast bench` (in an environment with `bertfast[optimum]`, `--peer-python`): Optimum's int8
   pipeline of the teacher, the teacher's `int8-dynamic-pc` and every student's, side by side in
   one run, batch 1 and 32, end to end.

    python benchmarks/students_12layer.py --peer-python /tmp/tf4/bin/python
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import run, write_results  # noqa: E402
from reproduce import random_bert_base  # noqa: E402

from bertfast.bench.env import environment  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minilm", default="runs/gate-bench/model", help="a fine-tuned MiniLM: tokenizer, labels, splits")
    ap.add_argument("--work", default="runs/students-12layer")
    ap.add_argument("--students", default="L2of3,L1of2,L1of3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer-python", default=None, help="a python with bertfast[optimum] installed (transformers 4.57)")
    ap.add_argument("--out", default="benchmarks/results/students-12layer-speed")
    a = ap.parse_args()
    minilm, work, out = ROOT / a.minilm, ROOT / a.work, ROOT / a.out
    if not (minilm / "splits" / "train.jsonl").is_file():
        raise SystemExit(f"{a.minilm}: train it first (python benchmarks/compress_bench.py trains it)")
    teacher = random_bert_base(minilm, work / "teacher")
    export = work / "export"
    rel = lambda p: str(p.relative_to(ROOT))  # noqa: E731
    secs = {"export --compress": run([
        sys.executable, "-m", "bertfast", "export", rel(teacher), "--out", rel(export), "--force",
        "--max-length", "128", "--variants", "fp32,int8-dynamic-pc", "--no-window-search",
        "--eval-data", rel(minilm / "splits" / "validation.jsonl"), "--max-eval-samples", "100",
        "--accept-weak-reference", "--compress", "--students", a.students, "--distill-epochs", "0.01",
        "--distill-data", rel(minilm / "splits" / "train.jsonl"), "--compress-budget", "30m",
        "--threads", str(a.threads)])}
    m = json.loads((export / "bertfast.json").read_text())
    students = [n for n, v in m["variants"].items() if v.get("student") and n.endswith("int8-dynamic-pc")]
    report = {"name": "students-12layer-speed", "environment": environment(a.threads), "seconds": secs,
              "note": "random weights (BertConfig()): speed only, accuracy meaningless",
              "compression": m.get("compression"), "command": {k: v for k, v in vars(a).items() if k != "peer_python"}}
    if a.peer_python:
        bench = work / "bench"
        secs["bench"] = run([a.peer_python, "-m", "bertfast", "bench", rel(export), "--backends",
                             ",".join(["optimum-int8", "bertfast:int8-dynamic-pc", *(f"bertfast:{s}" for s in students)]),
                             "--batch-sizes", "1,32", "--threads", str(a.threads), "--out", rel(bench), "--force",
                             "--name", "students-12layer-speed", "--max-texts", "64", "--latency-texts", "50"])
        report["bench"] = json.loads((bench / "results.json").read_text())
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.md").write_text((bench / "results.md").read_text())
    write_results(out, report, markdown)
    return 0


def markdown(r: dict) -> str:
    env = r["environment"]
    lines = [f"# --compress on a 12-layer BERT-base-shaped model: student speed ({env['cpu']}, "
             f"{env['usable_cpus']} CPUs, flags {', '.join(env['cpu_flags'])})", "",
             f"{r['note']}. Export with --compress: {r['seconds']['export --compress']} s.", "",
             "| student | layers | params | predicted speedup over the teacher's int8 (untrained, export's timing) |",
             "|---|---|---|---|"]
    for name, s in ((r.get("compression") or {}).get("students") or {}).items():
        lines.append(f"| {name} | {(s.get('dims') or {}).get('layers', '-')} | {s.get('params', '-')} | "
                     f"{s.get('predicted_speedup')} |")
    if r.get("bench"):
        lines += ["", "Side by side in one `bertfast bench` run (texts/s end to end; ratios at batch 32):", "",
                  "| backend | batch 1 | batch 32 | x optimum-int8 @32 | p50 ms @1 |", "|---|---|---|---|---|"]
        rows = [b for b in r["bench"]["backends"] if b.get("status") == "ok"]
        base = next((b["throughput"]["32"]["seq_per_s"] for b in rows if b["name"] == "optimum-int8"), None)
        for b in rows:
            t = b["throughput"]
            ratio = f"{t['32']['seq_per_s'] / base:.2f}x" if base else "n/a"
            lines.append(f"| `{b['name']}` | {t['1']['seq_per_s']:.1f} | {t['32']['seq_per_s']:.1f} | {ratio} | "
                         f"{(b.get('latency_ms') or {}).get('p50', float('nan')):.1f} |")
        lines += ["", "Full table: [bench.md](bench.md)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
