"""Every config dataclass refuses NaN, infinity, negatives and wrong types, naming the flag.

One parametrized test per config (TrainConfig, ExportConfig, BenchConfig, QuickstartConfig,
RuntimeOptions for predict), plus the output folders `train --out` must never be.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, dataclass, field, fields

import pytest

from bertfast.errors import BertfastError

NAN, INF = math.nan, math.inf


def _raises(make, flag):
    with pytest.raises(BertfastError) as e:
        make()
    msg = str(e.value)
    assert msg.startswith(flag + " ") and "\n" not in msg, msg
    return msg


TRAIN_BAD = [
    ("epochs", NAN, "--epochs"), ("epochs", INF, "--epochs"), ("epochs", -1.0, "--epochs"), ("epochs", 0, "--epochs"),
    ("epochs", 1e9, "--epochs"), ("epochs", "3", "--epochs"),
    ("lr", NAN, "--lr"), ("lr", INF, "--lr"), ("lr", 0.0, "--lr"), ("lr", -1e-5, "--lr"), ("lr", 2.0, "--lr"),
    ("head_lr", NAN, "--head-lr"), ("head_lr", -1.0, "--head-lr"),
    ("max_length", -128, "--max-length"), ("max_length", 0, "--max-length"), ("max_length", "128", "--max-length"),
    ("max_length", 64.0, "--max-length"),
    ("batch_size", 0, "--batch-size"), ("batch_size", -16, "--batch-size"), ("batch_size", 1.5, "--batch-size"),
    ("eval_batch_size", -1, "--eval-batch-size"),
    ("weight_decay", NAN, "--weight-decay"), ("weight_decay", -0.1, "--weight-decay"), ("weight_decay", INF, "--weight-decay"),
    ("warmup_ratio", NAN, "--warmup-ratio"), ("warmup_ratio", 1.5, "--warmup-ratio"), ("warmup_ratio", -0.1, "--warmup-ratio"),
    ("val_fraction", NAN, "--val-fraction"), ("val_fraction", 0.0, "--val-fraction"), ("val_fraction", 0.9, "--val-fraction"),
    ("test_fraction", INF, "--test-fraction"), ("test_fraction", -0.1, "--test-fraction"),
    ("seed", -1, "--seed"), ("seed", 2**32, "--seed"), ("seed", 1.0, "--seed"),
    ("early_stopping", 0, "--early-stopping"), ("max_train_samples", 1, "--max-train-samples"),
    ("max_eval_samples", -5, "--max-eval-samples"),
]


@pytest.mark.parametrize(("field", "value", "flag"), TRAIN_BAD)
def test_train_config(field, value, flag):
    from bertfast.training import TrainConfig

    _raises(lambda: TrainConfig(model="m", data="d", **{field: value}), flag)


def test_train_config_defaults_and_edges_are_fine():
    from bertfast.training import TrainConfig

    TrainConfig(model="m", data="d")
    TrainConfig(model="m", data="d", epochs=0.5, warmup_ratio=0, weight_decay=0, seed=0, head_lr=1e-3)


@pytest.mark.parametrize("argv", [["--epochs", "nan"], ["--epochs", "inf"], ["--epochs", "-1"],
                                  ["--max-length", "-5"], ["--test-fraction", "nan"], ["--lr", "inf"]])
def test_train_cli_one_line_exit_2(argv, capsys):
    from bertfast.cli import main

    assert main(["train", "m", "d", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {argv[0]} ") and "\n" not in err


# -- train --out: never the working directory, a parent of it, or a folder holding the inputs


@pytest.mark.parametrize("out", [".", "", "..", "{cwd}"])
def test_train_out_is_never_the_working_directory(tmp_path, monkeypatch, out, tiny_csv):
    from bertfast.training import TrainConfig, train

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(BertfastError, match="is the working directory or contains it"):
        train(TrainConfig(model="m", data=str(tiny_csv), out=out.format(cwd=work), force=True))


def test_train_out_never_holds_the_training_data_or_the_model(tmp_path, tiny_model):
    from conftest import make_texts, write_csv

    from bertfast.training import TrainConfig, train

    (tmp_path / "runs").mkdir()
    data = write_csv(tmp_path / "runs" / "data.csv", make_texts(30))
    with pytest.raises(BertfastError, match="contains the input .*data.csv"):
        train(TrainConfig(model=str(tiny_model), data=str(data), out=str(tmp_path / "runs"), force=True))
    with pytest.raises(BertfastError, match="contains the input .*tiny-model"):
        train(TrainConfig(model=str(tiny_model), data=str(data), out=str(tiny_model), force=True))
    with pytest.raises(BertfastError, match="contains the input"):  # resume too
        train(TrainConfig(model=str(tiny_model), data=str(data), out=str(tmp_path), resume=True))
    assert data.exists() and (tiny_model / "config.json").exists()


# -- bench ---------------------------------------------------------------------------------

BENCH_BAD = [
    ("threads", -1, "--threads"), ("threads", 0, "--threads"), ("threads", "2", "--threads"),
    ("max_length", -64, "--max-length"), ("max_length", "abc", "--max-length"), ("max_length", 7, "--max-length"),
    ("min_seconds", NAN, "--min-seconds"), ("min_seconds", INF, "--min-seconds"), ("min_seconds", -1, "--min-seconds"),
    ("peak_seconds", NAN, "--peak-seconds"), ("peak_seconds", INF, "--peak-seconds"),
    ("min_runs", 0, "--min-runs"), ("min_runs", 2.5, "--min-runs"), ("max_texts", 0, "--max-texts"),
    ("latency_texts", -1, "--latency-texts"), ("seed", -1, "--seed"), ("busy_cv", NAN, "busy_cv"),
    ("preset", "fast", "preset"),  # no flag of its own: --quick sets it
]


@pytest.mark.parametrize(("field", "value", "flag"), BENCH_BAD)
def test_bench_config(tmp_path, field, value, flag):
    from bertfast.bench import BenchConfig

    _raises(lambda: BenchConfig(target=tmp_path, **{field: value}), flag)


def test_bench_out_never_holds_its_inputs(tmp_path):
    from bertfast.bench import BenchConfig

    (tmp_path / "export").mkdir()
    with pytest.raises(BertfastError, match="--out .* contains the input"):
        BenchConfig(target=tmp_path / "export", out=tmp_path, force=True)


@pytest.mark.parametrize("argv", [["--threads", "-2"], ["--max-length", "-1"], ["--min-seconds", "nan"],
                                  ["--peak-seconds", "inf"]])
def test_bench_cli_one_line_exit_2(tmp_path, argv, capsys):
    from bertfast.cli import main

    assert main(["bench", str(tmp_path), "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {argv[0]} ") and "\n" not in err


# -- quickstart ----------------------------------------------------------------------------

QUICK_BAD = [
    ("epochs", NAN, "--epochs"), ("epochs", INF, "--epochs"), ("epochs", -1, "--epochs"),
    ("lr", NAN, "--lr"), ("lr", 0, "--lr"), ("head_lr", INF, "--head-lr"),
    ("batch_size", 0, "--batch-size"), ("max_length", -1, "--max-length"),
    ("test_fraction", NAN, "--test-fraction"), ("test_fraction", 0.7, "--test-fraction"),
]


@pytest.mark.parametrize(("field", "value", "flag"), QUICK_BAD)
def test_quickstart_config(field, value, flag):
    from bertfast.quickstart import QuickstartConfig

    _raises(lambda: QuickstartConfig(**{field: value}), flag)


def test_quickstart_out_dir_is_not_a_file(tmp_path):
    from bertfast.quickstart import QuickstartConfig

    (tmp_path / "f").write_text("x")
    _raises(lambda: QuickstartConfig(out_dir=str(tmp_path / "f")), "--out-dir")


# -- predict (RuntimeOptions) ---------------------------------------------------------------

PREDICT_BAD = [("threads", -1), ("threads", 0), ("max_length", -1), ("batch_tokens", -8192),
               ("max_batch_size", 0), ("stride", -1), ("streams", 0)]


@pytest.mark.parametrize(("field", "value"), PREDICT_BAD)
def test_runtime_options(field, value):
    from bertfast.runtime.options import RuntimeOptions

    _raises(lambda: RuntimeOptions.from_flags(**{field: value}), "--" + field.replace("_", "-"))


@pytest.mark.parametrize("argv", [["--threads", "-1"], ["--max-length", "-8"], ["--batch-tokens", "-1"]])
def test_predict_cli_one_line_exit_2(tiny_export, tmp_path, argv, capsys):
    from bertfast.cli import main

    (tmp_path / "in.txt").write_text("a goal\n")
    rc = main(["predict", str(tiny_export), "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "o.jsonl"), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"error: {argv[0]} ") and "\n" not in err


# -- export (ExportConfig lives in bertfast/exporter, owned separately) ----------------------

EXPORT_BAD = [
    ("max_metric_drop", NAN, "--max-metric-drop"), ("max_metric_drop", INF, "--max-metric-drop"),
    ("max_metric_drop", -1, "--max-metric-drop"), ("max_eval_samples", 1, "--max-eval-samples"),
    ("calibration_samples", 0, "--calibration-samples"), ("opset", 9, "--opset"),
    ("threads", -1, "--threads"),
    ("threads", 0, "--threads"),
    ("max_length", -1, "--max-length"),
    ("max_length", "128", "--max-length"),
    ("calibration_samples", "x", "--calibration-samples"),
]


@pytest.mark.parametrize(("field", "value", "flag"), EXPORT_BAD)
def test_export_config(field, value, flag):
    from bertfast.exporter import ExportConfig

    with pytest.raises(BertfastError) as e:
        ExportConfig(model_dir="m", **{field: value})
    assert str(e.value).startswith(flag), str(e.value)


# -- flags declared once: every generated flag carries its field's docstring help and default --


def _parser(command: str) -> argparse.ArgumentParser:
    from bertfast.cli import build_parser

    sub = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _config(name: str):
    import importlib

    module, cls = name.rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


# (command, config): the configs of the commands owned beside this test. `bertfast predict`
# takes the fields of three: its own, RuntimeOptions', and the Ray engine's extra ones.
FLAG_CONFIGS = [
    ("train", "bertfast.training.trainer.TrainConfig"),
    ("predict", "bertfast.runtime.predict.PredictConfig"),
    ("predict", "bertfast.runtime.options.RuntimeOptions"),
    ("predict", "bertfast.runtime.ray.config.ClassifyConfig"),
    ("quickstart", "bertfast.quickstart.QuickstartConfig"),
]


@pytest.mark.parametrize(("command", "config"), FLAG_CONFIGS)
def test_every_field_is_one_flag_with_help_and_the_dataclass_default(command, config):
    from bertfast.flags import docstring_help

    cls = _config(config)
    actions = {a.dest: a for a in _parser(command)._actions}
    helps = docstring_help(cls)
    for f in fields(cls):
        if not f.metadata.get("cli", True) or f.name == "options":  # Python only; RuntimeOptions has its own
            assert f.name not in actions, f"{config}.{f.name} should have no flag"
            continue
        a = actions.get(f.name)
        assert a is not None, f"{config}.{f.name} has no flag"
        assert helps.get(f.name) and a.help and a.help.strip(), f"{config}.{f.name}: no help"
        if f.default is MISSING and f.default_factory is MISSING:
            assert not a.option_strings or a.required, f"{f.name}: a field without a default must be given"
        else:
            assert a.default == f.default, f"--{f.name}: flag default {a.default!r} != field default {f.default!r}"


def test_flag_help_is_the_docstring_entry():
    from bertfast.flags import docstring_help
    from bertfast.training.trainer import TrainConfig

    actions = {a.dest: a for a in _parser("train")._actions}
    helps = docstring_help(TrainConfig)
    assert actions["label_column"].help == helps["label_column"]  # grouped entries were split, one per field
    assert actions["val_fraction"].help and actions["eval_batch_size"].help
    assert actions["positive_label"].option_strings == ["--positive-label"]  # a field, so a flag


def test_flags_meta_forms():
    """The forms `bertfast.flags.meta` adds: a required --flag with a short alias, a --no- only
    switch, a lower bound kept for the config's check, help with a percent sign."""
    from bertfast import flags

    @dataclass
    class Demo:
        """Demo.

        Attributes:
            path: where (required flag).
            share: 5% of it.
            progress: a bar.
            extra: never a flag.
        """

        path: str = field(metadata=flags.meta(option=True, short="-p"))
        share: int = field(default=5, metadata=flags.meta(minimum=1))
        progress: bool = field(default=True, metadata=flags.meta(negative_only=True))
        extra: dict = field(default_factory=dict, metadata=flags.meta(cli=False))

    p = argparse.ArgumentParser()
    flags.add_arguments(p, Demo)
    assert "5% of it" in p.format_help()
    args = p.parse_args(["-p", "x", "--no-progress"])
    assert flags.from_args(Demo, args) == Demo(path="x", share=5, progress=False)
    with pytest.raises(SystemExit):
        p.parse_args([])  # --path is required
    with pytest.raises(SystemExit):
        p.parse_args(["-p", "x", "--progress"])  # only the --no- form exists
    assert fields(Demo)[1].metadata["minimum"] == 1

    @dataclass
    class Undocumented:
        """No Attributes section."""

        n: int = 1

    with pytest.raises(TypeError, match="Undocumented.n has no entry"):
        flags.add_arguments(argparse.ArgumentParser(), Undocumented)

