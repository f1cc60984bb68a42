"""Speed decisions that do not change between runs: interleaved, repeated timings with their
spread, and a rule that lets one candidate beat another only by more than the noise.

Every speed choice of the export (default variant per provider, window, token budget) times
its candidates in interleaved rounds (each round runs every candidate once, the order rotating),
so a burst of load on a shared machine hits all of them in the same round. Candidate A beats B
only when A was faster by more than MIN_GAIN / 2 in every round and the median of the per-round
ratios A/B exceeds 1 + max(MIN_GAIN, half the ratios' range): a sign test over the rounds plus
a margin over the measured spread. Candidates no other one beats are tied, and the tie goes to the more faithful
one (`faithful` keys: batch-invariant, higher agreement bound, smaller drop), then to a fixed
order, never to the last timing. So two exports of the same model on a busy machine pick the
same default unless one candidate is clearly faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

import numpy as np

ROUNDS = 5
ROUND_SECONDS = 0.3
MIN_GAIN = 0.05  # below 5% no short measurement on a shared machine decides anything


def interleaved(classifiers: dict, texts: list, rounds: int = ROUNDS, round_seconds: float = ROUND_SECONDS,
                max_texts: int = 32, clock: Callable[[], float] = time.perf_counter) -> dict[Hashable, dict]:
    """End-to-end throughput of each loaded Classifier (tokenization included), per round.

    Returns per candidate: `seq_per_s` (median of rounds), `rounds_seq_per_s` (every round, in
    round order: the rounds line up across candidates), `spread` ((max - min) / median),
    `rounds`, `texts`, `threads`, `device`. A ranking signal, not a benchmark.
    """
    sample = texts[:max_texts]
    for clf in classifiers.values():
        clf.predict_proba(sample[:8])  # warm-up: first-run allocations, kernel selection
    rates: dict = {n: [] for n in classifiers}
    names = list(classifiers)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)] if names else names  # rotate the order
        for name in order:
            clf, n, t0 = classifiers[name], 0, clock()
            while True:
                clf.predict_proba(sample)
                n += len(sample)
                el = clock() - t0
                if el >= round_seconds:
                    break
            rates[name].append(n / el)
    out = {}
    for name, v in rates.items():
        med = float(np.median(v))
        out[name] = {"seq_per_s": round(med, 1), "rounds_seq_per_s": [round(x, 2) for x in v],
                     "spread": round((max(v) - min(v)) / med, 4) if med else 0.0, "rounds": rounds,
                     "texts": len(sample), "threads": classifiers[name].threads, "device": classifiers[name].device}
    return out


def beats(a: dict, b: dict, min_gain: float = MIN_GAIN) -> bool:
    """Whether speed record `a` is faster than `b` beyond the noise (see the module docstring).
    Records without rounds (older manifests, hand-made ones) compare medians with `min_gain`."""
    ra, rb = a.get("rounds_seq_per_s"), b.get("rounds_seq_per_s")
    if ra and rb and len(ra) == len(rb):
        ratios = np.asarray(ra, np.float64) / np.maximum(np.asarray(rb, np.float64), 1e-9)
        noise = (ratios.max() - ratios.min()) / 2
        return bool(ratios.min() > 1 + min_gain / 2 and np.median(ratios) > 1 + max(min_gain, noise))
    return a["seq_per_s"] > (1 + min_gain) * b["seq_per_s"]


def pick(cands: list[tuple[Hashable, dict]], faithful: Callable[[Hashable], tuple],
         min_gain: float = MIN_GAIN) -> Hashable:
    """The candidate key to use: among those no other beats on speed (by more than `min_gain`
    and the noise), the most faithful (`faithful(key)`: larger is better), then the first in
    `cands`' order."""
    unbeaten = [(i, k) for i, (k, sp) in enumerate(cands)
                if not any(beats(other, sp, min_gain) for j, (_, other) in enumerate(cands) if j != i)]
    return max(unbeaten, key=lambda ik: (faithful(ik[1]), -ik[0]))[1]
