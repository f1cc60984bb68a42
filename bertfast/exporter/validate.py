"""Prove each variant on real held-out data against the PyTorch fp32 model.

Each variant runs through `bertfast.Classifier` (the exact inference path users get:
tokenizer.json, batching, ONNX Runtime session options), never through a side path, so what
the manifest certifies is what `predict` does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from .. import tasks as _tasks
from ..errors import require

log = logging.getLogger(__name__)

DEFAULT_MAX_DROP = 0.5  # points (metric x 100) of the task's primary metric
DEFAULT_MIN_AGREEMENT = 99.5  # percent of inputs (queries, for ranking) deciding as PyTorch fp32 does


@dataclass(frozen=True)
class Gate:
    """What a variant must keep to be eligible as a default, and how its task is scored.

    Attributes:
        task: the export's task.
        budget: points of the primary metric a variant may lose vs PyTorch fp32.
        min_agreement: percent of inputs on which it must decide as PyTorch fp32 does (same top
            label, same label set, a close score; for ranking: the same top document per query).
        thresholds: multi-label decision thresholds (tuned on PyTorch's scores, shared by all).
        groups: a query id per row (reranking), else None.
        positive: the class that means "relevant" for a two-class reranker (None: a score model).
    """

    task: _tasks.Task = _tasks.TASKS["single_label"]
    budget: float = DEFAULT_MAX_DROP
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    thresholds: list[float] | None = None
    groups: np.ndarray | None = None
    positive: int | None = None

    @property
    def ranking(self) -> bool:
        return self.groups is not None

    @property
    def primary(self) -> str:
        return self.task.primary_metric(self.ranking)

    @property
    def agreement_key(self) -> str:
        return "top1_agreement" if self.ranking else "label_agreement"

    def judge(self, val: dict) -> tuple[bool, str]:
        """(eligible, reason) of one variant's validation figures (`compare`'s dict)."""
        drop = val.get("metric_drop_points", val.get("accuracy_drop_points"))
        shown = f"{round(drop, 2) + 0.0:.2f}"  # + 0.0: never "-0.00"
        name = self.primary
        agree = 100 * val[self.agreement_key]
        what = "top-1 agreement" if self.ranking else "agreement"
        failed = []
        if drop > self.budget:
            failed.append(f"{name} drop {shown} > {self.budget} points budget")
        # Rounded: 0.995 * 100 is 99.49999999999999 in floating point.
        if round(agree, 6) < self.min_agreement:
            failed.append(f"{what} {_below(agree, self.min_agreement)}% < {self.min_agreement:g}%")
        if failed:
            return False, "; ".join(failed)
        return True, f"{name} drop {shown} <= {self.budget} points"


def _below(x: float, limit: float) -> str:
    """x (under limit) with enough decimals not to print as the limit itself."""
    for d in (2, 4, 6):
        s = f"{x:.{d}f}"
        if float(s) < limit:
            return s
    return f"{x!r}"


def metrics(scores: np.ndarray, y: np.ndarray | None, gate: Gate | None = None) -> dict:
    """The task's metrics of `scores` against `y` (primary metric None without labels)."""
    gate = gate or Gate()
    if y is None:
        return {**gate.task.empty_metrics(), gate.primary: None}
    return gate.task.evaluate(scores, y, gate.thresholds, gate.groups, gate.positive)


def torch_reference(model, tokenizer, texts: list[str], max_length: int, inputs: list[str],
                    batch_size: int = 32, *, pairs: list[str] | None = None,
                    activation: str = "softmax") -> tuple[np.ndarray, float]:
    """PyTorch fp32 scores (caller order) and its seq/s on these texts (or text pairs).

    Pairs are tokenized as training tokenizes them, `tokenizer(texts, pairs, truncation=True)`
    (longest_first). Scores are the logits through `activation` (softmax, sigmoid or identity).
    Only the tensors the ONNX graph takes (`inputs`) are passed: a BERT tokenizer paired with a
    model that has no `token_type_ids` (DistilBERT) must not feed them to either side.
    """
    torch = require("torch", "train")
    lengths = [len(t) + (len(pairs[i]) if pairs is not None else 0) for i, t in enumerate(texts)]
    order = np.argsort(lengths)  # length-sorted: less padding, same results
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            idx = order[i:i + batch_size]
            second = None if pairs is None else [pairs[j] for j in idx]
            enc = tokenizer([texts[j] for j in idx], second, truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            feeds = {k: enc[k] for k in inputs if k in enc}
            out[idx] = model(**feeds).logits.float().numpy()
    seconds = time.perf_counter() - t0
    return _tasks.activate(out, activation), len(texts) / seconds if seconds > 0 else 0.0


@dataclass(frozen=True)
class ExportReference:
    """The PyTorch fp32 reference on the eval set and the gate every variant is judged by.

    Attributes:
        inputs: the eval inputs as a Classifier takes them (texts, or (text, text_pair) tuples).
        scores: PyTorch's scores on them, caller order.
        y: their truth in the task's terms (None: unlabeled).
        metrics: PyTorch's metrics on them (`metrics`).
        gate: what a variant must keep.
        threads: CPU threads for validation and timing.
    """

    inputs: list
    scores: np.ndarray
    y: np.ndarray | None
    metrics: dict
    gate: Gate
    threads: int

    def compare(self, probs: np.ndarray) -> dict:
        """`compare` of a variant's scores on the inputs."""
        return compare(probs, self.scores, self.y, self.metrics, self.gate)


def compare(probs: np.ndarray, ref: np.ndarray, y: np.ndarray | None, ref_metrics: dict,
            gate: Gate | None = None) -> dict:
    """Validation figures of one variant vs the PyTorch reference, in the task's terms.

    `metric_drop_points`: (reference - variant) x 100 of the primary metric (for single_label
    also as `accuracy_drop_points`, the name older readers know).
    """
    gate = gate or Gate()
    m = metrics(probs, y, gate)
    close = gate.task.agreement(probs, ref, gate.thresholds, gate.groups, gate.positive)
    if y is not None:
        sign = 1 if gate.ranking or gate.task.higher_is_better else -1
        drop = sign * (ref_metrics[gate.primary] - m[gate.primary]) * 100
    else:
        # Without labels the worst case is that every disagreement is a new error.
        drop = (1 - close[gate.agreement_key]) * 100
    out = {**m, **close, "metric_drop_points": round(drop, 4), "n": int(len(probs))}
    if "accuracy" in m:  # a single-label task: older readers know the drop by this name
        acc_drop = (ref_metrics["accuracy"] - m["accuracy"]) * 100 if gate.ranking and y is not None else drop
        out["accuracy_drop_points"] = round(acc_drop, 4)
    return out


# Inputs re-run one at a time to measure batch invariance (bounded: batch-1 runs are slow).
BATCH_INVARIANCE_SAMPLE = 64


def batch_invariance(clf, texts: list, batched: np.ndarray, gate: Gate,
                     sample: int = BATCH_INVARIANCE_SAMPLE) -> dict:
    """How often an input's decision depends on the other inputs in its batch.

    Dynamic int8 quantizes activations with one scale per batch (and padding changes the
    shapes kernels see), so the same text can get another label alone than in a batch. Re-runs
    an evenly spaced sample of the inputs one at a time and compares with the batched scores,
    in the task's terms (`Task.agreement`): `batch_flips` is the share whose decision changes,
    `batch_max_diff` the largest score difference.
    """
    n = len(texts)
    if n == 0:
        return {"batch_flips": 0.0, "batch_max_diff": 0.0, "batch_sample": 0}
    idx = np.unique(np.linspace(0, n - 1, min(n, sample)).astype(int))
    alone = np.concatenate([clf.predict_proba([texts[i]]) for i in idx])
    a = gate.task.agreement(alone, batched[idx], gate.thresholds)
    return {"batch_flips": round(1 - a["label_agreement"], 6), "batch_max_diff": round(a["max_abs_prob_diff"], 6),
            "batch_sample": int(len(idx))}


def interleaved_speed(classifiers: dict, texts: list[str], rounds: int = 3, round_seconds: float = 0.3,
                      max_texts: int = 32) -> dict[str, dict]:
    """Short end-to-end throughput of each loaded Classifier (tokenization included).

    A ranking signal for choosing the default, not a benchmark (`bertfast bench` is the
    benchmark): each round times every variant once in turn, and the median round counts.
    """
    sample = texts[:max_texts]
    for clf in classifiers.values():
        clf.predict_proba(sample[:8])  # warm-up: first-run allocations, kernel selection
    rates: dict[str, list[float]] = {n: [] for n in classifiers}
    for r in range(rounds):
        names = list(classifiers)
        names = names[r % len(names):] + names[:r % len(names)] if names else names  # rotate the order
        for name in names:
            clf, n, t0 = classifiers[name], 0, time.perf_counter()
            while True:
                clf.predict_proba(sample)
                n += len(sample)
                el = time.perf_counter() - t0
                if el >= round_seconds:
                    break
            rates[name].append(n / el)
    return {name: {"seq_per_s": round(float(np.median(v)), 1), "rounds": rounds, "texts": len(sample),
                   "threads": classifiers[name].threads, "device": classifiers[name].device}
            for name, v in rates.items()}


def _validation_provider(devices: list[str], available: list[str]) -> str | None:
    """The provider to validate a variant on: the CPU when it targets it, else the first GPU
    provider it targets that this machine has (None: cannot be validated here)."""
    from ..runtime.providers import PROVIDERS

    for name in devices:
        p = PROVIDERS.get(name)
        if p is not None and (not p.gpu or p.ort_name in available):
            return name
    return None


def validate_variants(manifest, reference: ExportReference) -> None:
    """Validate every built variant of `manifest` (in its folder) on the eval inputs, then time them.

    `texts`: the inputs as a Classifier takes them (texts, or (text, text_pair) tuples). Fills
    each variant's `validation`, `speed`, `eligible` and `reason` (`gate.judge`; default gate:
    single-label, the manifest's budget); variants that failed to build are skipped. Speed
    decides the default, so it is measured fairly: all variants stay loaded and are timed in
    interleaved rounds (median of rounds), so a burst of load on a shared machine hits every
    variant alike instead of deciding the ranking.
    """
    from ..runtime.classifier import Classifier
    from ..runtime.providers import available_providers

    texts, gate, threads = reference.inputs, reference.gate, reference.threads
    avail = available_providers()
    loaded = {}
    try:
        for name, v in manifest.variants.items():
            if not manifest.usable(name):
                continue
            device = _validation_provider(v["devices"], avail)
            if device is None:
                v.update(validation=None, speed=None, eligible=False,
                         reason=f"not validated: no {'/'.join(v['devices'])} provider where it was exported; "
                                "re-export on a GPU machine")
                continue
            clf = loaded[name] = Classifier.load(manifest.folder, device=device, variant=name, threads=threads)
            batched = clf.predict_proba(texts)
            v["validation"] = reference.compare(batched)
            v["validation"].update(batch_invariance(clf, texts, batched, gate))
            v["eligible"], v["reason"] = gate.judge(v["validation"])
        for name, sp in interleaved_speed(loaded, texts).items():
            manifest.variants[name]["speed"] = sp
    finally:
        for clf in loaded.values():
            clf.close()
    for name in loaded:
        v, val = manifest.variants[name], manifest.variants[name]["validation"]
        score = val.get(gate.primary)
        log.info("  %-19s %s %s  agree %.4f  max|dp| %.4f  %.1f seq/s  %s", name, gate.primary,
                 "n/a" if score is None else f"{score:.4f}", val[gate.agreement_key],
                 val["max_abs_prob_diff"], v["speed"]["seq_per_s"], "ok" if v["eligible"] else "REJECTED")
