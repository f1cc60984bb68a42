"""How sure the gate is: a variant's disagreement rate and metric drop with a 95% interval.

Counting flips alone says little on a few hundred inputs: 0 flips in 156 is compatible with a
true flip rate near 2%. Every input carries more information than "flipped or not": how far
the reference's decision stands from its boundary (the margin `m`, e.g. the best class's
probability minus the runner-up's) and how far the variant moved it (`d`, negative towards the
boundary; see `Task.margins`). A decision flips where `d <= -m`. Assuming a variant's
perturbations do not depend on where a decision stands (quantization noise does not know the
margin), the flip rate of the population is

    p = E_i[ P(d <= -m_i) ]

estimated with every input's margin against the pooled perturbations of all inputs (n x n
pairs instead of n flips). The pooled tail P(d <= -x) is the empirical share where the sample
reaches, and past the largest move seen a normal tail fitted to the perturbations (capped at
one sample's share), so a margin no perturbation reached still counts for a little. A row with several decisions (multi-label)
flips when any does. The 95% interval comes from a bootstrap over inputs (margins and
perturbations resampled together). Margins meet moves only within a stratum of inputs of
similar length (quartiles): short texts can have both smaller margins and larger moves (int8 on
headlines), which pooling them with long ones would average away. Where even the interval's
upper end predicts fewer flips than were seen, the moves evidently depend on the margins and
the flips are counted instead (Wilson): on BBC pairs, int8 variants flipped pairs near the
boundary more than the pooled moves predicted, and the bound had sat at the agreement seen. `tests/test_evidence.py` checks by simulation that
the interval covers the true rate and separates a 0.1% flip rate from a 1% one on 300 inputs.

That assumption holds for a perturbation of the same weights (quantization), not for a different
model: a distilled student disagrees where it learned a different function, on inputs chosen by
their content, with moves far larger than any quantization noise. Pooling its moves claimed
99.44% agreement (bound) from 1 flip in 223 validation articles; on 223 unseen articles it
agreed on 98.21% (benchmarks/results/compress-minilm-bbc-windows). A student's flips are
therefore counted (`counted_rate`: the flips seen with a Wilson interval), which needs more
inputs (`--agreement-data`) to show the same agreement, and does not overclaim.

The metric drop gets a paired bootstrap interval (the same resampled inputs for the reference
and the variant). Batch invariance, measured on a small sample, gets a Wilson interval.
Intervals are seeded: the same inputs give the same verdict on every run.
"""

from __future__ import annotations

import math

import numpy as np

BOOTSTRAP = 300
SEED = 0
NEAR = 10  # margins near zero: the smallest this many set the density there
LEVEL = 0.95
Z = 1.959964  # the normal quantile of a two-sided 95% interval


def _normal_tail(x: np.ndarray) -> np.ndarray:
    """P(Z >= x) for a standard normal, x >= 0 (Abramowitz & Stegun 7.1.26, error < 1.5e-7)."""
    z = np.asarray(x, np.float64) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return 0.5 * poly * np.exp(-z * z)


def _flip_rate(m: np.ndarray, d: np.ndarray) -> float:
    """The estimated share of rows with a flipped decision (see the module docstring)."""
    margins, moves = np.sort(m.ravel()), d.ravel()
    n = margins.size
    reach = np.maximum(-moves, 0.0)  # the margin each move would overturn
    share = np.searchsorted(margins, reach, side="right") / n
    # Near zero the sample holds few margins: count no fewer below x than a uniform density up
    # to the NEAR-th smallest margin gives (conservative where the density rises from zero).
    near = min(NEAR, n)
    edge = margins[near - 1]
    if edge > 0:
        share = np.maximum(share, np.minimum(reach / edge, 1.0) * near / n)
    # Past the largest move seen: a normal tail fitted to the moves, at most one sample's share.
    sd = float(moves.std())
    tail = _normal_tail(np.maximum(margins + float(moves.mean()), 0) / sd) if sd > 0 else np.zeros(n)
    per_decision = max(float(share.mean()), float(np.minimum(tail, 1.0 / n).mean()))
    # A row of k decisions flips when any does: at most k times one decision's rate.
    return min(1.0, m.shape[1] * per_decision)


def _stratified(m: np.ndarray, d: np.ndarray, strata: np.ndarray | None) -> float:
    """`_flip_rate` within each stratum of similar inputs, weighted by the strata's sizes."""
    if strata is None:
        return _flip_rate(m, d)
    total = 0.0
    for s in np.unique(strata):
        idx = strata == s
        total += idx.sum() * _flip_rate(m[idx], d[idx])
    return total / len(m)


def flip_rate(m: np.ndarray, d: np.ndarray, boot: int = BOOTSTRAP, seed: int = SEED,
              strata: np.ndarray | None = None) -> dict:
    """The disagreement rate's estimate and 95% interval from margins `m` and moves `d` ([n, k]).

    `strata`: a group per input (e.g. its length quartile): margins meet moves only within a
    group, so inputs whose margins are small *and* whose moves are large (short texts under
    int8) are not averaged away by the others. Where the interval's upper end would not exceed
    the flip rate seen, the flips are counted (`counted_rate`, `method` says which).
    """
    n = len(m)
    if n == 0:
        return {"flip_rate": 0.0, "flip_ci": [0.0, 1.0], "n": 0, "method": "margins"}
    rng = np.random.default_rng(seed)
    seen = float(np.mean((d <= -m).any(axis=1)))
    point = max(_stratified(m, d, strata), seen)
    draws = []
    for _ in range(boot):
        idx = rng.integers(0, n, n)
        draws.append(_stratified(m[idx], d[idx], None if strata is None else strata[idx]))
    lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    if seen > 0 and hi <= seen:
        # Even its interval's end predicts fewer flips than were seen: the flips came from
        # moves that do depend on the margin (inputs near the boundary moving more), so the
        # model does not hold for this variant; count instead.
        return counted_rate(m, d)
    return {"flip_rate": round(point, 6), "flip_ci": [round(float(min(lo, hi)), 6), round(float(hi), 6)], "n": int(n),
            "method": "margins"}


def counted_rate(m: np.ndarray, d: np.ndarray) -> dict:
    """`flip_rate`'s dict from the flips seen alone (Wilson interval): for a variant that is a
    different model, whose moves depend on the input (see the module docstring)."""
    n = len(m)
    k = int((d <= -m).any(axis=1).sum()) if n else 0
    return {"flip_rate": round(k / n, 6) if n else 0.0, "flip_ci": wilson(k, n), "n": int(n), "method": "counted"}


def length_strata(inputs: list, k: int = 4) -> np.ndarray:
    """A length quartile per input (characters; both texts of a pair), for `flip_rate`."""
    n = np.array([len(x[0]) + len(x[1]) if isinstance(x, tuple) else len(x) for x in inputs], dtype=float)
    if len(n) < 4 * k:
        return np.zeros(len(n), dtype=int)
    edges = np.quantile(n, np.linspace(0, 1, k + 1)[1:-1])
    return np.searchsorted(edges, n, side="right")


def paired_drop(metric, ref: np.ndarray, scores: np.ndarray, y: np.ndarray, sign: float,
                boot: int = BOOTSTRAP, seed: int = SEED) -> list[float]:
    """95% interval of `sign x (metric(ref) - metric(variant)) x 100` over resampled inputs.

    `metric(scores, y, idx)` is the task's primary metric on rows `idx`.
    """
    n = len(y)
    if n == 0:
        return [0.0, 0.0]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(boot):
        idx = rng.integers(0, n, n)
        draws.append(sign * (metric(ref, y, idx) - metric(scores, y, idx)) * 100)
    lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return [round(float(lo), 4), round(float(hi), 4)]


def wilson(k: int, n: int, z: float = Z) -> list[float]:
    """95% Wilson interval of a share k / n."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6)]


def texts_needed(n: int, point: float, upper: float, limit: float) -> int | None:
    """About how many inputs would bring the interval's upper end under `limit` (the interval
    narrows as 1/sqrt(n)); None when the estimate itself is over the limit (more data would
    only confirm the rejection)."""
    if point >= limit or upper <= limit or n == 0:
        return None
    return int(math.ceil(n * ((upper - point) / (limit - point)) ** 2))
