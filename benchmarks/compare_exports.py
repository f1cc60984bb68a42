#!/usr/bin/env python
"""Time the default variant of several exports side by side (e.g. one made under transformers
4.57 and one under 5.x): same texts, same threads, interleaved rounds, median round.

Timed: `Classifier.predict_proba` end to end (tokenization included) on the whole text sample,
for BBC articles at max length 128 (the exports' eval.jsonl) and BBC headlines. Writes JSON and
Markdown under benchmarks/results/<name>/.

    python benchmarks/compare_exports.py --name tf4-vs-tf5 exports/A exports/B
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("exports", nargs="+", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--texts", type=int, default=256)
    args = p.parse_args(argv)
    import numpy as np

    from bertfast.bench.paths import display_path
    from bertfast.hardware import cpu_info, relevant_flags
    from bertfast.runtime.classifier import Classifier
    from bertfast.training.data import load_texts, read_labeled
    from bertfast.utils import library_versions, usable_cpus, write_json

    workloads = {
        "bbc-128": read_labeled(args.exports[0] / "eval.jsonl", "text", "label").texts[: args.texts],
        "headlines": load_texts("bbc-news-headlines")[0][: args.texts * 4],
    }
    clfs = {display_path(e): Classifier.load(e, device="cpu", max_length=128) for e in args.exports}
    rows = []
    for work, texts in workloads.items():
        rates: dict[str, list[float]] = {n: [] for n in clfs}
        for c in clfs.values():
            c.predict_proba(texts[:64])  # warm-up
        names = list(clfs)
        for r in range(args.rounds):
            for n in names[r % len(names):] + names[: r % len(names)]:  # rotate the order each round
                t0 = time.perf_counter()
                clfs[n].predict_proba(texts)
                rates[n].append(len(texts) / (time.perf_counter() - t0))
        for n, v in rates.items():
            rows.append({"workload": work, "export": n, "variant": clfs[n].variant, "texts": len(texts),
                         "texts_per_s_median": round(float(np.median(v)), 1), "rounds": v})
            print(f"{work:10s} {n:40s} {clfs[n].variant:20s} {np.median(v):8.1f} texts/s", flush=True)
    out = ROOT / "benchmarks" / "results" / args.name
    out.mkdir(parents=True, exist_ok=True)
    env = {"cpu": cpu_info()["brand"], "cpu_flags": relevant_flags(), "threads": usable_cpus(),
           "versions": library_versions()}
    write_json(out / "results.json", {"name": args.name, "environment": env, "rows": rows})
    md = [f"# {args.name}", "", "Default variant of each export, `Classifier.predict_proba` end to end, median of "
          f"{args.rounds} interleaved rounds, {usable_cpus()} threads ({env['cpu']}; {', '.join(env['cpu_flags'])}).", "",
          "| workload | export | variant | texts | texts/s |", "|---|---|---|---:|---:|"]
    md += [f"| {r['workload']} | `{r['export']}` | `{r['variant']}` | {r['texts']} | {r['texts_per_s_median']} |"
           for r in rows]
    (out / "results.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
