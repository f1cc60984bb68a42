"""Prove each variant on real held-out data against the PyTorch fp32 model.

Each variant runs through `bertfast.Classifier` (the exact inference path users get:
tokenizer.json, batching, ONNX Runtime session options), never through a side path, so what
the manifest certifies is what `predict` does.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

import numpy as np

from .. import tasks as _tasks
from ..errors import require
from . import evidence, speed

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
        """(eligible, reason) of one variant's validation figures (`compare`'s dict).

        Eligible only when the evidence supports it at 95%: the drop's interval stays within the
        budget and the agreement's lower bound (`agreement_bound`) reaches `min_agreement`.
        Figures written before intervals existed are judged by their point values.
        """
        drop = val.get("metric_drop_points", val.get("accuracy_drop_points"))
        drop_hi = (val.get("drop_ci") or [drop, drop])[1]
        name, n = self.primary, val.get("evidence_n", val.get("n"))
        agree = 100 * val[self.agreement_key]
        bound = val.get("agreement_bound")
        what = "top-1 agreement" if self.ranking else "agreement"
        failed = []
        if drop > self.budget:
            failed.append(f"{name} drop {_shown(drop)} > {self.budget} points budget")
        elif drop_hi > self.budget:
            failed.append(f"{name} drop {_shown(drop)} not shown within {self.budget} points "
                          f"(95% interval up to {_shown(drop_hi)}, {val.get('labeled_n', n)} labeled)")
        # Rounded: 0.995 * 100 is 99.49999999999999 in floating point.
        if round(agree, 6) < self.min_agreement:
            failed.append(f"{what} {_below(agree, self.min_agreement)}% < {self.min_agreement:g}%")
        elif bound is not None and round(100 * bound, 6) < self.min_agreement:
            limit = 1 - self.min_agreement / 100
            need = evidence.texts_needed(n or 0, 1 - val.get("agreement_estimate", val[self.agreement_key]),
                                         1 - bound, limit)
            more = f"; about {need:,} inputs would settle it" if need else ""
            failed.append(f"{what} >= {self.min_agreement:g}% not shown: 95% bound {100 * bound:.2f}% on {n} "
                          f"inputs{more}")
        if failed:
            return False, "; ".join(failed)
        shown_bound = f", {what} >= {100 * bound:.2f}% (95%, {n} inputs)" if bound is not None else ""
        return True, f"{name} drop {_shown(drop)} <= {self.budget} points{shown_bound}"


def _shown(x: float) -> str:
    return f"{round(x, 2) + 0.0:.2f}"  # + 0.0: never "-0.00"


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

    @functools.cached_property
    def strata(self) -> np.ndarray:
        """A length quartile per input (the agreement evidence's strata), computed once."""
        return evidence.length_strata(self.inputs)

    def compare(self, probs: np.ndarray, counted: bool = False) -> dict:
        """`compare` of a variant's scores on the inputs (agreement evidence within length strata)."""
        return compare(probs, self.scores, self.y, self.metrics, self.gate, self.strata, counted)


def compare(probs: np.ndarray, ref: np.ndarray, y: np.ndarray | None, ref_metrics: dict,
            gate: Gate | None = None, strata: np.ndarray | None = None, counted: bool = False) -> dict:
    """Validation figures of one variant vs the PyTorch reference, in the task's terms, each
    with its evidence (`exporter/evidence.py`).

    Rows: the first `len(y)` inputs are labeled (all of them when `y` covers every input;
    none when `y` is None); the rest are unlabeled agreement data. Agreement and its interval
    count every input; the metric and its drop count the labeled ones.

    `metric_drop_points`: (reference - variant) x 100 of the primary metric (for single_label
    also as `accuracy_drop_points`, the name older readers know); `drop_ci` its 95% interval.
    `agreement_ci`: the 95% interval of the agreement rate estimated from every input's margin
    (`evidence.flip_rate`), or with `counted` (a student: a different model), or where the
    margins cannot explain the flips seen, from the flips seen (`evidence.counted_rate`);
    `agreement_bound` its lower end, which the gate compares; `agreement_method` says which.
    """
    gate = gate or Gate()
    labeled = 0 if y is None else len(y)
    m = metrics(probs[:labeled], y, gate)
    if gate.ranking:
        close = gate.task.agreement(probs[:labeled], ref[:labeled], gate.thresholds, gate.groups, gate.positive)
        margins, moves = _tasks.ranking.margins(gate.task.relevance(ref[:labeled], gate.positive),
                                                gate.task.relevance(probs[:labeled], gate.positive), gate.groups)
    else:
        close = gate.task.agreement(probs, ref, gate.thresholds)
        margins, moves = gate.task.margins(np.asarray(ref, np.float64), np.asarray(probs, np.float64), gate.thresholds)
    flips = (evidence.counted_rate(margins, moves) if counted else
             evidence.flip_rate(margins, moves, strata=None if gate.ranking else strata))
    agree_ci = [round(1 - flips["flip_ci"][1], 6), round(1 - flips["flip_ci"][0], 6)]
    out = {**m, **close, "agreement_ci": agree_ci, "agreement_bound": agree_ci[0],
           "agreement_estimate": round(1 - flips["flip_rate"], 6), "evidence_n": flips["n"], "labeled_n": labeled,
           "agreement_method": flips["method"]}
    if y is not None:
        sign = 1 if gate.ranking or gate.task.higher_is_better else -1
        drop = sign * (ref_metrics[gate.primary] - m[gate.primary]) * 100
        out["drop_ci"] = None if gate.ranking else evidence.paired_drop(
            lambda s, yy, idx: gate.task.metrics(s[idx], yy[idx], gate.thresholds)[gate.primary],
            ref[:labeled], probs[:labeled], y, sign)
    else:
        # Without labels the worst case is that every disagreement is a new error.
        drop = (1 - close[gate.agreement_key]) * 100
        out["drop_ci"] = [round(100 * (1 - agree_ci[1]), 4), round(100 * (1 - agree_ci[0]), 4)]
    out.update(metric_drop_points=round(drop, 4), n=int(len(probs)))
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
    flipped = int(round((1 - a["label_agreement"]) * len(idx)))
    return {"batch_flips": round(1 - a["label_agreement"], 6), "batch_flips_ci": evidence.wilson(flipped, len(idx)),
            "batch_max_diff": round(a["max_abs_prob_diff"], 6), "batch_sample": int(len(idx))}


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
            v["validation"] = reference.compare(batched, counted=bool(v.get("student")))
            v["validation"].update(batch_invariance(clf, texts, batched, gate))
            v["eligible"], v["reason"] = gate.judge(v["validation"])
        for name, sp in speed.interleaved(loaded, texts).items():
            manifest.variants[name]["speed"] = sp
    finally:
        for clf in loaded.values():
            clf.close()
    for name in loaded:
        v, val = manifest.variants[name], manifest.variants[name]["validation"]
        score = val.get(gate.primary)
        log.debug("  %-19s %s %s  agree %.4f  max|dp| %.4f  %.1f seq/s  %s", name, gate.primary,
                 "n/a" if score is None else f"{score:.4f}", val[gate.agreement_key],
                 val["max_abs_prob_diff"], v["speed"]["seq_per_s"], "ok" if v["eligible"] else "REJECTED")
