"""Speed decisions that hold when the command runs again (bertfast/exporter/speed.py): a stand-in
clock injects load noise into interleaved rounds; a candidate wins only beyond the noise, and
ties go to the most faithful one, the same way on every seed."""

from __future__ import annotations

import numpy as np

from bertfast.exporter import speed


class _Clock:
    """A clock whose seconds stretch with the load of the moment: each call advances by the work
    the last predict did (set by the fake classifier) times a load factor that jumps every
    quarter second (another process starting and stopping: up to 60% slower) and a per-call
    jitter of up to 10%."""

    def __init__(self, rng):
        self.t, self.rng, self.pending, self.bursts = 0.0, rng, 0.0, {}

    def __call__(self):
        slot = int(self.t / 0.25)
        burst = self.bursts.setdefault(slot, self.rng.uniform(1.0, 1.6))
        self.t += self.pending * burst * self.rng.uniform(1.0, 1.1)
        self.pending = 0.0
        return self.t


class _Fake:
    def __init__(self, clock, seconds_per_text, threads=2, device="cpu"):
        self.clock, self.cost, self.threads, self.device = clock, seconds_per_text, threads, device

    def predict_proba(self, texts):
        self.clock.pending += self.cost * len(texts)


def _choose(costs: dict, faith: dict, seed: int):
    clock = _Clock(np.random.default_rng(seed))
    clfs = {k: _Fake(clock, c) for k, c in costs.items()}
    rates = speed.interleaved(clfs, ["t"] * 32, clock=clock)
    return speed.pick(list(rates.items()), lambda k: faith[k]), rates


def test_equal_speed_goes_to_the_more_faithful_on_every_run():
    costs = {"int8-dynamic-pc": 0.001, "int8-dynamic-pc-fr": 0.00102}  # 2% apart: within the noise
    faith = {"int8-dynamic-pc": (0.995,), "int8-dynamic-pc-fr": (0.999,)}
    picks = {_choose(costs, faith, seed)[0] for seed in range(25)}
    assert picks == {"int8-dynamic-pc-fr"}


def test_a_clearly_faster_candidate_wins_on_every_run():
    costs = {"fp32": 0.002, "int8": 0.001}
    faith = {"fp32": (1.0,), "int8": (0.996,)}
    picks = {_choose(costs, faith, seed)[0] for seed in range(25)}
    assert picks == {"int8"}


def test_the_records_carry_their_rounds_and_spread():
    _, rates = _choose({"a": 0.001}, {"a": ()}, 0)
    r = rates["a"]
    assert len(r["rounds_seq_per_s"]) == speed.ROUNDS and r["spread"] > 0
    assert r["seq_per_s"] == round(float(np.median(r["rounds_seq_per_s"])), 1)


def test_records_without_rounds_compare_medians_with_a_margin():
    assert speed.beats({"seq_per_s": 110}, {"seq_per_s": 100})
    assert not speed.beats({"seq_per_s": 104}, {"seq_per_s": 100})


def test_token_budgets_within_the_noise_go_to_the_middle_one():
    from bertfast.exporter.budget import CANDIDATES, MIN_GAIN, tie_order

    # the two exports of one model that chose 4096 and 1024 (benchmarks/results/gate-minilm-bbc)
    for measured in ({1024: 98.3, 2048: 104.7, 4096: 100.8, 8192: 95.0, 16384: 93.4},
                     {1024: 107.3, 2048: 102.9, 4096: 100.4, 8192: 95.7, 16384: 92.8}):
        rates = [(bt, {"seq_per_s": measured[bt]}) for bt in CANDIDATES]
        assert speed.pick(rates, tie_order, MIN_GAIN) == 4096
    rates = [(bt, {"seq_per_s": 200.0 if bt == 1024 else 100.0}) for bt in CANDIDATES]
    assert speed.pick(rates, tie_order, MIN_GAIN) == 1024  # a clear winner still wins
