"""The gate's evidence (bertfast/exporter/evidence.py), checked by simulation: the 95% interval of
the flip rate estimated from every input's margin covers the true rate, and 300 inputs tell a
0.1% flip rate from a 1% one, where counting flips alone cannot."""

from __future__ import annotations

import numpy as np
import pytest

from bertfast.exporter import evidence


def _population(rng, n, sigma, shape=2.0):
    """Margins with few decisions near the boundary (density rising from zero, as a trained
    classifier's top-1 minus runner-up), perturbed by quantization-like noise."""
    return rng.beta(shape, 1.0, (n, 1)), rng.normal(0.0, sigma, (n, 1))


def _true_rate(sigma, shape=2.0, n=2_000_000):
    m, d = _population(np.random.default_rng(123), n, sigma, shape)
    return float(np.mean(d <= -m))


@pytest.mark.parametrize("sigma", [0.03, 0.2])
def test_interval_upper_end_covers_the_true_flip_rate(sigma):
    truth = _true_rate(sigma)
    rng = np.random.default_rng(7)
    covered = sum(evidence.flip_rate(*_population(rng, 300, sigma))["flip_ci"][1] >= truth for _ in range(40))
    assert covered >= 36, (truth, covered)  # >= 90% of 40 simulated eval sets (nominal 97.5%)


def test_300_inputs_tell_a_tenth_of_a_percent_from_one_percent():
    low, high = 0.045, 0.13  # noise levels giving ~0.1% and ~0.9% flips
    assert 0.0008 < _true_rate(low) < 0.0012 and 0.008 < _true_rate(high) < 0.012
    rng = np.random.default_rng(11)
    lows = [evidence.flip_rate(*_population(rng, 300, low))["flip_ci"] for _ in range(40)]
    highs = [evidence.flip_rate(*_population(rng, 300, high))["flip_ci"] for _ in range(40)]
    # the 0.1% world's interval stays under 1%, the 1% world's stays over 0.1%
    assert sum(hi < 0.01 for _, hi in lows) >= 36 and sum(lo > 0.001 for lo, _ in highs) >= 36
    # and a 0.05% world is shown within the default gate (99.5% agreement) on 300 inputs
    shown = sum(evidence.flip_rate(*_population(rng, 300, 0.03))["flip_ci"][1] <= 0.005 for _ in range(40))
    assert shown >= 32, shown
    # Counting flips alone cannot: 0 flips in 300 bounds the rate only at ~1.3% (Wilson).
    assert evidence.wilson(0, 300)[1] > 0.01


def test_same_inputs_same_interval():
    m, d = _population(np.random.default_rng(3), 200, 0.05)
    assert evidence.flip_rate(m, d) == evidence.flip_rate(m, d)


def test_rows_of_several_decisions_flip_when_any_does():
    rng = np.random.default_rng(5)
    m, d = rng.beta(2, 1, (300, 4)), rng.normal(0, 0.1, (300, 4))
    one = evidence.flip_rate(m[:, :1], d[:, :1])["flip_rate"]
    assert evidence.flip_rate(m, d)["flip_rate"] >= one


def test_texts_needed():
    assert evidence.texts_needed(200, 0.001, 0.009, 0.005) == int(np.ceil(200 * (0.008 / 0.004) ** 2))
    assert evidence.texts_needed(200, 0.006, 0.02, 0.005) is None  # the estimate itself is over the limit
    assert evidence.texts_needed(200, 0.001, 0.004, 0.005) is None  # already shown


def test_strata_keep_short_texts_with_small_margins_and_large_moves_apart():
    """Headlines under int8: smaller margins and larger moves together. Pooled with articles the
    flips are averaged away; within length strata they are not, and the bound is never above
    the agreement actually seen."""
    rng = np.random.default_rng(9)
    n = 400
    short = np.arange(2 * n) < n
    m = np.where(short, rng.beta(1, 3, 2 * n), rng.beta(4, 1, 2 * n))[:, None]
    d = rng.normal(0, np.where(short, 0.12, 0.01), 2 * n)[:, None]
    seen = float(np.mean(d <= -m))
    pooled = evidence.flip_rate(m, d)
    strat = evidence.flip_rate(m, d, strata=short.astype(int))
    assert strat["flip_ci"][1] >= seen and pooled["flip_ci"][1] >= seen  # never fewer flips than seen
    # half the inputs are short: the population's rate is half the short texts' (articles ~never flip)
    truth = 0.5 * float(np.mean(rng.normal(0, 0.12, 200_000) <= -rng.beta(1, 3, 200_000)))
    assert strat["flip_ci"][0] <= truth <= strat["flip_ci"][1], (truth, strat)
    assert evidence.length_strata(["a" * k for k in range(40)]).tolist() == [0] * 10 + [1] * 10 + [2] * 10 + [3] * 10


def _student_like(rng, n, rate):
    """A different model (a distilled student): most decisions barely move, a content-chosen
    `rate` of them land far on the other side, whatever their margin."""
    m, d = _population(rng, n, 0.01)
    far = rng.random(n) < rate
    d[far, 0] = -m[far, 0] - rng.uniform(0.2, 1.0, far.sum())
    return m, d


def test_a_different_models_flips_are_counted_because_pooling_them_overclaims():
    rate, rng = 0.015, np.random.default_rng(17)
    sets = [_student_like(rng, 223, rate) for _ in range(40)]
    pooled = sum(evidence.flip_rate(m, d)["flip_ci"][1] >= rate for m, d in sets)
    counted = sum(evidence.counted_rate(m, d)["flip_ci"][1] >= rate for m, d in sets)
    assert counted >= 36, counted  # the Wilson interval covers the true rate (nominal 97.5%)
    # pooling its moves misses the coverage the quantization-noise test above holds it to
    assert pooled < 36 and pooled < counted, (pooled, counted)
    m, d = sets[0]
    k = int((d <= -m).sum())
    assert evidence.counted_rate(m, d) == {"flip_rate": round(k / 223, 6), "flip_ci": evidence.wilson(k, 223), "n": 223,
                                           "method": "counted"}


def test_flips_the_margins_cannot_explain_are_counted():
    # Inputs near the boundary move more than the rest (BBC pairs under int8): pooled moves
    # predict almost no flips, two were seen; the bound must not sit at the agreement seen.
    rng = np.random.default_rng(2)
    m, d = rng.beta(2.0, 1.0, (400, 1)) + 0.05, rng.normal(0.0, 0.001, (400, 1))
    m[:2, 0], d[:2, 0] = 0.01, -0.02
    r = evidence.flip_rate(m, d)
    assert r["method"] == "counted" and r["flip_ci"] == evidence.wilson(2, 400)
    assert r["flip_ci"][1] > 2 / 400 + 0.005  # a real upper end, not the rate seen
    # noise that does not know the margin keeps the margins' estimate
    assert evidence.flip_rate(*_population(rng, 300, 0.03))["method"] == "margins"
