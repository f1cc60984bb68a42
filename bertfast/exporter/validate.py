"""Prove each variant on real held-out data against the PyTorch fp32 model.

Each variant runs through `bertfast.Classifier` (the exact inference path users get:
tokenizer.json, batching, ONNX Runtime session options), never through a side path, so what
the manifest certifies is what `predict` does.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..errors import require
from ..metrics import accuracy_f1, agreement

log = logging.getLogger(__name__)


def metrics(probs: np.ndarray, y: np.ndarray | None) -> dict:
    """Accuracy and macro-F1 (None without labels)."""
    if y is None:
        return {"accuracy": None, "macro_f1": None}
    return accuracy_f1(probs.argmax(-1), y, probs.shape[1])


def torch_reference(model, tokenizer, texts: list[str], max_length: int, inputs: list[str],
                    batch_size: int = 32) -> tuple[np.ndarray, float]:
    """PyTorch fp32 probabilities (caller order) and its seq/s on these texts.

    Only the tensors the ONNX graph takes (`inputs`) are passed: a BERT tokenizer paired with a
    model that has no `token_type_ids` (DistilBERT) must not feed them to either side.
    """
    torch = require("torch", "train")
    order = np.argsort([len(t) for t in texts])  # length-sorted: less padding, same results
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            idx = order[i:i + batch_size]
            enc = tokenizer([texts[j] for j in idx], truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            feeds = {k: enc[k] for k in inputs if k in enc}
            out[idx] = torch.softmax(model(**feeds).logits.float(), -1).numpy()
    return out, len(texts) / (time.perf_counter() - t0)


def compare(probs: np.ndarray, ref: np.ndarray, y: np.ndarray | None, ref_metrics: dict) -> dict:
    """Validation figures of one variant vs the PyTorch reference."""
    m = metrics(probs, y)
    close = agreement(probs, ref)
    agree = close["label_agreement"]
    if y is not None:
        drop = (ref_metrics["accuracy"] - m["accuracy"]) * 100
    else:
        # Without labels the worst case is that every disagreement is a new error.
        drop = (1 - agree) * 100
    return {**m, **close, "accuracy_drop_points": round(drop, 4), "n": int(len(probs))}


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


def validate_variants(manifest, texts: list[str], ref: np.ndarray, y: np.ndarray | None,
                      ref_metrics: dict, threads: int) -> None:
    """Validate every built variant of `manifest` (in its folder) on the eval texts, then time them.

    Fills each variant's `validation`, `speed`, `eligible` and `reason`; variants that failed to
    build are skipped. Speed decides the default, so it is measured fairly: all variants stay
    loaded and are timed in interleaved rounds (median of rounds), so a burst of load on a
    shared machine hits every variant alike instead of deciding the ranking.
    """
    from ..runtime.classifier import Classifier
    from ..runtime.providers import available_providers

    avail = available_providers()
    budget = manifest.max_accuracy_drop
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
            v["validation"] = compare(clf.predict_proba(texts), ref, y, ref_metrics)
            drop = v["validation"]["accuracy_drop_points"]
            v["eligible"] = drop <= budget
            v["reason"] = (f"accuracy drop {drop:.2f} <= {budget} points" if v["eligible"]
                           else f"accuracy drop {drop:.2f} > {budget} points budget")
        for name, sp in interleaved_speed(loaded, texts).items():
            manifest.variants[name]["speed"] = sp
    finally:
        for clf in loaded.values():
            clf.close()
    for name in loaded:
        v, val = manifest.variants[name], manifest.variants[name]["validation"]
        log.info("  %-19s acc %s  agree %.4f  max|dp| %.4f  %.1f seq/s  %s", name,
                 "n/a" if val["accuracy"] is None else f"{val['accuracy']:.4f}", val["label_agreement"],
                 val["max_abs_prob_diff"], v["speed"]["seq_per_s"], "ok" if v["eligible"] else "REJECTED")
