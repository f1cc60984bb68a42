"""RuntimeOptions: one check per setting, errors that name the argument or the flag, CLI flags
generated from the fields, and `Classifier.load(path, options=..., **overrides)`."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import pytest
from _export_helpers import make_export

from bertfast.errors import BertfastError
from bertfast.runtime import options as options_mod
from bertfast.runtime.classifier import Classifier
from bertfast.runtime.options import AGGREGATE, LONG_TEXT, RuntimeOptions, add_arguments
from bertfast.runtime.providers import DEVICES

# One bad value per field, and the start of the message it must give. A new field without a
# row here fails `test_every_field_has_a_bad_value`.
BAD = {
    "device": ("tpu", "must be one of auto, cpu, cuda, tensorrt; got 'tpu'"),
    "variant": (5, "must be a string; got int"),
    "threads": (0, "must be an integer >= 1; got 0"),
    "long_text": ("chop", "must be one of truncate, head-tail, sliding-window; got 'chop'"),
    "stride": (-1, "must be an integer >= 0; got -1"),
    "aggregate": ("median", "must be one of mean, max; got 'median'"),
    "batch_tokens": (0, "must be an integer >= 1; got 0"),
    "max_batch_size": (2.5, "must be an integer >= 1; got 2.5"),
    "max_length": (2, "must be an integer >= 3; got 2"),
    "allow_spinning": ("yes", "must be True or False; got 'yes'"),
    "streams": (True, "must be an integer >= 1; got True"),
    "pair_truncation": ("longest", "must be one of longest_first, only_second, only_first; got 'longest'"),
}


@pytest.fixture(scope="module")
def export_dir(_tiny_model_session, tmp_path_factory) -> Path:
    return make_export(_tiny_model_session, tmp_path_factory.mktemp("export") / "tiny", max_length=32)


def test_every_field_has_a_bad_value():
    assert set(BAD) == {f.name for f in fields(RuntimeOptions)}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_field_is_checked_and_named(name):
    value, problem = BAD[name]
    with pytest.raises(BertfastError) as e:
        RuntimeOptions(**{name: value})
    assert str(e.value) == f"{name} {problem}."
    with pytest.raises(BertfastError) as e:
        RuntimeOptions().replace(**{name: value})
    assert str(e.value) == f"{name} {problem}."
    flag = "--" + name.replace("_", "-")
    with pytest.raises(BertfastError) as e:
        RuntimeOptions.from_flags(**{name: value})
    assert str(e.value) == f"{flag} {problem}."


def test_defaults_and_good_values():
    o = RuntimeOptions()
    # long_text None: the export's chosen window, else truncate (resolved at load)
    assert (o.device, o.variant, o.threads, o.long_text, o.aggregate) == ("auto", None, None, None, "mean")
    # batch_tokens None: the export's measured budget, else DEFAULT_BATCH_TOKENS (resolved at load)
    assert (o.batch_tokens, o.max_batch_size, o.allow_spinning, o.streams) == (None, 256, True, None)
    for device in DEVICES:
        assert RuntimeOptions(device=device).device == device
    for mode in LONG_TEXT:
        assert RuntimeOptions(long_text=mode, stride=0).long_text == mode
    for agg in AGGREGATE:
        assert RuntimeOptions(aggregate=agg).aggregate == agg
    o2 = o.replace(threads=3, allow_spinning=False)
    assert (o2.threads, o2.allow_spinning, o.threads) == (3, False, None)  # a copy; frozen original unchanged
    with pytest.raises(Exception):  # noqa: B017 - FrozenInstanceError
        o.threads = 2


def test_unknown_option_is_named():
    with pytest.raises(BertfastError, match="unknown option.*thread.*valid: device, variant, threads"):
        RuntimeOptions().replace(thread=2)


def test_from_flags_ignores_unset_and_foreign_values():
    o = RuntimeOptions.from_flags(device="cpu", threads=None, long_text="head-tail", out="x.jsonl", top_k=2)
    assert o == RuntimeOptions(device="cpu", long_text="head-tail")


def _parser(skip=()) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_arguments(p, skip=skip)
    return p


def test_add_arguments_one_flag_per_field():
    p = _parser()
    by_dest = {a.dest: a for a in p._actions if a.dest != "help"}
    assert set(by_dest) == {f.name for f in fields(RuntimeOptions)}
    for name, action in by_dest.items():
        assert action.option_strings[0] == "--" + name.replace("_", "-")
        assert action.help
    assert tuple(by_dest["device"].choices) == DEVICES
    assert tuple(by_dest["long_text"].choices) == LONG_TEXT
    assert tuple(by_dest["aggregate"].choices) == AGGREGATE
    assert by_dest["threads"].type is int and by_dest["batch_tokens"].type is int
    assert "--no-allow-spinning" in by_dest["allow_spinning"].option_strings
    assert "--device" not in _parser(skip=("device",)).format_help()


def test_flags_round_trip_to_options():
    p = _parser()
    assert RuntimeOptions.from_namespace(p.parse_args([])) == RuntimeOptions()
    args = p.parse_args(["--device", "cpu", "--threads", "2", "--long-text", "sliding-window", "--stride", "4",
                         "--aggregate", "max", "--batch-tokens", "512", "--no-allow-spinning", "--streams", "2"])
    o = RuntimeOptions.from_namespace(args)
    assert o == RuntimeOptions(device="cpu", threads=2, long_text="sliding-window", stride=4, aggregate="max",
                               batch_tokens=512, allow_spinning=False, streams=2)
    with pytest.raises(SystemExit):
        p.parse_args(["--device", "tpu"])  # argparse rejects it from the generated choices
    with pytest.raises(BertfastError, match="^--threads must be an integer >= 1; got 0"):
        RuntimeOptions.from_namespace(p.parse_args(["--threads", "0"]))


def test_device_choices_follow_the_provider_table(monkeypatch):
    from bertfast.runtime import providers

    monkeypatch.setattr(providers, "DEVICES", ("auto", "cpu", "npu"))
    assert RuntimeOptions(device="npu").device == "npu"
    with pytest.raises(BertfastError, match="device must be one of auto, cpu, npu"):
        RuntimeOptions(device="cuda")
    assert options_mod._device_choices() == ("auto", "cpu", "npu")


# -- Classifier.load(path, options=..., **overrides) ----------------------------------------


def test_load_with_options_and_overrides(export_dir):
    opts = RuntimeOptions(device="cpu", threads=2, long_text="head-tail", batch_tokens=256)
    with Classifier.load(export_dir, options=opts, threads=1) as c:
        assert c.threads == 1 and c.options.threads == 1  # the override wins
        assert c.batcher.long_text == "head-tail" and c.batcher.batch_tokens == 256  # the rest is kept
        assert c.predict("a goal")["label"] in c.labels
    assert opts.threads == 2  # the caller's options are not changed


def test_options_are_resolved(export_dir):
    with Classifier.load(export_dir, device="cpu", long_text="sliding-window") as c:
        o = c.options
        assert (o.device, o.variant, o.max_length, o.streams) == ("cpu", "fp32", 32, 1)
        assert o.threads == c.threads >= 1 and o.stride == 32 // 4 == c.batcher.stride
    # Resolved options load the same classifier again.
    with Classifier.load(export_dir, options=o) as again:
        assert again.options == o


def test_load_keywords_match_options(export_dir):
    with Classifier.load(export_dir, device="cpu", max_length=16, aggregate="max", allow_spinning=False) as c:
        assert c.options == RuntimeOptions(device="cpu", max_length=16, aggregate="max", allow_spinning=False).replace(
            variant="fp32", threads=c.threads, stride=4, batch_tokens=8192,  # the export measured none
            long_text="truncate", streams=1)  # resolved: the caller set max_length; one stream
        assert c.batcher.max_length == 16 and c.aggregate == "max"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"streams": 0}, "^streams must be an integer >= 1; got 0"),
        ({"threads": "2"}, "^threads must be an integer >= 1; got '2'"),
        ({"device": "gpu"}, "^device must be one of auto, cpu, cuda, tensorrt; got 'gpu'"),
        ({"max_lenght": 64}, "unknown option.*max_lenght"),
    ],
)
def test_bad_override_errors_before_loading(overrides, message, tmp_path):
    # The folder does not exist: the setting is checked first, so its message wins.
    with pytest.raises(BertfastError, match=message):
        Classifier.load(tmp_path / "missing", options=RuntimeOptions(device="cpu"), **overrides)


def test_options_must_be_runtime_options(export_dir):
    with pytest.raises(BertfastError, match="options must be a RuntimeOptions .*device='cpu'.*got str"):
        Classifier.load(export_dir, "cpu")
