"""The token budget per batch, chosen by measurement on the machine that exports.

Bigger batches amortize per-run overhead, smaller ones keep activations in cache; which wins
depends on the CPU (cache sizes, AVX2 vs VNNI kernels), the model and the text lengths. On a
2-core AVX2 machine every int8 variant ran faster at batch 8 than at batch 32 of 128-token
texts, while the runtime's fixed 8192 tokens made batches of 64 there. So the export times its
CPU default variant at several budgets on the eval inputs, in interleaved rounds like the
variants themselves, and records the fastest in the manifest (`batching`); `Classifier.load`
uses it unless the caller sets `batch_tokens`.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

CANDIDATES = (1024, 2048, 4096, 8192, 16384)
TIE_BUDGET = 4096  # the middle candidate: what a tie goes to
# Budgets move throughput by ~10% here (variants by 2x): below 15% the choice would follow the
# machine's load from run to run (two exports of one model chose 4096 and 1024, 7% apart).
MIN_GAIN = 0.15
SAMPLE = 256  # inputs per timed call: enough for several batches at every candidate


def tie_order(bt: int) -> tuple:
    """How budgets rank among ties: nearest the middle candidate first, then the larger."""
    return (-abs(math.log2(bt / TIE_BUDGET)), bt)


def choose_batch_tokens(folder, variant: str, inputs: list, threads: int, device: str = "cpu") -> dict:
    """{"batch_tokens": fastest, "variant", "device", "seq_per_s": {budget: rate}} for `variant`."""
    from ..runtime.classifier import Classifier
    from . import speed as _speed

    if not inputs:
        return {}
    sample = (list(inputs) * (SAMPLE // len(inputs) + 1))[:SAMPLE]
    loaded = {}
    try:
        for bt in CANDIDATES:
            loaded[bt] = Classifier.load(folder, device=device, variant=variant, threads=threads, batch_tokens=bt)
        rates = _speed.interleaved(loaded, sample, max_texts=SAMPLE)
    finally:
        for clf in loaded.values():
            clf.close()
    speed = {bt: r["seq_per_s"] for bt, r in rates.items()}
    # Budgets no other beats beyond the noise are tied: take the one nearest the middle of the
    # candidates (then the larger). The extremes differ most from each other, so preferring one
    # of them made the choice flip between runs; the middle is rarely beaten by much.
    best = _speed.pick(list(rates.items()), tie_order, MIN_GAIN)
    log.info("token budget per batch for %s on %s: %d (seq/s by budget: %s)", variant, device, best,
             ", ".join(f"{bt} {s:.1f}" for bt, s in speed.items()))
    return {"batch_tokens": best, "variant": variant, "device": device,
            "seq_per_s": {str(bt): s for bt, s in speed.items()}, "texts": len(sample),
            "spread": {str(bt): r["spread"] for bt, r in rates.items()}}
