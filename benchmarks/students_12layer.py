#!/usr/bin/env python
"""The 12-layer case of `--compress`: how fast its students run beside Optimum's int8 (speed only).

No installable package ships real 12-layer classifier weights, so the teacher is a BERT-base-
shaped model with random weights (`reproduce.random_bert_base`: `BertConfig()`, the MiniLM
package's uncased WordPiece tokenizer, BBC's five labels). Speed does not depend on the weights, so:

1. `bertfast export TEACHER --compress` with a token distillation (one step on a few BBC training
   articles: the students are built, speed-predicted, exported and timed exactly as for a real
   model; their accuracy means nothing here). The gate is opened (`--min-agreement 0
   --max-metric-drop 100 --accept-weak-reference`): random scores flip under any change, and
   only speed is asked of this run;
2. `bertfast bench` (in an environment with `bertfast[optimum]`, `--peer-python`): Optimum's int8
   pipeline of the teacher, the teacher's `int8-dynamic-pc` and every student's, side by side in
   one run, batch 1 and 32, end to end, on BBC validation articles at 128 tokens.

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
from bertfast.training.checkpoints import resolve_model  # noqa: E402
from bertfast.training.data import load_splits  # noqa: E402


def bbc_files(folder: Path, n_eval: int) -> tuple[Path, Path, list[str]]:
    """BBC validation articles (the export's timing inputs) and a few training articles (the
    token distillation's), as JSONL; and the label names in sorted order."""
    sp = load_splits("bbc-news")
    folder.mkdir(parents=True, exist_ok=True)
    files = {"validation.jsonl": sp.validation, "distill.jsonl": sp.train}
    for name, split in files.items():
        rows = list(zip(split.texts, split.labels))[:n_eval]
        (folder / name).write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return folder / "validation.jsonl", folder / "distill.jsonl", sorted(set(sp.train.labels))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/students-12layer")
    ap.add_argument("--students", default="L1of2,L1of3,L1of4", help="6, 4 and 3 of the 12 layers")
    ap.add_argument("--eval-texts", type=int, default=64, help="BBC validation articles the export times on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer-python", default=None, help="a python with bertfast[optimum] installed (transformers 4.57)")
    ap.add_argument("--out", default="benchmarks/results/students-12layer-speed")
    a = ap.parse_args()
    work, out = ROOT / a.work, ROOT / a.out
    eval_data, distill_data, labels = bbc_files(work / "data", a.eval_texts)
    teacher = random_bert_base(Path(resolve_model("minilm-l6")), work / "teacher", labels=labels)
    export = work / "export"
    rel = lambda p: str(p.relative_to(ROOT))  # noqa: E731
    secs = {"export --compress": run([
        sys.executable, "-m", "bertfast", "export", rel(teacher), "--out", rel(export), "--force",
        "--max-length", "128", "--variants", "fp32,int8-dynamic-pc", "--no-window-search",
        "--eval-data", rel(eval_data), "--accept-weak-reference", "--min-agreement", "0", "--max-metric-drop", "100",
        "--compress", "--students", a.students, "--distill-epochs", "0.01", "--distill-data", rel(distill_data),
        "--compress-budget", "30m", "--threads", str(a.threads)])}
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
