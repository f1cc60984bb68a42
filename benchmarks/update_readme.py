#!/usr/bin/env python
"""Rewrite the README speed table from committed benchmark results (never typed by hand).

Replaces what lies between `<!-- bench:start -->` and `<!-- bench:end -->` in README.md with a
table rendered from results JSON files (default: the four reproduce.py workloads under
benchmarks/results/, in that order, whichever exist), the `quickstart` block of README.md with
the recorded quickstart run, the `compress` block (the students' trade-off) with the committed
`compress_bench.py` runs, and the `tasks` block of docs/tasks.md (next to the README) with the
committed task and rerank results.

    python benchmarks/update_readme.py                        # rewrite README.md and docs/tasks.md
    python benchmarks/update_readme.py --check                # exit 1 if either is stale (CI)
    python benchmarks/update_readme.py benchmarks/results/x/results.json ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing bertfast

from bertfast.bench.report import readme_table, replace_block  # noqa: E402

# reproduce.py's workloads, in README order.
DEFAULT_ORDER = ("minilm-bbc-128", "minilm-bbc-512", "minilm-headlines", "bert-base-128")


def default_files(results_dir: Path) -> list[Path]:
    files = [results_dir / n / "results.json" for n in DEFAULT_ORDER]
    return [f for f in files if f.is_file()] or sorted(results_dir.glob("*/results.json"))


QS_START, QS_END = "<!-- quickstart:start -->", "<!-- quickstart:end -->"


def quickstart_block(text: str, results_dir: Path, base: Path) -> str:
    """Fill the README's quickstart block from the committed quickstart run, if both exist."""
    md = results_dir / "quickstart" / "summary.md"
    i, j = text.find(QS_START), text.find(QS_END)
    if not md.is_file() or i < 0 or j < i:
        return text
    rel = os.path.relpath(md.resolve(), base)
    block = md.read_text().strip() + f"\n\n(Recorded quickstart run: [{rel}]({rel}).)"
    return text[: i + len(QS_START)] + "\n" + block + "\n" + text[j:]


TASKS_START, TASKS_END = "<!-- tasks:start -->", "<!-- tasks:end -->"
TASK_RESULTS = ("tasks-minilm-bbc", "rerank-minilm-bbc")  # committed by tasks_bench.py / rerank_bench.py
TASKS_DOC = Path("docs") / "tasks.md"  # where the tasks block lives, relative to the README's folder


def tasks_block(text: str, results_dir: Path, base: Path) -> str:
    """Fill the README's tasks block from the committed task and rerank results, if present."""
    i, j = text.find(TASKS_START), text.find(TASKS_END)
    parts = []
    for name in TASK_RESULTS:
        md = results_dir / name / "results.md"
        if md.is_file():
            body = md.read_text().strip().split("\n")
            title = body[0].lstrip("# ").strip()
            rel = os.path.relpath(md.resolve(), base)
            parts.append(f"**{title}** ([{rel}]({rel}))\n\n" + "\n".join(body[1:]).strip())
    if not parts or i < 0 or j < i:
        return text
    return text[: i + len(TASKS_START)] + "\n" + "\n\n".join(parts) + "\n" + text[j:]


CMP_START, CMP_END = "<!-- compress:start -->", "<!-- compress:end -->"
COMPRESS_RESULTS = ("compress-minilm-bbc-windows", "compress-minilm-bbc-val30", "compress-minilm-bbc-val45",
                    "compress-minilm-bbc-val45-a97", "compress-minilm-bbc-val45-a97-e6",
                    "compress-minilm-bbc-val45-a97-e6-rerun")  # compress_bench.py runs


def compress_rows(name: str, r: dict) -> list[str]:
    """One row per int8 variant benched beside Optimum in one `compress_bench.py` run."""
    bench = {b["name"].removeprefix("bertfast:"): b for b in (r.get("bench") or {}).get("backends", [])
             if b.get("status") == "ok"}
    peer = bench.get("optimum-int8")
    if not peer:
        return []
    flags = r["environment"]["cpu_flags"]
    cpu = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2" if "avx2" in flags else "other"
    gate = {v["variant"]: v for v in r["variants"]}
    students = (r.get("compression") or {}).get("students") or {}
    teacher_layers = r["bench"]["workload"]["model"]["layers"]
    cmd = r.get("command") or {}  # a gate looser or stricter than the export's defaults, shown
    gate_set = "".join(f", `{flag} {cmd[k]}`" for k, flag in (("min_agreement", "--min-agreement"),
                                                               ("max_metric_drop", "--max-metric-drop"))
                       if cmd.get(k))
    rows = []
    for variant, u in r["unseen"].items():
        b, t = bench.get(variant), u["test articles"]
        if b is None:
            continue
        layers = (students.get(variant.split("-")[0], {}).get("dims") or {}).get("layers", teacher_layers)
        g = gate.get(variant, {})
        verdict = "default" if g.get("default") else "passed" if g.get("eligible") else "rejected"
        if g.get("agreement") is not None:
            verdict += f" ({100 * g['agreement']:.2f}%, bound {100 * g['agreement_bound']:.2f}%)"
        verdict += gate_set
        x = b["throughput"]["32"]["seq_per_s"] / peer["throughput"]["32"]["seq_per_s"]
        rows.append(f"| [{name}](benchmarks/results/{name}/results.md) | {cpu} | `{variant}` | {layers} | "
                    f"**{x:.2f}x** | {b['latency_ms']['p50']:.1f} / {peer['latency_ms']['p50']:.1f} | "
                    f"{100 * t['accuracy']:.2f}% / {100 * r['teacher_accuracy_unseen']['test articles']:.2f}% | "
                    f"{100 * t['agreement']:.2f}% [{100 * t['ci95'][0]:.1f}, {100 * t['ci95'][1]:.1f}] | {verdict} |")
    return rows


def compress_block(text: str, results_dir: Path) -> str:
    """Fill the README's students trade-off table from the committed compress_bench.py runs."""
    i, j = text.find(CMP_START), text.find(CMP_END)
    rows = []
    for name in COMPRESS_RESULTS:
        f = results_dir / name / "results.json"
        if f.is_file():
            rows += compress_rows(name, json.loads(f.read_text()))
    if not rows or i < 0 or j < i:
        return text
    head = ["| run | CPU | variant | layers | x Optimum int8 (batch 32) | batch-1 p50 ms (vs Optimum) | "
            "unseen test accuracy (teacher) | agreement with the teacher [95% CI] | gate (agreement on validation) |",
            "|---|---|---|---|---|---|---|---|---|"]
    return text[: i + len(CMP_START)] + "\n" + "\n".join(head + rows) + "\n" + text[j:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="*", type=Path, help="results.json files (default: benchmarks/results/*)")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md", help="the README to rewrite")
    p.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--check", action="store_true", help="do not write; exit 1 when the README is out of date")
    args = p.parse_args(argv)
    files = args.results or default_files(args.results_dir)
    if not files:
        print(f"error: no results.json under {args.results_dir}; run benchmarks/reproduce.py first.", file=sys.stderr)
        return 2
    base = args.readme.resolve().parent
    pairs = []
    for f in files:
        rel = os.path.relpath(f.resolve(), base)
        pairs.append((rel, json.loads(f.read_text())))
    text = args.readme.read_text()
    try:
        new = replace_block(text, readme_table(pairs))
    except ValueError as e:
        print(f"error: {args.readme}: {e}", file=sys.stderr)
        return 2
    new = quickstart_block(new, args.results_dir, base)
    new = tasks_block(new, args.results_dir, base)  # a README that still holds the tasks block
    new = compress_block(new, args.results_dir)
    pages = [(args.readme, text, new)]
    doc = base / TASKS_DOC
    if doc.is_file():
        doc_text = doc.read_text()
        pages.append((doc, doc_text, tasks_block(doc_text, args.results_dir, doc.parent)))
    if args.check:
        stale = [p for p, old, fresh in pages if fresh != old]
        for p in stale:
            print(f"{p} is out of date; run: python benchmarks/update_readme.py", file=sys.stderr)
        return 1 if stale else 0
    for p, old, fresh in pages:
        if fresh != old:
            p.write_text(fresh)
    print(f"updated {', '.join(str(p) for p, _, _ in pages)} from {len(files)} results file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
