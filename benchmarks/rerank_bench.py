#!/usr/bin/env python
"""Cross-encoder reranking, side by side: 1 query x 100 candidate articles, bertfast's default
variant vs PyTorch fp32 and Optimum int8, at several max lengths, with NDCG@10 and MRR of each
on held-out queries.

Queries are headlines of the BBC-rerank *test* split (never trained on, never gated on); each
query's 100 candidates are its own article (relevance 1), articles of its class (0.5) and
articles of other classes (0), sampled with a fixed seed. Every query is run by every backend
in turn (rotating order), so load on this shared machine hits all backends alike; pairs/s is
total pairs over total time per backend.

    python benchmarks/rerank_bench.py --export exports/tasks/rerank --model-dir exports/tasks/rerank-model

Optimum's peer is what its users run: ORTModelForSequenceClassification in a transformers
`text-classification` pipeline fed {"text", "text_pair"} dicts, batch 32, dynamically quantized
with the int8 preset this CPU gets (the rule bertfast's own export uses).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bertfast import Classifier, tasks  # noqa: E402
from bertfast.hardware import cpu_info, int8_preset, relevant_flags  # noqa: E402
from bertfast.metrics import ranking_metrics  # noqa: E402
from bertfast.training.builtin_data import _unique_articles  # noqa: E402
from bertfast.training.data import load_splits  # noqa: E402
from bertfast.utils import library_versions  # noqa: E402


def make_queries(n_queries: int, n_candidates: int, seed: int) -> list[tuple[str, list[str], list[float]]]:
    """(headline, candidate bodies, relevance) for held-out headlines of bbc-news-rerank."""
    arts = _unique_articles()
    test_heads = list(dict.fromkeys(load_splits("bbc-news-rerank").test.texts))
    by_head = {a[0]: i for i, a in enumerate(arts)}
    rng = random.Random(seed)
    out = []
    for h in rng.sample(test_heads, n_queries):
        i = by_head[h]
        others = rng.sample([j for j in range(len(arts)) if j != i], n_candidates - 1)
        cands = [i, *others]
        rng.shuffle(cands)
        rel = [1.0 if j == i else 0.5 if arts[j][2] == arts[i][2] else 0.0 for j in cands]
        out.append((h, [arts[j][1] for j in cands], rel))
    return out


POSITIVE: list[int | None] = [None]  # the relevant class of a two-class export (set from its manifest)


def _relevance(scores: np.ndarray) -> np.ndarray:
    """What the peers rank by: the one score, or P(relevant class) as the export records it."""
    return scores[:, 0] if scores.shape[1] == 1 else scores[:, POSITIVE[0]]


class Bertfast:
    def __init__(self, export: Path, max_length: int, threads: int, variant: str | None = None):
        self.clf = Classifier.load(export, device="cpu", max_length=max_length, threads=threads, variant=variant)
        self.name = f"bertfast:{self.clf.variant}" + ("" if variant else " (default)")

    def scores(self, q: str, docs: list[str]) -> np.ndarray:
        return self.clf.task.relevance(self.clf.predict_proba([(q, d) for d in docs]), self.clf.positive)


class Torch:
    name = "pytorch-fp32"

    def __init__(self, model_dir: Path, max_length: int, activation: str, threads: int, batch_size: int = 32):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch, self.L, self.bs, self.act = torch, max_length, batch_size, activation
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

    def scores(self, q: str, docs: list[str]) -> np.ndarray:
        out = []
        with self.torch.inference_mode():
            for i in range(0, len(docs), self.bs):
                part = docs[i : i + self.bs]
                enc = self.tok([q] * len(part), part, truncation=True, max_length=self.L, padding=True,
                               return_tensors="pt")
                out.append(self.model(**enc).logits.float().numpy())
        return _relevance(tasks.activate(np.concatenate(out), self.act))


class OptimumInt8:
    name = "optimum-int8"

    def __init__(self, model_dir: Path, max_length: int, activation: str, threads: int, cache: Path,
                 batch_size: int = 32):
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForSequenceClassification
        from transformers import AutoTokenizer, pipeline

        from bertfast.bench.backends.optimum_backend import build_optimum_model

        folder, file_name = build_optimum_model(model_dir, cache, True, int8_preset(), False)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        model = ORTModelForSequenceClassification.from_pretrained(folder, file_name=file_name, session_options=so)
        self.pipe = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(model_dir))
        self.label2id = {str(k): int(v) for k, v in model.config.label2id.items()}
        self.n, self.L, self.bs, self.act = len(model.config.id2label), max_length, batch_size, activation
        self.info = f"AutoQuantizationConfig.{int8_preset()}(is_static=False, per_channel=False)"

    def scores(self, q: str, docs: list[str]) -> np.ndarray:
        res = self.pipe([{"text": q, "text_pair": d} for d in docs], batch_size=self.bs, truncation=True,
                        max_length=self.L, top_k=None, function_to_apply="none")
        logits = np.empty((len(docs), self.n), dtype=np.float32)
        for i, row in enumerate(res):
            for d in row if isinstance(row, list) else [row]:
                logits[i, self.label2id[d["label"]]] = d["score"]
        return _relevance(tasks.activate(logits, self.act))


def bench_length(args, queries, max_length: int, activation: str) -> dict:
    backends = [Bertfast(args.export, max_length, args.threads),
                Torch(args.model_dir, max_length, activation, args.threads)]
    # When the export's gate kept fp32 as the default, its int8 variant is shown too (marked
    # as not the default), so the speed/quality trade-off it refused is visible.
    for v in args.variants:
        if v != backends[0].clf.variant:
            backends.append(Bertfast(args.export, max_length, args.threads, variant=v))
    try:
        backends.append(OptimumInt8(args.model_dir, max_length, activation, args.threads, args.cache))
    except ImportError as e:
        print(f"optimum-int8 skipped: {e}", file=sys.stderr)
    for b in backends:  # warm-up: first-run allocations and kernel choice are not timed
        b.scores(queries[0][0], queries[0][1][:8])
    secs = {b.name: 0.0 for b in backends}
    scores = {b.name: [] for b in backends}
    for k, (q, docs, _) in enumerate(queries):
        order = backends[k % len(backends):] + backends[: k % len(backends)]
        for b in order:
            t = time.perf_counter()
            scores[b.name].append(b.scores(q, docs))
            secs[b.name] += time.perf_counter() - t
        print(f"  L={max_length} query {k + 1}/{len(queries)}: " + ", ".join(
            f"{n} {len(docs) * (k + 1) / s:.1f} pairs/s" for n, s in secs.items()), flush=True)
    rel = np.concatenate([r for _, _, r in queries])
    groups = np.repeat(np.arange(len(queries)), [len(d) for _, d, _ in queries])
    ref = np.concatenate(scores["pytorch-fp32"])
    out = {}
    for b in backends:
        s = np.concatenate(scores[b.name])
        m = ranking_metrics(s, rel, groups)
        tops = [int(np.argmax(a)) == int(np.argmax(r)) for a, r in zip(scores[b.name], scores["pytorch-fp32"])]
        out[b.name] = {"pairs_per_s": round(len(s) / secs[b.name], 1), "seconds": round(secs[b.name], 2),
                       "ndcg@10": round(m["ndcg@10"], 4), "mrr": round(m["mrr"], 4),
                       "top1_agreement_with_pytorch": float(np.mean(tops)),
                       "max_abs_score_diff": float(np.abs(s - ref).max()),
                       **({"quantization": b.info} if hasattr(b, "info") else {})}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", type=Path, required=True)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--max-lengths", default="256,512")
    p.add_argument("--queries", type=int, default=10)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default="int8-dynamic-pc-fr",
                   help="export variants timed besides the default (comma list; empty for none)")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "bertfast")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rerank-minilm-bbc")
    args = p.parse_args()
    from bertfast.utils import usable_cpus

    args.threads = args.threads or usable_cpus()
    args.variants = [v for v in args.variants.split(",") if v]
    manifest = json.loads((args.export / "bertfast.json").read_text())
    activation = manifest["task"].get("activation") or tasks.get(manifest["task"]["name"]).activation
    labels = [manifest["id2label"][str(i)] for i in range(len(manifest["id2label"]))]
    POSITIVE[0] = tasks.ranking.positive_class(labels, manifest["task"].get("positive_label"))
    queries = make_queries(args.queries, args.candidates, args.seed)
    info = cpu_info()
    flags = frozenset(info["flags"])
    res = {"workload": f"1 query x {args.candidates} BBC articles, {args.queries} held-out queries",
           "machine": {"cpu": info["brand"], "flags": relevant_flags(flags), "int8_preset": int8_preset(flags),
                       "threads": args.threads},
           "export": {"task": manifest["task"], "default": manifest["default"], "trained_max_length": manifest["max_length"]},
           "versions": library_versions(), "lengths": {}}
    for L in (int(x) for x in args.max_lengths.split(",")):
        res["lengths"][str(L)] = bench_length(args, queries, L, activation)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(res))
    print(markdown(res))
    return 0


def markdown(res: dict) -> str:
    return "\n".join([f"# Reranking: {res['workload']}", "",
                      f"CPU: {res['machine']['cpu']} ({', '.join(res['machine']['flags'])}), "
                      f"{res['machine']['threads']} threads; int8 preset {res['machine']['int8_preset']}. "
                      "Backends interleaved per query.", "", *table(res)]) + "\n"


def table(res: dict) -> list[str]:
    """The side-by-side table's lines (also embedded by `rerank_compress.py`)."""
    lines = ["| max length | backend | pairs/s | x Optimum int8 | NDCG@10 | MRR | top-1 = PyTorch |",
             "|---|---|---|---|---|---|---|"]
    for L, rows in res["lengths"].items():
        base = rows.get("optimum-int8", {}).get("pairs_per_s")
        for name, r in rows.items():
            x = f"{r['pairs_per_s'] / base:.2f}x" if base else "n/a"
            lines.append(f"| {L} | `{name}` | {r['pairs_per_s']} | {x} | {r['ndcg@10']:.4f} | {r['mrr']:.4f} | "
                         f"{r['top1_agreement_with_pytorch']:.0%} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
