#!/usr/bin/env python
"""Where the time goes inside one export variant: ONNX Runtime's own profiler, by operator type.

Answers "what bounds the throughput": if the int8 matrix multiplies (MatMulInteger,
QAttention, DynamicQuantizeLinear) already take most of the time, only a faster kernel (VNNI,
AMX, a GPU) or fewer FLOPs can help; if glue ops dominate, the graph can still improve.

    python benchmarks/profile_ort.py exports/quickstart-minilm-bbc --max-length 128 --batch-size 32
    python benchmarks/profile_ort.py EXPORT --variant fp32 --out benchmarks/results/profile-fp32

Writes `profile.json` (per-op totals) and `profile.md` into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export", type=Path)
    p.add_argument("--variant", default=None, help="default: the export's CPU default")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/profile-<variant>-<L>")
    args = p.parse_args(argv)

    import onnxruntime as ort

    from bertfast.bench.paths import display_path
    from bertfast.manifest import load_manifest
    from bertfast.runtime.classifier import Classifier
    from bertfast.runtime.providers import PROVIDERS, session_options
    from bertfast.training.data import read_labeled
    from bertfast.utils import usable_cpus

    m = load_manifest(args.export)
    variant = args.variant or m.default["cpu"]
    threads = args.threads or usable_cpus()
    texts = read_labeled(args.export / "eval.jsonl").texts
    with Classifier.load(args.export, device="cpu", variant=variant, max_length=args.max_length,
                         max_batch_size=args.batch_size, threads=threads) as clf:
        enc = clf.encode(texts[: args.batch_size * 4])
        feeds = [f for _, f in enc.batches][:4]
    tmp = tempfile.mkdtemp()
    so = session_options(threads)
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tmp) / "ort")
    sess = ort.InferenceSession(str(m.variant_file(variant)), so, providers=[PROVIDERS["cpu"].ort_name])
    sess.run(None, feeds[0])  # warm-up (also profiled, dropped below by run index)
    t0 = time.perf_counter()
    n = 0
    for _ in range(args.runs):
        for f in feeds:
            sess.run(None, f)
            n += f["input_ids"].shape[0]
    wall = time.perf_counter() - t0
    prof = json.loads(Path(sess.end_profiling()).read_text())

    by_op: dict[str, float] = defaultdict(float)
    runs = [e for e in prof if e.get("name") == "model_run"]
    first_run_end = runs[0]["ts"] + runs[0]["dur"] if runs else 0
    for e in prof:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] > first_run_end:
            by_op[e["args"].get("op_name", "?")] += e["dur"]
    total = sum(by_op.values()) or 1.0
    rows = sorted(by_op.items(), key=lambda kv: -kv[1])
    result = {
        "export": display_path(args.export), "variant": variant, "max_length": args.max_length,
        "batch_size": args.batch_size, "threads": threads, "texts": n, "wall_seconds": wall,
        "seq_per_s_model_only": n / wall,
        "op_time_share": {k: v / total for k, v in rows},
        "op_time_us": dict(rows),
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"profile-{variant}-{args.max_length}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# ONNX Runtime profile: `{variant}`, max length {args.max_length}, batch {args.batch_size}, {threads} threads",
             "", f"{n} texts in {wall:.2f} s = {n / wall:.1f} seq/s (model only, real BBC lengths).", "",
             "| operator | share of kernel time |", "|---|---|"]
    lines += [f"| {k} | {100 * v / total:.1f}% |" for k, v in rows[:15]]
    (out / "profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
