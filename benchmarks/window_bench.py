#!/usr/bin/env python
"""The export's search over (precision, window, long-text mode) on real data, under two gates.

MiniLM-L6 fine-tuned on BBC News at 128 tokens (the quickstart model) is exported twice:
with the default gate (0.5 points of accuracy, 99.5% agreement with PyTorch fp32) and with a
looser agreement bound (--min-agreement 97, same accuracy budget). Each export's grid (variant
x window, from its manifest) is reported, with the time the export took, and the default each
gate chose is measured on the held-out *test* split (never seen by training nor by the gate)
against PyTorch fp32 at the training length: accuracy, agreement and texts/s, side by side in
interleaved rounds.

    python benchmarks/window_bench.py --model exports/quickstart-minilm-bbc-model \\
        --work exports/window --out benchmarks/results/window-minilm-bbc

Writes results.json and results.md; paths in them are relative to the repository.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import torch_logits  # noqa: E402

from bertfast import Classifier  # noqa: E402
from bertfast.exporter.report import format_table  # noqa: E402
from bertfast.exporter.validate import interleaved_speed  # noqa: E402
from bertfast.hardware import cpu_info, int8_preset, relevant_flags  # noqa: E402
from bertfast.manifest import load_manifest  # noqa: E402
from bertfast.metrics import softmax  # noqa: E402
from bertfast.training.data import read_labeled  # noqa: E402
from bertfast.utils import library_versions  # noqa: E402

GATES = {"default": [], "agreement-97": ["--min-agreement", "97"]}


def rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return p.name


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "exports" / "quickstart-minilm-bbc-model")
    p.add_argument("--work", type=Path, default=ROOT / "exports" / "window")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "window-minilm-bbc")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    info = cpu_info()
    flags = frozenset(info["flags"])
    res = {"machine": {"cpu": info["brand"], "arch": info["arch"], "flags": relevant_flags(flags),
                       "int8_preset": int8_preset(flags)},
           "versions": library_versions(), "model": rel(a.model), "gates": {}}
    exports = {}
    for gate, extra in GATES.items():
        out = a.work / gate
        # Paths relative to the repository: the manifest keeps them as given, and results are committed.
        cmd = [sys.executable, "-m", "bertfast", "export", rel(a.model), "--out", rel(out), "--force", *extra]
        print("+", " ".join(cmd), flush=True)
        t = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT)
        m = load_manifest(out)
        exports[gate] = out
        res["gates"][gate] = {"flags": extra, "wall_seconds": round(time.time() - t, 1),
                              "export_seconds": m.export_seconds, "default": m.default, "window": m.window,
                              "table": format_table(m.raw),
                              "grid": {n: v.get("windows") for n, v in m.variants.items() if v.get("windows")}}

    test = read_labeled(a.model / "splits" / "test.jsonl")
    m = load_manifest(exports["default"])
    names = m.labels
    y = np.array([names.index(lab) for lab in test.labels])
    ref = softmax(torch_logits(a.model, test.texts, m.max_length))
    res["test"] = {"rows": len(test), "pytorch_fp32_accuracy": round(float((ref.argmax(1) == y).mean()), 6)}
    loaded = {}
    try:
        for gate, folder in exports.items():
            loaded[gate] = Classifier.load(folder, device="cpu", threads=a.threads)  # as users get it
        speed = interleaved_speed(loaded, test.texts, rounds=5, round_seconds=2.0, max_texts=len(test))
        for gate, clf in loaded.items():
            pr = clf.predict_proba(test.texts)
            res["gates"][gate]["test"] = {
                "variant": clf.variant, "max_length": clf.options.max_length, "long_text": clf.options.long_text,
                "accuracy": round(float((pr.argmax(1) == y).mean()), 6),
                "agreement": round(float((pr.argmax(1) == ref.argmax(1)).mean()), 6),
                "texts_per_s": speed[gate]["seq_per_s"]}
    finally:
        for clf in loaded.values():
            clf.close()
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (a.out / "results.md").write_text(markdown(res))
    print(markdown(res))
    return 0


def markdown(res: dict) -> str:
    t = res["test"]
    lines = [f"# Window search on real data (MiniLM-L6, BBC News, trained at 128 tokens), {res['machine']['cpu']}", "",
             f"Held-out test split: {t['rows']} articles; PyTorch fp32 at 128 tokens: accuracy "
             f"{t['pytorch_fp32_accuracy']:.2%}. Speeds: the two defaults timed side by side in interleaved "
             "rounds (median), end to end (tokenization included).", "",
             "| gate | export default | window | test accuracy | drop (points) | agreement | texts/s | export time |",
             "|---|---|---|---|---|---|---|---|"]
    for gate, g in res["gates"].items():
        d = g["test"]
        win = f"{d['max_length']} {d['long_text']}"
        lines.append(f"| {gate} ({' '.join(g['flags']) or 'drop <= 0.5, agreement >= 99.5%'}) | `{d['variant']}` | {win} | "
                     f"{d['accuracy']:.2%} | {(t['pytorch_fp32_accuracy'] - d['accuracy']) * 100:.2f} | "
                     f"{d['agreement']:.2%} | {d['texts_per_s']} | {g['export_seconds']} s |")
    for gate, g in res["gates"].items():
        lines += ["", f"## Export table, gate {gate}", "", "```", g["table"], "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
