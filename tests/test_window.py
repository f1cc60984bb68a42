"""The export's window search (bertfast/exporter/window.py) and the runtime's use of its choice."""

from __future__ import annotations

import json
import shutil

import pytest
from _export_helpers import make_export, sharpen

from bertfast import Classifier
from bertfast.errors import BertfastError
from bertfast.exporter import window as W
from bertfast.exporter.report import format_table
from bertfast.manifest import ManifestError, load_manifest


def test_grid_shorter_windows_per_mode():
    g = W.grid(128, longest=400, pair=False)
    assert g == {"truncate": [96, 64, 32], "head-tail": [96, 64, 32]}
    # Pairs are cut by pair_truncation: no head-tail.
    assert W.grid(128, longest=400, pair=True) == {"truncate": [96, 64, 32]}
    # Windows at or over the longest eval input change nothing the eval data can show.
    assert W.grid(128, longest=70, pair=False)["truncate"] == [64, 32]
    assert W.grid(128, longest=30, pair=False) == {}
    # Never under MIN_WINDOW, always multiples of 8, always shorter than the training length.
    assert W.grid(40, longest=1000, pair=False)["truncate"] == [24, 16]
    assert W.grid(16, longest=1000, pair=False) == {}


def _entry(n, mode, seq_s, ok=True, agree=1.0):
    return {"max_length": n, "long_text": mode, "eligible": ok, "reason": "r",
            "validation": {"label_agreement": agree}, "speed": {"seq_per_s": seq_s}}


def test_choose_fastest_accepted_window():
    variants = {
        "fp32": {"validation": {"batch_flips": 0.0}, "windows": [_entry(128, "truncate", 10), _entry(64, "truncate", 30)]},
        "int8": {"validation": {"batch_flips": 0.0}, "windows": [_entry(128, "truncate", 20),
                                                                  _entry(64, "truncate", 50, ok=False)]},
    }
    assert W.choose(variants) == {"variant": "fp32", "max_length": 64, "long_text": "truncate"}


def test_choose_tie_prefers_batch_invariant_then_longer_window():
    variants = {
        "dyn": {"validation": {"batch_flips": 0.02}, "windows": [_entry(96, "truncate", 100)]},
        "static": {"validation": {"batch_flips": 0.0}, "windows": [_entry(64, "truncate", 99), _entry(96, "truncate", 98)]},
    }
    # All within 3%: the batch-invariant variant wins, and of its windows the longer one.
    assert W.choose(variants) == {"variant": "static", "max_length": 96, "long_text": "truncate"}
    assert W.choose({"fp32": {"windows": [_entry(64, "truncate", 10, ok=False)]}}) is None


def _with_window(export, tmp_path, window):
    dst = tmp_path / "export"
    shutil.copytree(export, dst)
    raw = json.loads((dst / "bertfast.json").read_text())
    raw["window"] = window
    (dst / "bertfast.json").write_text(json.dumps(raw))
    return dst


@pytest.fixture
def plain_export(tiny_model, tmp_path):
    # Sharpened: a tiny random model's scores barely depend on the text (transformers 5's init
    # most), which would hide what a window changes.
    return make_export(sharpen(tiny_model, tmp_path / "sharp"), tmp_path / "plain", max_length=64)


def test_runtime_uses_the_chosen_window_unless_the_caller_sets_one(plain_export, tmp_path):
    ex = _with_window(plain_export, tmp_path, {"cpu": {"variant": "fp32", "max_length": 32, "long_text": "head-tail"}})
    with Classifier.load(ex, device="cpu") as clf:
        assert (clf.options.max_length, clf.options.long_text) == (32, "head-tail")
        assert (clf.batcher.max_length, clf.batcher.long_text) == (32, "head-tail")
    # A caller's max_length wins, and the chosen mode does not travel without its length.
    with Classifier.load(ex, device="cpu", max_length=48) as clf:
        assert (clf.options.max_length, clf.options.long_text) == (48, "truncate")
    # A caller's long_text wins, at the export's (validated) max length.
    with Classifier.load(ex, device="cpu", long_text="sliding-window") as clf:
        assert (clf.options.max_length, clf.options.long_text) == (64, "sliding-window")


def test_window_applies_only_to_the_variant_it_was_chosen_with(plain_export, tmp_path):
    ex = _with_window(plain_export, tmp_path, {"cpu": {"variant": "int8-x", "max_length": 32, "long_text": "truncate"}})
    with Classifier.load(ex, device="cpu") as clf:
        assert (clf.options.variant, clf.options.max_length, clf.options.long_text) == ("fp32", 64, "truncate")


def test_window_decides_what_the_model_sees(plain_export, tmp_path):
    """Under the chosen window the model sees the first 16 tokens: two texts that differ only
    after them get the same ids (and scores); at the caller's max_length they do not."""
    ex = _with_window(plain_export, tmp_path, {"cpu": {"variant": "fp32", "max_length": 16, "long_text": "truncate"}})
    head = "match goal team win league " * 3  # 15 tokens: past the 14 a 16-token window holds
    a, b = head + "vote election minister " * 20, head + "phone software chip " * 20
    with Classifier.load(ex, device="cpu") as clf:
        (ia, ib), _ = clf.batcher.windows([a, b])
        pa, pb = clf.predict_proba([a, b])
    assert ia == ib and len(ia) == 16
    assert (pa == pb).all()
    with Classifier.load(ex, device="cpu", max_length=64) as clf:
        (ia, ib), _ = clf.batcher.windows([a, b])
    assert ia != ib and len(ia) == len(ib) == 64


@pytest.mark.parametrize("window, field", [
    ({"cpu": {"variant": "fp32", "max_length": 2, "long_text": "truncate"}}, "window.cpu.max_length"),
    ({"cpu": {"variant": "fp32", "max_length": 32, "long_text": "sliding-window"}}, "window.cpu.long_text"),
    ({"cpu": {"max_length": 32, "long_text": "truncate"}}, "window.cpu.variant"),
    ({"cpu": {"variant": "fp32", "max_length": 96, "long_text": "truncate"}}, "window.cpu.max_length"),
    ({"cpu": 32}, "window.cpu"),
])
def test_bad_window_in_manifest_names_the_field(plain_export, tmp_path, window, field):
    ex = _with_window(plain_export, tmp_path, window)
    with pytest.raises(ManifestError, match=f"`{field}`"):
        load_manifest(ex)


def test_export_searches_windows_and_records_the_choice(tiny_trained, tmp_path):
    """With a gate that accepts anything, the search runs every window of every mode, and the
    default is one of them; the runtime loads it; the table shows the grid."""
    from bertfast.exporter import ExportConfig, export

    out = export(ExportConfig(model_dir=str(tiny_trained), out=str(tmp_path / "ex"), variants="fp32,int8-dynamic-pc",
                              max_metric_drop=100, min_agreement=0, accept_weak_reference=True))
    m = load_manifest(out)
    for name in ("fp32", "int8-dynamic-pc"):
        wins = m.variants[name]["windows"]
        assert (wins[0]["max_length"], wins[0]["long_text"]) == (64, "truncate")  # the training length first
        tried = {(w["max_length"], w["long_text"]) for w in wins[1:]}
        assert {(n, mode) for n, mode in tried} <= {(48, "truncate"), (32, "truncate"), (16, "truncate"),
                                                    (48, "head-tail"), (32, "head-tail"), (16, "head-tail")}
        assert (16, "truncate") in tried and (16, "head-tail") in tried  # nothing rejected: every window tried
        assert all(w["eligible"] and w["speed"]["seq_per_s"] > 0 for w in wins)
    chosen = m.window["cpu"]
    assert m.default["cpu"] == chosen["variant"]
    entry = next(w for w in m.variants[chosen["variant"]]["windows"]
                 if (w["max_length"], w["long_text"]) == (chosen["max_length"], chosen["long_text"]))
    from bertfast.exporter.speed import beats

    # no accepted (variant, window) is faster beyond the timing noise (exporter/speed.py)
    assert not any(beats(w["speed"], entry["speed"]) for v in m.variants.values() for w in v.get("windows", [])
                   if w.get("eligible") and w.get("speed"))
    with Classifier.load(out, device="cpu") as clf:
        assert (clf.options.max_length, clf.options.long_text) == (chosen["max_length"], chosen["long_text"])
    table = format_table(m.raw)
    assert "window search on the CPU" in table and "<- default cpu" in table.split("window search")[1]


def test_strict_gate_stops_each_mode_at_its_first_rejection(tiny_trained, tmp_path):
    from bertfast.exporter import ExportConfig, export

    out = export(ExportConfig(model_dir=str(tiny_trained), out=str(tmp_path / "ex"), variants="fp32",
                              max_metric_drop=0, min_agreement=100, accept_weak_reference=True))
    m = load_manifest(out)
    for mode in ("truncate", "head-tail"):
        wins = [w for w in m.variants["fp32"]["windows"][1:] if w["long_text"] == mode]
        # Every window before the last was accepted; the search stopped right after a rejection.
        assert all(w["eligible"] for w in wins[:-1])
        if wins and not wins[-1]["eligible"]:
            assert "REJECTED" in format_table(m.raw)
    if m.window:  # a shorter window can only be chosen if it kept every decision
        entry = next(w for w in m.variants["fp32"]["windows"] if w["max_length"] == m.window["cpu"]["max_length"]
                     and w["long_text"] == m.window["cpu"]["long_text"])
        assert entry["validation"]["label_agreement"] == 1.0


def test_no_window_search(tiny_trained, tmp_path):
    from bertfast.exporter import ExportConfig, export

    out = export(ExportConfig(model_dir=str(tiny_trained), out=str(tmp_path / "ex"), variants="fp32",
                              window_search=False, accept_weak_reference=True))
    m = load_manifest(out)
    assert m.window is None and "windows" not in m.variants["fp32"]
    with pytest.raises(BertfastError, match="--window-search"):
        ExportConfig(model_dir=str(tiny_trained), window_search="yes")


def test_bench_counts_the_tokens_a_windowed_backend_runs():
    """tokens/s and % of peak of a bertfast default on a shorter window count what it computed."""
    import numpy as np

    from bertfast.bench.harness import _backend_work

    class Windowed:
        info = {"window": {"max_length": 64, "long_text": "truncate"}}

    class Full:
        info = {"window": {"max_length": 128, "long_text": "truncate"}}

    tokens = np.array([128, 100, 30])
    cut, flops = _backend_work(Windowed, tokens, 9.0, None, 128)
    assert cut.tolist() == [64, 64, 30] and flops is None  # no model shape: no FLOPs to count
    same, flops = _backend_work(Full, tokens, 9.0, None, 128)
    assert same is tokens and flops == 9.0
