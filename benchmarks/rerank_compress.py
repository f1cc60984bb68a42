#!/usr/bin/env python
"""`bertfast export --compress` on a cross-encoder reranker: what the students keep, how fast they rank.

Teacher: MiniLM-L6 fine-tuned on `bbc-news-rerank` (headline, article) -> relevance 1 / 0.5 / 0
by `bertfast train` with `tasks_bench.py`'s flags (trained here when absent). Steps:

1. `bertfast export TEACHER --compress` (timed): students distilled on the teacher's scores over
   the training split's pairs, put through the same variants and the same gate (top document per
   query the same as PyTorch fp32's, and NDCG@10 within the budget);
2. on the test split (queries nobody trained or gated on): NDCG@10 / MRR of the teacher's
   PyTorch fp32 and of every variant, and each variant's top-1 agreement per query with it;
3. with `--peer-python` (a Python with `bertfast[optimum]`, transformers 4.57): `rerank_bench.py`
   in that environment: 1 held-out headline x 100 articles per query, the default, the teacher's
   int8 and every student variant beside PyTorch fp32 and Optimum's int8 pipeline, interleaved.

    python benchmarks/rerank_compress.py --budget 30m --students L1of2,L1of3 --peer-python /tmp/tf4/bin/python
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

from common import run, write_results  # noqa: E402
from compress_bench import pct, variants_table  # noqa: E402
from rerank_bench import table as bench_table  # noqa: E402
from tasks_bench import TASKS, torch_scores  # noqa: E402

from bertfast import Classifier, tasks  # noqa: E402
from bertfast.bench.env import environment  # noqa: E402
from bertfast.exporter.evidence import paired_drop, wilson  # noqa: E402
from bertfast.training.data import load_splits  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="runs/rerank-compress/model")
    ap.add_argument("--work", default="runs/rerank-compress")
    ap.add_argument("--budget", default="30m")
    ap.add_argument("--students", default="L1of2,L1of3")
    ap.add_argument("--distill-epochs", default=None)
    ap.add_argument("--min-agreement", default=None, help="the gate's agreement (percent)")
    ap.add_argument("--unused-train-pairs", type=int, default=0,
                    help="also distill on up to N training-split pairs the teacher was not trained on "
                         "(--max-train-samples left them out), labels dropped: more real in-domain pairs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queries", type=int, default=8, help="rerank_bench.py: held-out headlines x 100 articles")
    ap.add_argument("--peer-python", default=None, help="a python with bertfast[optimum] installed (transformers 4.57)")
    ap.add_argument("--out", default="benchmarks/results/compress-minilm-rerank")
    a = ap.parse_args()
    teacher, work, out = ROOT / a.teacher, ROOT / a.work, ROOT / a.out
    data, train_flags = TASKS["rerank"]
    secs = {}
    if not (teacher / "training.json").is_file():
        secs["train teacher"] = run([sys.executable, "-m", "bertfast", "train", "minilm-l6", data, "--out", a.teacher,
                                     "--force", *train_flags])
    training = json.loads((teacher / "training.json").read_text())
    more = unused_train_pairs(data, teacher, training["config"]["seed"], a.unused_train_pairs, work / "distill-more.jsonl")
    export = work / "export"
    if not (export / "bertfast.json").is_file():
        secs["export --compress"] = run([sys.executable, "-m", "bertfast", "export", a.teacher, "--out",
                                         str(export.relative_to(ROOT)), "--compress", "--compress-budget", a.budget,
                                         "--threads", str(a.threads), "--force", "--students", a.students,
                                         *(["--distill-epochs", a.distill_epochs] if a.distill_epochs else []),
                                         *(["--min-agreement", a.min_agreement] if a.min_agreement else []),
                                         *(["--distill-data", str(more.relative_to(ROOT)), "--text-pair-column",
                                            "text_pair"] if more else [])])
    m = json.loads((export / "bertfast.json").read_text())
    secs.setdefault("export --compress", m.get("export_seconds"))
    test = load_splits(data, seed=training["config"]["seed"]).test
    task = tasks.get(m["task"]["name"])
    names = [m["id2label"][str(i)] for i in range(len(m["id2label"]))]
    y = task.encode(test.labels, {n: i for i, n in enumerate(names)})
    groups = tasks.ranking.groups_for(test.groups(), task.can_rerank(len(names)))
    positive = tasks.ranking.positive_class(names, m["task"].get("positive_label"))
    ref = torch_scores(teacher, test.inputs(), True, m["max_length"], m["task"].get("activation", task.activation))
    queries = len(set(groups.tolist()))
    with Classifier.load(export, device="cpu", threads=a.threads) as clf:
        chosen = clf.variant
    students = [n for n, v in m["variants"].items() if v.get("student") and v.get("status") == "ok"]
    unseen = {"pytorch-fp32 (teacher)": {"metrics": task.evaluate(ref, y, None, groups, positive)}}
    ref_q = per_query_ndcg(task, ref, y, groups, positive)
    for variant in dict.fromkeys([chosen, "int8-dynamic-pc-fr", "int8-dynamic-pc", *students]):
        if m["variants"].get(variant, {}).get("status") != "ok":
            continue
        with Classifier.load(export, device="cpu", variant=variant, threads=a.threads) as clf:
            s = clf.predict_proba(test.inputs())
        agree = task.agreement(s, ref, None, groups, positive)
        k = int(round(agree["top1_agreement"] * queries))
        unseen[variant] = {"metrics": task.evaluate(s, y, None, groups, positive), "default": variant == chosen,
                           "top1_agreement": agree["top1_agreement"], "ci95": wilson(k, queries),
                           "ndcg_drop_ci95": drop_ci(ref_q, per_query_ndcg(task, s, y, groups, positive))}
    report = {"name": "compress-minilm-rerank", "environment": environment(a.threads), "seconds": secs,
              "command": {k: v for k, v in vars(a).items() if k != "peer_python"}, "train_flags": train_flags,
              "compression": m.get("compression"), "variants": variants_table(m), "default": chosen,
              "test": {"rows": len(test), "queries": queries, "max_length": m["max_length"], "by_variant": unseen},
              "export_seconds": m.get("export_seconds")}
    bench_out = work / "rerank-bench"
    if a.peer_python and (bench_out / "results.json").is_file() and \
            (bench_out / "results.json").stat().st_mtime > (export / "bertfast.json").stat().st_mtime:
        report["bench"] = json.loads((bench_out / "results.json").read_text())  # this export's, already run
    elif a.peer_python:
        variants = [v for v in dict.fromkeys(["int8-dynamic-pc-fr", *students]) if v != chosen
                    and m["variants"].get(v, {}).get("status") == "ok"]
        secs["rerank bench"] = run([a.peer_python, "benchmarks/rerank_bench.py", "--export", str(export.relative_to(ROOT)),
                                    "--model-dir", a.teacher, "--max-lengths", str(m["max_length"]),
                                    "--queries", str(a.queries), "--threads", str(a.threads),
                                    "--variants", ",".join(variants), "--out", str(bench_out.relative_to(ROOT))])
        report["bench"] = json.loads((bench_out / "results.json").read_text())
    write_results(out, report, markdown)
    return 0


def per_query_ndcg(task, scores, y, groups, positive) -> np.ndarray:
    """NDCG@10 of each test query (in `np.unique(groups)` order)."""
    return np.array([task.evaluate(scores[groups == g], y[groups == g], None, groups[groups == g],
                                   positive)["ndcg@10"] for g in np.unique(groups)])


def drop_ci(ref_q: np.ndarray, var_q: np.ndarray) -> list[float]:
    """95% interval of the teacher's NDCG@10 minus the variant's, queries resampled (paired): the
    gate's bootstrap (`evidence.paired_drop`, which reports points, hence the / 100) over queries."""
    return paired_drop(lambda q, _, idx: q[idx].mean() / 100, ref_q, var_q, ref_q, 1.0, boot=2000)


def unused_train_pairs(data: str, teacher: Path, seed: int, n: int, path: Path) -> Path | None:
    """Up to `n` pairs of the task's full training split that the teacher's sampled training
    split (`splits/train.jsonl`) left out, as unlabeled JSONL: real in-domain pairs whose only
    label the students see is the teacher's score. None when `n` is 0."""
    if n <= 0:
        return None
    from bertfast.exporter.evalset import training_inputs

    seen = set(training_inputs(teacher, True))
    extra = [x for x in load_splits(data, seed=seed).train.inputs() if x not in seen][:n]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": q, "text_pair": d}) + "\n" for q, d in extra))
    print(f"{len(extra)} unused training pairs -> {path.relative_to(ROOT)}", flush=True)
    return path


def markdown(r: dict) -> str:
    env, t, c = r["environment"], r["test"], r.get("compression") or {}
    lines = [f"# --compress on a MiniLM-L6 reranker / bbc-news-rerank ({env['cpu']}, {env['usable_cpus']} CPUs, "
             f"flags {', '.join(env['cpu_flags'])})", "",
             f"Export with --compress: {r['seconds'].get('export --compress', '?')} s (budget {c.get('budget')}). "
             f"Distillation data: {c.get('data')}; {c.get('texts')} pairs; {c.get('epochs')} epochs.", "",
             "| student | status | layers | params |", "|---|---|---|---|"]
    for name, s in (c.get("students") or {}).items():
        lines.append(f"| {name} | {s.get('status')} | {(s.get('dims') or {}).get('layers', '-')} | {s.get('params', '-')} |")
    lines += ["", "The gate on the validation split (agreement: the same top document per query as PyTorch fp32):", "",
              "| variant | eligible | agreement | 95% bound | seq/s (±%) | MB | default |", "|---|---|---|---|---|---|---|"]
    for v in r["variants"]:
        lines.append(f"| {v['variant']} | {v['eligible']} | {pct(v['agreement'])} | {pct(v['agreement_bound'])} | "
                     f"{v['seq_per_s']} ({100 * (v['spread'] or 0):.0f}) | {v['size_mb']} | {'yes' if v['default'] else ''} |")
    lines += ["", f"Test split ({t['rows']} pairs, {t['queries']} queries, never trained on nor gated on), at "
              f"{t['max_length']} tokens:", "",
              "| variant | NDCG@10 | teacher's minus this [95% CI, queries resampled] | MRR | top-1 = teacher [95% CI] |",
              "|---|---|---|---|---|"]
    teacher = next(iter(t["by_variant"].values()))["metrics"]["ndcg@10"]
    for name, u in t["by_variant"].items():
        ci, drop = u.get("ci95"), u.get("ndcg_drop_ci95")
        lines.append(f"| {name}{' (default)' if u.get('default') else ''} | {u['metrics']['ndcg@10']:.4f} | "
                     + (f"{teacher - u['metrics']['ndcg@10']:+.4f} [{drop[0]:+.4f}, {drop[1]:+.4f}]" if drop else "-")
                     + f" | {u['metrics']['mrr']:.4f} | "
                     + (f"{pct(u['top1_agreement'])} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "-") + " |")
    if r.get("bench"):
        lines += ["", f"Side by side ({r['bench']['workload']}; interleaved per query):", "", *bench_table(r["bench"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
