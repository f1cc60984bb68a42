#!/usr/bin/env python
"""Where a student disagrees with its teacher: its flips by the teacher's own margin.

For a `compress_bench.py` run: the teacher's PyTorch fp32 probabilities on its validation split
(the gate's inputs), each variant's labels through the export, and the flips counted per
quintile of the teacher's margin (best class probability minus the runner-up's), with the
teacher's own accuracy in each quintile. It answers whether a student fails where the teacher
itself barely decides (more distillation text near the boundary would help) or everywhere (a
student too small for the task).

    python benchmarks/student_flips.py --teacher runs/compress-v45/model --export runs/compress-v45/export \
        --out benchmarks/results/compress-minilm-bbc-val45/flips-by-margin
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

from common import torch_logits, write_results  # noqa: E402

from bertfast import Classifier, tasks  # noqa: E402
from bertfast.bench.env import environment  # noqa: E402
from bertfast.exporter.evidence import wilson  # noqa: E402
from bertfast.metrics import softmax  # noqa: E402
from bertfast.training.data import read_labeled  # noqa: E402

BINS = 5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True, help="the fine-tuned model folder (bertfast train's --out)")
    ap.add_argument("--export", required=True, help="its export with --compress")
    ap.add_argument("--variants", default=None, help="comma-separated (default: int8-dynamic-pc and every student's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    teacher, export = ROOT / a.teacher, ROOT / a.export
    m = json.loads((export / "bertfast.json").read_text())
    val = read_labeled(teacher / "splits" / "validation.jsonl")
    texts, names = list(val.texts), [m["id2label"][str(i)] for i in range(len(m["id2label"]))]
    y = np.array([names.index(str(x)) for x in val.labels])
    probs = softmax(torch_logits(teacher, texts, m["max_length"]))
    margin, ref = tasks.get("single_label").margins(probs, probs)[0][:, 0], probs.argmax(1)  # the gate's margin
    edges = np.quantile(margin, np.linspace(0, 1, BINS + 1))
    bins = np.clip(np.searchsorted(edges, margin, side="right") - 1, 0, BINS - 1)
    variants = a.variants.split(",") if a.variants else [
        "int8-dynamic-pc", *(n for n, v in m["variants"].items() if v.get("student") and v.get("status") == "ok")]
    rows = []
    for variant in variants:
        with Classifier.load(export, device="cpu", variant=variant, threads=a.threads) as clf:
            pred = clf.predict_proba(texts).argmax(1)
        flips = pred != ref
        rows.append({"variant": variant, "flips": int(flips.sum()), "n": len(texts),
                     "by_margin": [{"margin": [round(float(edges[b]), 4), round(float(edges[b + 1]), 4)],
                                    "n": int((bins == b).sum()), "flips": int(flips[bins == b].sum()),
                                    "flip_ci95": wilson(int(flips[bins == b].sum()), int((bins == b).sum())),
                                    "teacher_accuracy": round(float((ref[bins == b] == y[bins == b]).mean()), 4)}
                                   for b in range(BINS)]})
    report = {"name": "student-flips-by-margin", "environment": environment(a.threads),
              "command": vars(a), "validation_rows": len(texts), "variants": rows}
    write_results(ROOT / a.out, report, markdown)
    return 0


def markdown(r: dict) -> str:
    env = r["environment"]
    first = r["variants"][0]["by_margin"]
    lines = [f"# Flips by the teacher's margin ({env['cpu']}, {env['usable_cpus']} CPUs)", "",
             f"Validation split ({r['validation_rows']} texts, the gate's inputs), quintiles of the teacher's "
             "fp32 margin (best class probability minus the runner-up's); flips = labels that differ from the "
             "teacher's.", "",
             "| variant | flips | " + " | ".join(f"margin {b['margin'][0]:.3f}-{b['margin'][1]:.3f} "
                                                 f"(teacher acc. {100 * b['teacher_accuracy']:.1f}%)" for b in first) + " |",
             "|---|---|" + "---|" * len(first)]
    for v in r["variants"]:
        lines.append(f"| {v['variant']} | {v['flips']} / {v['n']} | " + " | ".join(
            f"{b['flips']} / {b['n']}" for b in v["by_margin"]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
