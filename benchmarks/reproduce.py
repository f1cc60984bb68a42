#!/usr/bin/env python
"""Reproduce the README speed table: four workloads, each a `bertfast bench` run in its own process.

Workloads (results under benchmarks/results/<name>/: results.json, results.md, plot.png):

- minilm-bbc-128: MiniLM-L6 fine-tuned on BBC News (the quickstart export), max length 128;
- minilm-bbc-512: the same at max length 512 (long articles: 35% of BBC texts exceed 512);
- minilm-headlines: the same model on short texts (`bbc-news-headlines`, < 64 tokens);
- bert-base-128: a BERT-base-shaped model (random weights from `BertConfig()`, speed only),
  created here with the MiniLM model's tokenizer (same uncased 30,522 WordPiece vocab as
  bert-base-uncased) and exported with `bertfast.export`; data: the MiniLM export's eval split.

Each workload runs in a fresh process, so one backend's memory never inflates another
workload's RSS, and a crash in one workload does not lose the others.

    # after `bertfast quickstart` (or train + export to these paths):
    python benchmarks/reproduce.py
    python benchmarks/reproduce.py --export exports/my-export --model exports/my-model --only minilm-bbc-128
    python benchmarks/reproduce.py --quick --only minilm-bbc-128     # smoke run, numbers indicative only
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("minilm-bbc-128", "minilm-bbc-512", "minilm-headlines", "bert-base-128")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def random_bert_base(minilm_model: Path, out_model: Path, layers: int = 12, labels: list[str] | None = None) -> Path:
    """A random-weight BERT-base-shaped classifier (`BertConfig()`, `layers` layers) with MiniLM's
    tokenizer and labels (or `labels`, then `minilm_model` may be the untrained MiniLM), saved in
    `out_model`: speed only, its accuracy is meaningless."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    src_cfg = json.loads((minilm_model / "config.json").read_text())
    if int(src_cfg.get("vocab_size", 0)) != 30522:
        raise SystemExit(f"{minilm_model}: vocab_size {src_cfg.get('vocab_size')} is not bert-base-uncased's 30522.")
    id2label = dict(enumerate(labels)) if labels else {int(k): v for k, v in src_cfg["id2label"].items()}
    cfg = BertConfig(id2label=id2label, label2id={v: k for k, v in id2label.items()},  # bert-base-uncased shape
                     num_hidden_layers=layers)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).eval()
    if out_model.exists():
        shutil.rmtree(out_model)
    model.save_pretrained(out_model)
    for name in TOKENIZER_FILES:
        if (minilm_model / name).is_file():
            shutil.copy2(minilm_model / name, out_model / name)
    return out_model


def make_bert_base(minilm_model: Path, out_model: Path, out_export: Path, eval_data: Path | None, force: bool) -> Path:
    """Create (once) a random-weight BERT-base classifier with MiniLM's tokenizer, and export it."""
    if (out_export / "bertfast.json").is_file() and not force:
        print(f"[bert-base] reusing export {out_export}")
        return out_export
    sys.path.insert(0, str(ROOT))
    from bertfast.exporter import ExportConfig, export

    random_bert_base(minilm_model, out_model)
    print(f"[bert-base] random BertConfig() model + MiniLM tokenizer in {out_model}; exporting to {out_export}")
    kwargs = {"eval_data": str(eval_data)} if eval_data and eval_data.is_file() else {}
    return Path(export(ExportConfig(model_dir=str(out_model), out=str(out_export), max_length=128,
                                    max_eval_samples=200, force=True, **kwargs)))


def bench_command(name: str, target: Path, args: argparse.Namespace, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "bertfast.cli", "bench", str(target), "--name", name,
           "--out", str(args.results_dir / name), "--force", "--model-dir", str(args.model_for(name))]
    for flag, value in (("--threads", args.threads), ("--device", args.device), ("--batch-sizes", args.batch_sizes),
                        ("--backends", args.backends), ("--max-texts", args.max_texts),
                        ("--min-seconds", args.min_seconds), ("--latency-texts", args.latency_texts)):
        if value is not None:
            cmd += [flag, str(value)]
    if args.quick:
        cmd.append("--quick")
    return cmd + extra


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--export", type=Path, default=ROOT / "exports/quickstart-minilm-bbc",
                   help="the MiniLM-L6 BBC News export (bertfast quickstart)")
    p.add_argument("--model", type=Path, default=ROOT / "exports/quickstart-minilm-bbc-model",
                   help="the fine-tuned MiniLM-L6 model folder it came from")
    p.add_argument("--bert-base-model", type=Path, default=ROOT / "exports/bench-bert-base-model",
                   help="where the random BERT-base-shaped model is created")
    p.add_argument("--bert-base-export", type=Path, default=ROOT / "exports/bench-bert-base",
                   help="where it is exported (reused when present; --rebuild to redo)")
    p.add_argument("--rebuild", action="store_true", help="recreate and re-export the BERT-base-shaped model")
    p.add_argument("--only", default=",".join(WORKLOADS), help=f"comma list of workloads: {', '.join(WORKLOADS)}")
    p.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--threads", type=int, default=None, help="threads for every backend (default: usable CPUs)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (bench default: auto)")
    p.add_argument("--batch-sizes", default=None, help="bench default: 1,8,32")
    p.add_argument("--backends", default=None, help="bench default: all")
    p.add_argument("--max-texts", type=int, default=None, help="texts in each throughput sample (bench default: 256)")
    p.add_argument("--min-seconds", type=float, default=None, help="timed seconds per measurement (bench default: 3)")
    p.add_argument("--latency-texts", type=int, default=None, help="texts timed at batch 1 (bench default: 200)")
    p.add_argument("--quick", action="store_true", help="smoke-run durations (numbers indicative only)")
    p.add_argument("--no-readme", action="store_true", help="do not rewrite README.md's speed table afterwards")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args(argv)
    for key in ("export", "model", "bert_base_model", "bert_base_export", "results_dir"):
        setattr(args, key, getattr(args, key).resolve())  # the bench runs with cwd = repository root
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        p.error(f"--only: unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    for path, flag in ((args.export / "bertfast.json", "--export"), (args.model / "config.json", "--model")):
        if not path.is_file():
            p.error(f"{flag}: {path} not found; run `bertfast quickstart` first or pass {flag}.")
    args.model_for = lambda name: args.bert_base_model if name == "bert-base-128" else args.model

    plans: list[tuple[str, Path, list[str]]] = []
    for name in only:
        if name == "minilm-bbc-128":
            plans.append((name, args.export, ["--max-length", "128"]))
        elif name == "minilm-bbc-512":
            plans.append((name, args.export, ["--max-length", "512"]))
        elif name == "minilm-headlines":
            plans.append((name, args.export, ["--max-length", "128", "--data", "bbc-news-headlines"]))
        elif name == "bert-base-128":
            data = args.export / "eval.jsonl"
            extra = ["--max-length", "128", "--note", "random weights (BertConfig()): speed only, accuracy meaningless"]
            if data.is_file():
                extra += ["--data", str(data)]
            plans.append((name, args.bert_base_export, extra))

    failed = []
    for name, target, extra in plans:
        cmd = bench_command(name, target, args, extra)
        print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
        if args.dry_run:
            continue
        if name == "bert-base-128":
            try:
                make_bert_base(args.model, args.bert_base_model, args.bert_base_export, args.export / "eval.jsonl",
                               args.rebuild)
            except Exception as e:  # keep the other workloads' results
                print(f"[bert-base] could not create/export the model: {type(e).__name__}: {e}", file=sys.stderr)
                failed.append(name)
                continue
        t0 = time.time()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"=== {name}: exit {rc} after {time.time() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if not args.dry_run and not args.no_readme and len(failed) < len(plans):
        subprocess.call([sys.executable, str(ROOT / "benchmarks" / "update_readme.py"),
                         "--results-dir", str(args.results_dir)], cwd=ROOT)
    if failed:
        print(f"failed workloads: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
