#!/usr/bin/env python
"""Which distillation loss and data make the more faithful student, on texts nobody trained or gated on.

Decides `--distill-loss`'s default and whether `--distill-augment` / `--distill-mix` pay. Teacher:
MiniLM-L6 fine-tuned on BBC News (`--teacher`; the model `benchmarks/gate_bench.py` trains, trained
here when absent; its splits, validation share included, are read from its training.json). For
each arm (loss x `--augment` k x `--mix` m x `--epochs`) and seed, the same student (`--recipe`,
from the teacher's own layers) is distilled by `bertfast.exporter.distill.Distiller` on the same
texts (the training split + `--traffic`, unlabeled, as `compress_bench.py` uses; `--traffic ""`
for the training split alone; `--windows` later windows of long texts), plus k perturbed copies
(`distill.augment`) and m cut-and-paste mixes (`distill.mix`) of each, for the steps of its
epochs over the rows without copies or mixes (so arms differ in data, not steps); then, in
PyTorch fp32 against the teacher's fp32 labels: agreement on the validation articles (what the
gate sees), the unseen test articles and the unseen headlines, with 95% Wilson intervals,
accuracy, and the seconds each took on this machine.

    python benchmarks/distill_loss.py --epochs 2 --seeds 0,1
    python benchmarks/distill_loss.py --losses logits --augment 0,2 --out benchmarks/results/distill-augment-minilm-bbc
    python benchmarks/distill_loss.py --teacher runs/compress-v45/model --traffic "" --recipe L2of3 --losses logits \
        --windows 2 --mix 0,2 --epochs 3,6 --out benchmarks/results/distill-mix-minilm-bbc-val45
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import run, write_results, write_traffic  # noqa: E402

from bertfast.bench.env import environment  # noqa: E402
from bertfast.exporter import distill, students  # noqa: E402
from bertfast.exporter.evalset import training_inputs  # noqa: E402
from bertfast.exporter.evidence import wilson  # noqa: E402
from bertfast.families import family_of  # noqa: E402
from bertfast.training.data import load_splits, read_labeled  # noqa: E402


def logits(model, tok, texts: list[str], max_length: int) -> np.ndarray:
    import torch

    out = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(texts), 32):
            enc = tok(texts[i:i + 32], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            out.append(model(**enc).logits.float().numpy())
    return np.concatenate(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="runs/gate-bench/model")
    ap.add_argument("--traffic", default="runs/gate-bench/traffic.jsonl")
    ap.add_argument("--work", default="runs/distill-loss")
    ap.add_argument("--recipe", default="L1of2")
    ap.add_argument("--losses", default="logits,hidden")
    ap.add_argument("--epochs", default="2", help="epochs' steps per arm (comma list)")
    ap.add_argument("--augment", default="0", help="perturbed copies per text, per arm (comma list)")
    ap.add_argument("--mix", default="0", help="cut-and-paste mixes per text (distill.mix), per arm (comma list)")
    ap.add_argument("--windows", type=int, default=0, help="later windows of long texts also distilled")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/distill-loss-minilm-bbc")
    a = ap.parse_args()
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(a.threads)
    teacher_dir, work, out = ROOT / a.teacher, ROOT / a.work, ROOT / a.out
    if not (teacher_dir / "training.json").is_file():
        run([sys.executable, "-m", "bertfast", "train", "minilm-l6", "bbc-news", "--out", a.teacher, "--epochs", "1",
             "--force"])
    training = json.loads((teacher_dir / "training.json").read_text())
    max_length, seed = training["max_length"], training["config"]["seed"]
    vf = training["config"].get("val_fraction", 0.1)
    if a.traffic and not (ROOT / a.traffic).is_file():
        write_traffic(ROOT / a.traffic, seed, val_fraction=vf)
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    family = family_of(teacher.config)
    inputs = list(training_inputs(teacher_dir, False))
    if a.traffic:  # --traffic "": the training split alone
        inputs += list(read_labeled(ROOT / a.traffic, "text", None, "distill").inputs())
    names = ["input_ids", "attention_mask", "token_type_ids"]
    # Rows the student trains on without copies or mixes (texts and their later windows): every
    # arm takes the steps of `epochs` over these, whatever it adds.
    base_rows = len(distill.teacher_logits(teacher, tok, inputs, max_length, names, work / (
        f"teacher-{distill.fingerprint(inputs, max_length, a.windows)}.npy"), windows=a.windows))
    arts, heads = (load_splits(n, seed=seed, val_fraction=vf) for n in ("bbc-news", "bbc-news-headlines"))
    label_names = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    sets = {"validation articles (gated on)": (arts.validation.texts, arts.validation.labels),
            "test articles (unseen)": (arts.test.texts, arts.test.labels),
            "test+validation headlines (unseen)": (heads.test.texts + heads.validation.texts,
                                                   heads.test.labels + heads.validation.labels)}
    ys = {k: np.array([label_names.index(lab) for lab in labels]) for k, (_, labels) in sets.items()}
    refs = {k: logits(teacher, tok, texts, max_length).argmax(1) for k, (texts, _) in sets.items()}
    recipe = next(r for r in students.RECIPES if r.name == a.recipe)
    runs = []
    for s in [int(x) for x in a.seeds.split(",")]:
        for loss, k, m, epochs in [(loss, int(k), int(m), float(e)) for loss in a.losses.split(",")
                                   for k in a.augment.split(",") for m in a.mix.split(",") for e in a.epochs.split(",")]:
            rows = (inputs + distill.augment(inputs, k, tok.mask_token, seed=s)
                    + distill.mix(inputs, m, distill.mix_words(max_length), seed=s))
            arm_targets = distill.teacher_logits(teacher, tok, rows, max_length, names, work / (
                f"teacher-{distill.fingerprint(rows, max_length, a.windows)}.npy"), windows=a.windows)
            torch.manual_seed(s)
            student, kept = students.drop_layers(teacher, family, recipe)
            n = teacher.config.num_hidden_layers
            layer_map = students.layer_targets(n, len(kept)) if loss == "hidden" else None
            d = distill.Distiller(student, tok, rows, arm_targets, max_length, names,
                                  work / f"{a.recipe}-{loss}-a{k}-m{m}-e{epochs:g}-w{a.windows}-{s}",
                                  epochs * base_rows / len(arm_targets),  # the same steps as without copies
                                  seed=s, windows=a.windows, teacher=teacher if layer_map else None,
                                  layer_map=layer_map)
            t0 = time.perf_counter()
            d.run(deadline=time.monotonic() + 10 * 3600)
            secs = time.perf_counter() - t0
            row = {"loss": loss, "augment": k, "mix": m, "epochs": epochs, "rows": len(rows), "seed": s, "steps": d.step,
                   "seconds": round(secs, 1), "kept_layers": kept, "layer_map": layer_map, "sets": {}}
            for name, (texts, _) in sets.items():
                pred = logits(student, tok, texts, max_length).argmax(1)
                same = int((pred == refs[name]).sum())
                row["sets"][name] = {"n": len(texts), "agreement": round(same / len(texts), 4),
                                     "ci95": wilson(same, len(texts)), "flips": len(texts) - same,
                                     "accuracy": round(float((pred == ys[name]).mean()), 4)}
            runs.append(row)
            print(json.dumps(row), flush=True)
    report = {"name": "distill-loss-minilm-bbc", "environment": environment(a.threads), "command": vars(a),
              "texts": len(inputs), "teacher_accuracy": {k: round(float((refs[k] == ys[k]).mean()), 4) for k in sets},
              "runs": runs}
    write_results(out, report, markdown)
    return 0


def markdown(r: dict) -> str:
    env = r["environment"]
    lines = [f"# Distillation loss and data: logits, hidden states, perturbed copies, mixes ({env['cpu']}, {env['usable_cpus']} CPUs, "
             f"flags {', '.join(env['cpu_flags'])})", "",
             f"Student `{r['command']['recipe']}` of MiniLM-L6 fine-tuned on BBC News; {r['texts']} distillation "
             f"texts (later windows per long text: {r['command'].get('windows', 0)}), each arm the steps of its epochs "
             "over those texts alone (with copies or mixes, over more rows). Agreement with the teacher's fp32 labels "
             "[95% Wilson], accuracy (teacher's in the header), PyTorch fp32.", "",
             "| loss | copies per text | mixes per text | epochs' steps | rows | seed | steps | seconds | " + " | ".join(
                 f"{k}: agreement | accuracy (teacher {100 * v:.2f}%)" for k, v in r["teacher_accuracy"].items())
             + " |", "|---|---|---|---|---|---|---|---|" + "---|---|" * len(r["teacher_accuracy"])]
    for row in r["runs"]:
        lines.append(f"| {row['loss']} | {row.get('augment', 0)} | {row.get('mix', 0)} | "
                     f"{row.get('epochs', r['command']['epochs'])} | {row.get('rows', r['texts'])} | {row['seed']} | "
                     f"{row['steps']} | {row['seconds']} | " + " | ".join(
            f"{100 * u['agreement']:.2f}% [{100 * u['ci95'][0]:.2f}, {100 * u['ci95'][1]:.2f}] ({u['flips']} flips) | "
            f"{100 * u['accuracy']:.2f}%" for u in row["sets"].values()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
