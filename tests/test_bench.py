"""Tests for `bertfast.bench`: statistics, FLOP counts, config errors, and a smoke run.

The smoke runs use the tiny random model with very short durations; the export they bench
is built here by hand (torch.onnx.export + a manifest), independent of `bertfast.exporter`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_texts

from bertfast.errors import BertfastError

# ----------------------------------------------------------------------------- statistics


def test_summarize_on_fixed_values():
    from bertfast.bench.timing import summarize

    st = summarize([4.0, 1.0, 3.0, 2.0])
    assert st["n"] == 4
    assert st["mean"] == pytest.approx(2.5)
    assert st["p50"] == pytest.approx(2.5)
    assert st["min"] == 1.0 and st["max"] == 4.0
    assert st["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    st = summarize(range(1, 101))  # 1..100: linear interpolation between order statistics
    assert st["p50"] == pytest.approx(50.5)
    assert st["p90"] == pytest.approx(90.1)
    assert st["p99"] == pytest.approx(99.01)
    assert summarize([]) == {"n": 0}
    assert summarize([7.0])["std"] == 0.0


def test_interleave_order_rotates_every_backend_through_every_position():
    from bertfast.bench.timing import interleave_order

    names = ["a", "b", "c"]
    assert interleave_order(names, 0) == ["a", "b", "c"]
    assert interleave_order(names, 1) == ["b", "c", "a"]
    assert interleave_order(names, 2) == ["c", "a", "b"]
    assert interleave_order(names, 3) == ["a", "b", "c"]
    for name in names:
        assert sorted(interleave_order(names, r).index(name) for r in range(3)) == [0, 1, 2]
    assert interleave_order([], 5) == []


def test_interleaved_rounds_meets_count_and_duration_and_survives_a_failure():
    from bertfast.bench.timing import interleaved_rounds

    calls: list[str] = []
    errors: dict[str, str] = {}

    def boom():
        calls.append("boom")
        raise RuntimeError("kaput")

    times = interleaved_rounds(
        {"fast": lambda: calls.append("fast"), "boom": boom, "other": lambda: calls.append("other")},
        min_runs=3, min_seconds=0.0, on_error=lambda n, e: errors.__setitem__(n, str(e)),
    )
    assert errors == {"boom": "kaput"}
    assert len(times["fast"]) >= 3 and len(times["other"]) >= 3
    assert calls[:3] == ["fast", "boom", "other"]  # round 0 in the given order
    assert calls[3:5] == ["other", "fast"]  # round 1 rotated, without the failed backend
    times = interleaved_rounds({"x": lambda: None}, min_runs=1, min_seconds=0.02)
    assert sum(times["x"]) >= 0.02


# ----------------------------------------------------------------------------- FLOPs


def test_flop_count_matches_measured_anchors():
    from bertfast.bench.roofline import ModelShape, flops_per_text, total_flops

    minilm = ModelShape(layers=6, hidden=384, intermediate=1536, heads=12, num_labels=5)
    assert flops_per_text(minilm, 128) / 1e9 == pytest.approx(2.87, abs=0.005)
    base = ModelShape(layers=12, hidden=768, intermediate=3072, heads=12, num_labels=5)
    assert flops_per_text(base, 128) / 1e9 == pytest.approx(22.3, abs=0.06)
    # attention grows quadratically: 4*s^2*h per layer on top of the linear terms
    lin = flops_per_text(minilm, 256) - 2 * (flops_per_text(minilm, 128) - 2 * 384 * 384 - 2 * 384 * 5)
    assert lin - 2 * 384 * 384 - 2 * 384 * 5 == pytest.approx(6 * 4 * 384 * (256**2 - 2 * 128**2))
    assert total_flops(minilm, [128, 128]) == pytest.approx(2 * flops_per_text(minilm, 128))


def test_model_shape_from_config(tiny_model):
    from bertfast.bench.roofline import ModelShape

    s = ModelShape.from_config(tiny_model)
    assert (s.layers, s.hidden, s.intermediate, s.heads, s.num_labels) == (2, 32, 64, 2, 3)


def test_model_shape_from_any_family():
    from bertfast.bench.roofline import ModelShape

    distil = {"model_type": "distilbert", "n_layers": 6, "dim": 768, "hidden_dim": 3072, "n_heads": 12,
              "id2label": {"0": "neg", "1": "pos"}}
    s = ModelShape.from_config(distil)
    assert (s.layers, s.hidden, s.intermediate, s.heads, s.num_labels) == (6, 768, 3072, 12, 2)
    assert s.model_type == "distilbert"
    unknown = {"model_type": "my-encoder", "num_hidden_layers": 3, "hidden_size": 64, "intermediate_size": 256,
               "num_attention_heads": 4, "num_labels": 5}
    s = ModelShape.from_config(unknown)
    assert (s.layers, s.hidden, s.intermediate, s.heads, s.num_labels) == (3, 64, 256, 4, 5)


def test_peak_graphs_run():
    import onnxruntime as ort

    from bertfast.bench.roofline import measure_peaks, ort_matmul_graph

    sess = ort.InferenceSession(ort_matmul_graph(8, 16, 4, int8=True).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    y = sess.run(None, {"A": np.full((8, 16), 129, dtype=np.uint8)})[0]
    assert y.dtype == np.int32 and y.shape == (8, 4)
    res = measure_peaks(threads=1, seconds=0.01, quick=True)
    assert {"fp32", "int8"} <= set(res["peaks"])
    assert all(v["gflops"] > 0 for v in res["peaks"].values())


# ----------------------------------------------------------------------------- config


def test_config_errors_name_the_flag(tiny_model, tmp_path):
    from bertfast.bench import BenchConfig

    with pytest.raises(BertfastError, match="--batch-sizes"):
        BenchConfig(target=tiny_model, batch_sizes="1,0")
    with pytest.raises(BertfastError, match="--batch-sizes"):
        BenchConfig(target=tiny_model, batch_sizes="1,x")
    with pytest.raises(BertfastError, match="torch-seed") as e:
        BenchConfig(target=tiny_model, backends="torch,tensorflow")
    assert "tensorflow" in str(e.value) and "optimum-int8" in str(e.value)
    with pytest.raises(BertfastError, match="--threads"):
        BenchConfig(target=tiny_model, threads=0)
    with pytest.raises(BertfastError, match="--device"):
        BenchConfig(target=tiny_model, device="tpu")
    with pytest.raises(BertfastError, match="TARGET"):
        BenchConfig(target=tmp_path / "nope")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(BertfastError, match="--force"):
        BenchConfig(target=tiny_model, out=tmp_path / "full")
    cfg = BenchConfig(target=tiny_model, batch_sizes="8, 1,8", preset="quick", min_runs=5)
    assert cfg.batch_sizes == (8, 1) and cfg.min_runs == 5 and cfg.min_seconds == 0.5 and cfg.threads >= 1


def test_devices_come_from_the_provider_table(tiny_model):
    from bertfast.bench import BenchConfig
    from bertfast.bench.config import DEVICES
    from bertfast.runtime.providers import PROVIDERS

    assert DEVICES == ("auto", *PROVIDERS)
    for device in DEVICES:  # validated here, resolved (and checked for usability) when the run starts
        assert BenchConfig(target=tiny_model, device=device).device == device


def test_resolve_device_reads_the_provider_table(monkeypatch):
    import bertfast.runtime.providers as providers
    from bertfast.bench.target import resolve_device
    from bertfast.errors import ProviderError

    monkeypatch.setattr(providers, "available_providers", lambda: ["CPUExecutionProvider"])
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    for gpu in [name for name, row in providers.PROVIDERS.items() if row.gpu]:
        with pytest.raises(ProviderError, match=providers.PROVIDERS[gpu].ort_name):
            resolve_device(gpu)  # never a silent CPU run


def test_expand_names_skips_failed_and_foreign_variants():
    from bertfast.bench.backends import STANDARD_BACKENDS, expand_names

    variants = {
        "fp32": {"file": "model.onnx", "devices": ["cpu", "cuda"]},
        "int8": {"file": "model-int8.onnx", "devices": ["cpu"]},
        "fp16": {"status": "failed", "devices": ["cuda"], "error": "no GPU"},
        "int8-bad": {"status": "failed", "devices": ["cpu"]},
    }
    assert expand_names(("bertfast",), variants, "cpu") == ["bertfast:fp32", "bertfast:int8"]
    assert expand_names(("bertfast",), variants, "cuda") == ["bertfast:fp32"]
    assert expand_names(("all",), variants, "cpu") == [*STANDARD_BACKENDS, "bertfast:fp32", "bertfast:int8"]
    assert expand_names(("bertfast:default", "torch"), variants, "cpu", {"cpu": "int8"}) == ["bertfast:int8", "torch"]
    with pytest.raises(BertfastError, match="bertfast:default"):
        expand_names(("bertfast:default",), variants, "tensorrt", {"cpu": "int8"})


def test_display_path(tmp_path, monkeypatch):
    from bertfast.bench.paths import display_path, scrub_paths

    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "exports" / "x") == "exports/x"
    assert display_path("exports/x") == "exports/x"  # relative: kept as given
    assert display_path(tmp_path) == "."
    assert display_path(Path.home() / ".cache" / "bertfast") == "~/.cache/bertfast"
    assert display_path("/elsewhere/models/minilm") == "minilm"  # outside: the folder name only
    assert display_path("/elsewhere/cache/optimum/m.onnx", root="/elsewhere/cache") == "cache/optimum/m.onnx"
    assert display_path(None) is None
    assert scrub_paths({"e": [f"{tmp_path}/exports/x has no config.json"]}) == {"e": ["exports/x has no config.json"]}


def test_cli_help_lists_the_flags():
    out = subprocess.run([sys.executable, "-m", "bertfast.cli", "bench", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for flag in ("TARGET", "--data", "--text-column", "--label-column", "--text-pair-column", "--label-separator",
                 "--model-dir", "--max-length", "--batch-sizes", "--backends", "--threads", "--device", "--out",
                 "--force", "--quick", "--min-runs", "--min-seconds", "--max-texts", "--latency-texts",
                 "--peak-seconds", "--cache-dir", "--optimum-per-channel", "--seed", "--no-plot", "--name", "--note"):
        assert flag in out.stdout


def test_flags_come_from_the_config_with_its_help_and_defaults(tiny_model):
    """Every BenchConfig field with a flag has help from the docstring and the dataclass default;
    the flags left alone give the dataclass's own config."""
    import argparse
    from dataclasses import fields

    from bertfast.bench import BenchConfig, add_arguments, from_args
    from bertfast.bench.config import PRESETS, STANDARD_BACKENDS, parse_int_list

    p = argparse.ArgumentParser()
    add_arguments(p)
    actions = {a.dest: a for a in p._actions if a.dest != "help"}
    declared = {f.name: f for f in fields(BenchConfig)}
    python_only = {n for n, f in declared.items() if not f.metadata.get("cli", True)}
    assert python_only == {"preset", "busy_cv", "extra"}
    assert set(actions) == set(declared) - python_only | {"quick"}  # --quick stands for preset="quick"
    for name, action in actions.items():
        assert action.help and action.help.strip(), name
        if name == "quick":
            assert action.default is False
        elif name == "target":
            assert action.required
        elif name == "batch_sizes":  # a comma string on the command line
            assert parse_int_list(action.default, "--batch-sizes") == declared[name].default
        else:
            assert action.default == declared[name].default, name
    for name in PRESETS["default"]:  # each preset's value shown where the flag is
        assert all(f"{preset} {values[name]}" in actions[name].help for preset, values in PRESETS.items())
    assert all(n in actions["backends"].help for n in STANDARD_BACKENDS)
    assert from_args(p.parse_args([str(tiny_model)])) == BenchConfig(target=tiny_model)
    cfg = from_args(p.parse_args([str(tiny_model), "--quick", "--min-runs", "5", "--no-plot", "--batch-sizes", "4,2"]))
    assert (cfg.preset, cfg.min_runs, cfg.min_seconds, cfg.plot, cfg.batch_sizes) == ("quick", 5, 0.5, False, (4, 2))


def test_bench_package_import_is_light():
    code = "import sys, bertfast.bench; print(any(m in sys.modules for m in ('torch', 'transformers', 'optimum')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


# ----------------------------------------------------------------------------- smoke runs


def build_export(model_dir: Path, out: Path, texts: list[tuple[str, str]]) -> Path:
    """A minimal bertfast export by hand: one fp32 ONNX variant, manifest, tokenizer, eval.jsonl."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out.mkdir(parents=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok(["a match", "the vote was new"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dyn = {n: {0: "batch", 1: "seq"} for n in names}
    torch.onnx.export(
        model, tuple(enc[n] for n in names), str(out / "model.onnx"), input_names=names,
        output_names=["logits"], dynamic_axes={**dyn, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    tok.backend_tokenizer.save(str(out / "tokenizer.json"))
    manifest = {
        "format": "bertfast-export", "format_version": 1, "bertfast_version": "0.1.0",
        "source": {"model_dir": str(model_dir), "model_type": "bert",
                   "architecture": "BertForSequenceClassification"},
        "id2label": {str(k): v for k, v in model.config.id2label.items()},
        "max_length": 64, "model_max_length": 128, "inputs": names, "output": "logits", "opset": 17,
        "tokenizer": {"file": "tokenizer.json", "pad_token_id": 0, "lowercase": True},
        "variants": {"fp32": {"file": "model.onnx", "precision": "fp32", "devices": ["cpu"],
                              "description": "plain export", "eligible": True}},
        "default": {"cpu": "fp32", "cuda": None},
    }
    (out / "bertfast.json").write_text(json.dumps(manifest))
    with open(out / "eval.jsonl", "w") as f:
        for text, label in texts:
            f.write(json.dumps({"text": text, "label": label}) + "\n")
    return out


@pytest.fixture
def tiny_export(tiny_model, tmp_path) -> Path:
    return build_export(tiny_model, tmp_path / "export", make_texts(24, seed=1))


def _runtime_available() -> bool:
    try:
        from bertfast.runtime.classifier import Classifier  # noqa: F401
    except ImportError:
        return False
    return True


def _quick(target, out, **kw):
    from bertfast.bench import BenchConfig

    base = dict(target=target, out=out, batch_sizes="1,4", preset="quick", min_runs=2, min_seconds=0.05,
                max_texts=16, latency_texts=5, peak_seconds=0.01, threads=1, device="cpu")
    base.update(kw)
    return BenchConfig(**base)


def test_smoke_run_writes_json_markdown_and_plot(tiny_export, tmp_path, monkeypatch):
    from bertfast.bench import backends, run_benchmark

    class Broken:
        name, precision, outputs = "broken", "fp32", "logits"

        def load(self):
            raise RuntimeError("cannot load this one")

    monkeypatch.setitem(backends.FACTORIES, "broken", lambda ctx, name: Broken())
    out = tmp_path / "results" / "tiny"
    report = run_benchmark(_quick(tiny_export, out, backends="torch-seed,torch,broken,torch-int8,bertfast"))

    d = json.loads((out / "results.json").read_text())
    assert d["format"] == "bertfast-bench"
    status = {b["name"]: b for b in d["backends"]}
    assert list(status) == ["torch-seed", "torch", "broken", "torch-int8", "bertfast:fp32"]
    assert status["broken"]["status"] == "failed" and "cannot load this one" in status["broken"]["error"]
    for name in ("torch-seed", "torch", "torch-int8"):
        b = status[name]
        assert b["status"] == "ok", b["error"]
        for bs in ("1", "4"):
            t = b["throughput"][bs]
            assert t["seq_per_s"] > 0 and t["tokens_per_s"] > 0 and t["runs"] >= 2
            assert 0 < t["fraction_of_peak"] < 10
            assert b["model_only"][bs]["seq_per_s"] > 0
        assert b["latency_ms"]["n"] >= 5 and b["latency_ms"]["p50"] <= b["latency_ms"]["p99"]
        assert b["quality"]["n"] == 16 and 0 <= b["quality"]["accuracy"] <= 1
        assert b["memory"]["load_rss_mb"] is not None
    assert status["torch"]["quality"]["label_agreement"] == 1.0
    assert status["torch-seed"]["quality"]["label_agreement"] == 1.0
    # sorting by length pads less than the notebook's original order
    assert status["torch"]["throughput"]["4"]["padding_ratio"] <= status["torch-seed"]["throughput"]["4"]["padding_ratio"]
    assert status["torch"]["throughput"]["1"]["padding_ratio"] == 0.0
    bf = status["bertfast:fp32"]
    if _runtime_available():
        assert bf["status"] == "ok", bf["error"]
        assert bf["quality"]["label_agreement"] >= 0.9
    else:  # the runtime is written in parallel; until it lands the backend must fail cleanly
        assert bf["status"] == "failed" and bf["error"]
    w = d["workload"]
    assert w["n_texts"] == 16 and w["max_length"] == 64 and w["data"].endswith("eval.jsonl")
    assert w["flops_per_text_mean"] > 0 and set(d["roofline"]["peaks"]) >= {"fp32", "int8"}
    assert d["environment"]["versions"]["torch"] and d["environment"]["threads"]["requested"] == 1

    md = (out / "results.md").read_text()
    assert md == report.to_markdown()
    assert "| `torch` |" in md and "× torch-seed" in md and "`broken`: failed" in md
    png = (out / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert set(report.paths) == {"json", "markdown", "plot"}


def test_a_backend_failing_mid_run_is_reported_and_others_go_on(tiny_model, tmp_path, monkeypatch):
    from bertfast.bench import backends, run_benchmark

    class FailsOnBatch4(backends.TorchBackend):
        def prepare(self, batch_size):
            if batch_size == 4:
                raise MemoryError("out of memory at batch 4")
            super().prepare(batch_size)

    monkeypatch.setitem(backends.FACTORIES, "flaky", lambda ctx, name: FailsOnBatch4(ctx, name))
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lb}) + "\n" for t, lb in make_texts(12)))
    monkeypatch.setattr(
        "bertfast.bench.harness.load_data",
        lambda cfg, target, warnings=None: ([json.loads(x)["text"] for x in data.read_text().splitlines()], None,
                                            str(data)),
    )
    report = run_benchmark(_quick(tiny_model, None, backends="torch,flaky", latency_texts=0))
    flaky = report.backend("flaky")
    assert flaky["status"] == "failed" and "batch 4" in flaky["error"] and "1" in flaky["throughput"]
    assert report.backend("torch")["status"] == "ok" and "4" in report.backend("torch")["throughput"]
    assert report.paths == {}
    assert "| `torch` |" in report.to_markdown()


def test_reports_record_no_absolute_paths(tiny_export, tiny_model, tmp_path, monkeypatch):
    from bertfast.bench import backends, run_benchmark

    class Broken:  # its error quotes an absolute path, as library errors do
        name, precision, outputs = "broken", "fp32", "logits"

        def load(self):
            raise FileNotFoundError(f"{tmp_path}/missing/config.json")

    monkeypatch.setitem(backends.FACTORIES, "broken", lambda ctx, name: Broken())
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results" / "tiny"
    run_benchmark(_quick(tiny_export, out, backends="torch,broken", batch_sizes="2", latency_texts=0,
                         peak_seconds=0, plot=False))
    text = (out / "results.json").read_text() + (out / "results.md").read_text()
    for machine_path in (str(tmp_path), str(tiny_model), str(Path.home()) + "/"):
        assert machine_path not in text
    d = json.loads((out / "results.json").read_text())
    assert d["config"]["target"] == "export" and d["config"]["out"] == "results/tiny"
    assert d["workload"]["data"] == "export/eval.jsonl" and d["workload"]["model_dir"] == Path(tiny_model).name
    assert "missing/config.json" in d["backends"][1]["error"]

    def strings(x):
        if isinstance(x, dict):
            return [s for v in x.values() for s in strings(v)]
        if isinstance(x, list):
            return [s for v in x for s in strings(v)]
        return [x] if isinstance(x, str) else []

    assert not [s for s in strings(d) if s.startswith("/")]


def test_optimum_backends(tiny_export, tmp_path):
    pytest.importorskip("optimum.onnxruntime")
    from bertfast.bench import run_benchmark

    report = run_benchmark(_quick(tiny_export, None, backends="torch,optimum,optimum-int8", batch_sizes="4",
                                  latency_texts=2, cache_dir=tmp_path / "cache"))
    for name in ("optimum", "optimum-int8"):
        b = report.backend(name)
        assert b["status"] == "ok", b["error"]
        assert b["throughput"]["4"]["seq_per_s"] > 0 and b["model_only"]["4"]["seq_per_s"] > 0
        assert b["throughput"]["4"]["padding_ratio"] is not None
    assert report.backend("optimum")["quality"]["label_agreement"] == 1.0
    assert report.backend("optimum")["quality"]["max_abs_prob_diff"] < 1e-3
    # the report shows the cache file relative to the cache folder's display ("cache/optimum/...")
    onnx = Path(report.backend("optimum-int8")["onnx"])
    onnx = onnx if onnx.is_file() else tmp_path / onnx
    assert "MatMulInteger" in open(onnx, "rb").read().decode("latin-1")


def test_readme_block_is_generated_from_results(tmp_path):
    from bertfast.bench.report import END, START, readme_table, replace_block

    d = {
        "name": "minilm-bbc-128", "config": {"batch_sizes": [1, 32], "threads": 2},
        "environment": {"cpu": "Test CPU"},
        "workload": {"max_length": 128, "tokens": {"mean": 120.0}, "default_variant": "int8"},
        "backends": [
            {"name": "torch-seed", "status": "ok", "throughput": {"32": {"seq_per_s": 45.0}}},
            {"name": "optimum-int8", "status": "ok", "throughput": {"32": {"seq_per_s": 110.0}},
             "latency_ms": {"p50": 24.7}},
            {"name": "bertfast:int8", "status": "ok", "throughput": {"32": {"seq_per_s": 135.0}},
             "latency_ms": {"p50": 15.0}},
            {"name": "bertfast:fp32", "status": "ok", "throughput": {"32": {"seq_per_s": 60.0}}},
            {"name": "torch", "status": "failed", "error": "x", "throughput": {}},
        ],
    }
    table = readme_table([("benchmarks/results/minilm-bbc-128/results.json", d)])
    row = table.splitlines()[2]
    assert "**135.0** (`int8`)" in row and "3.00×" in row and "1.23×" in row and "15.0 / 24.7" in row
    readme = f"# x\n{START}\nold table\n{END}\nrest\n"
    new = replace_block(readme, table)
    assert "old table" not in new and new.endswith(f"{END}\nrest\n") and table in new
    with pytest.raises(ValueError, match="bench:start"):
        replace_block("no markers", table)


def test_update_readme_script(tmp_path):
    results = tmp_path / "results" / "w1"
    results.mkdir(parents=True)
    d = {
        "name": "w1", "config": {"batch_sizes": [8], "threads": 1}, "environment": {"cpu": "CPU"},
        "workload": {"max_length": 64, "tokens": {"mean": 30.0}},
        "backends": [{"name": "torch", "status": "ok", "throughput": {"8": {"seq_per_s": 10.0}}}],
    }
    (results / "results.json").write_text(json.dumps(d))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:start -->\n<!-- bench:end -->\n")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "update_readme.py"
    run = lambda *a: subprocess.run([sys.executable, str(script), "--readme", str(readme), *a],  # noqa: E731
                                    capture_output=True, text=True)
    out = run("--check", str(results / "results.json"))
    assert out.returncode == 1  # stale
    out = run(str(results / "results.json"))
    assert out.returncode == 0, out.stderr
    assert "| w1 (max 64) | 30 | – | 10.0 |" in readme.read_text()
    assert run("--check", str(results / "results.json")).returncode == 0


def test_cli_quick_run(tiny_export, tmp_path):
    out = tmp_path / "cli-results"
    cmd = [sys.executable, "-m", "bertfast.cli", "bench", str(tiny_export), "--backends", "torch", "--quick",
           "--batch-sizes", "2", "--min-seconds", "0.02", "--max-texts", "6", "--latency-texts", "2",
           "--peak-seconds", "0", "--threads", "1", "--device", "cpu", "--out", str(out), "--no-plot"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "| `torch` |" in res.stdout and (out / "results.json").is_file()
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 2 and "--force" in res.stderr
    shutil.rmtree(out)
