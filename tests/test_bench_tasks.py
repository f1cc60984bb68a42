"""`bertfast bench` on exports of every task: text pairs, multi-label, regression.

Tiny hand-made exports (`_export_helpers.make_task_export`) benchmarked with the quick preset:
the report records the task and whether inputs are pairs, every backend gets the task's
quality metric (micro-F1 at the export's thresholds, Pearson), and bertfast fp32 gives the same
scores as PyTorch, which it can only if PyTorch's logits got the export's activation too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from _export_helpers import MULTI_LABELS, make_task_export
from conftest import make_texts

from bertfast.errors import BertfastError

THRESHOLDS = [0.3, 0.5, 0.7, 0.5]


def _rows(n: int, task: str, seed: int = 0) -> list[dict]:
    """`n` rows with text, text_pair and a label of `task` (a float; a list of MULTI_LABELS)."""
    rng = random.Random(seed)
    firsts, seconds = make_texts(n, seed=seed, max_words=12), make_texts(n, seed=seed + 1, max_words=30)
    out = []
    for (a, _), (b, _) in zip(firsts, seconds):
        label = (round(rng.uniform(0, 1), 3) if task == "regression"
                 else sorted(rng.sample(MULTI_LABELS, rng.randint(0, 2))))
        out.append({"text": a, "text_pair": b, "label": label})
    return out


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(target, **kw):
    from bertfast.bench import BenchConfig

    base = dict(target=target, preset="quick", backends="torch,bertfast", batch_sizes="1,4", peak_seconds=0,
                plot=False, min_runs=2, min_seconds=0.02, max_texts=16, latency_texts=4, threads=1, device="cpu")
    base.update(kw)
    return BenchConfig(**base)


@pytest.fixture
def pair_regression(_tiny_model_session, tmp_path) -> Path:
    """A pair regression export holding an eval.jsonl with text / text_pair / float label."""
    out = make_task_export(_tiny_model_session, tmp_path / "reg", "regression", pair=True)
    _write_jsonl(out / "eval.jsonl", _rows(12, "regression"))
    return out


@pytest.fixture
def multi_label(_tiny_model_session, tmp_path) -> Path:
    return make_task_export(_tiny_model_session, tmp_path / "ml", "multi_label", pair=False, thresholds=THRESHOLDS)


def _check_common(d: dict, metric: str) -> dict:
    status = {b["name"]: b for b in d["backends"]}
    assert list(status) == ["torch", "bertfast:fp32"]
    for b in status.values():
        assert b["status"] == "ok", b["error"]
        for bs in ("1", "4"):
            assert b["throughput"][bs]["seq_per_s"] > 0 and b["model_only"][bs]["seq_per_s"] > 0
        assert b["latency_ms"]["n"] >= 4
        q = b["quality"]
        assert q["metric"] == metric and q["reference"] == "torch" and q["n"] == 12
        assert isinstance(q[metric], float) and -1 <= q[metric] <= 1
    bf = status["bertfast:fp32"]["quality"]
    assert bf["label_agreement"] == 1.0 and bf["max_abs_prob_diff"] < 1e-4, bf
    assert abs(bf[f"{metric}_delta_points"]) < 1e-2
    return status


def test_pair_regression_export(pair_regression, tmp_path):
    """Default data: the export's eval.jsonl, pairs from its text_pair column; Pearson per backend."""
    from transformers import AutoTokenizer

    from bertfast import tasks
    from bertfast.bench import run_benchmark
    from bertfast.runtime.classifier import Classifier

    out = tmp_path / "results"
    report = run_benchmark(_config(pair_regression, out=out))
    d = json.loads((out / "results.json").read_text())
    w = d["workload"]
    assert (w["task"], w["pair"], w["metric"], w["activation"]) == ("regression", True, "pearson", "identity")
    assert w["data"].endswith("eval.jsonl") and w["n_texts"] == 12
    status = _check_common(d, "pearson")
    assert {"spearman", "mae"} <= set(status["torch"]["quality"])

    rows = [json.loads(x) for x in (pair_regression / "eval.jsonl").read_text().splitlines()]
    pairs = [(r["text"], r["text_pair"]) for r in rows]
    with Classifier.load(pair_regression, threads=1) as clf:
        scores = clf.predict_proba(pairs)
    want = tasks.TASKS["regression"].evaluate(scores, np.array([r["label"] for r in rows]))["pearson"]
    assert status["bertfast:fp32"]["quality"]["pearson"] == pytest.approx(want, abs=1e-5)
    # token counts are those of the pairs, [CLS] a [SEP] b [SEP]
    tok = AutoTokenizer.from_pretrained(f"{pair_regression}-model")
    ids = tok([a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=64)["input_ids"]
    assert w["tokens"]["mean"] == pytest.approx(np.mean([len(x) for x in ids]))
    assert w["tokens"]["mean"] > np.mean([len(x) for x in tok([a for a, _ in pairs])["input_ids"]]) + 2

    md = (out / "results.md").read_text()
    assert md == report.to_markdown()
    assert "task: regression on text pairs" in md and "| label agreement | pearson | max score diff |" in md
    assert "one pair per call" in md


def test_multi_label_export(multi_label, tmp_path):
    """--data with list labels: micro-F1 at the export's thresholds, sigmoid scores for torch too."""
    from bertfast import tasks
    from bertfast.bench import run_benchmark
    from bertfast.runtime.classifier import Classifier

    rows = _rows(12, "multi_label", seed=3)
    data = _write_jsonl(tmp_path / "ml.jsonl", rows)
    report = run_benchmark(_config(multi_label, data=str(data)))
    d = report.data
    w = d["workload"]
    assert (w["task"], w["pair"], w["metric"], w["activation"]) == ("multi_label", False, "micro_f1", "sigmoid")
    assert w["thresholds"] == THRESHOLDS
    status = _check_common(d, "micro_f1")
    assert {"macro_f1", "exact_match"} <= set(status["torch"]["quality"])

    texts = [r["text"] for r in rows]
    y = np.array([[int(lb in r["label"]) for lb in MULTI_LABELS] for r in rows])
    with Classifier.load(multi_label, threads=1) as clf:
        scores = clf.predict_proba(texts)
    t = tasks.TASKS["multi_label"]
    want = t.evaluate(scores, y, THRESHOLDS)["micro_f1"]
    assert status["bertfast:fp32"]["quality"]["micro_f1"] == pytest.approx(want, abs=1e-6)
    assert status["torch"]["quality"]["micro_f1"] == pytest.approx(want, abs=1e-6)
    assert "| label agreement | micro_f1 |" in report.to_markdown()


def test_pair_export_needs_a_pair_column(pair_regression, tmp_path):
    from bertfast.bench import run_benchmark

    data = _write_jsonl(tmp_path / "single.jsonl", [{"text": r["text"], "label": r["label"]}
                                                    for r in _rows(6, "regression")])
    with_pairs = _write_jsonl(tmp_path / "pairs.jsonl", _rows(6, "regression"))
    for cfg in (_config(pair_regression, data=str(data)), _config(pair_regression, data=str(with_pairs)),
                _config(pair_regression, data=str(data), text_pair_column="text_pair")):
        with pytest.raises(BertfastError, match="--text-pair-column") as e:
            run_benchmark(cfg)
        assert "\n" not in str(e.value)


def test_single_text_export_refuses_a_pair_column(multi_label, tmp_path):
    from bertfast.bench import run_benchmark

    data = _write_jsonl(tmp_path / "pairs.jsonl", _rows(6, "multi_label"))
    with pytest.raises(BertfastError, match="--text-pair-column") as e:
        run_benchmark(_config(multi_label, data=str(data), text_pair_column="text_pair"))
    assert "single texts" in str(e.value) and "\n" not in str(e.value)


def test_load_data_reads_labels_as_the_task(multi_label, pair_regression, tmp_path):
    """CSV multi-label labels with --label-separator; labels of another kind: a warning, no metric."""
    from bertfast import tasks
    from bertfast.bench.quality import truth
    from bertfast.bench.target import load_data, resolve_target

    csv = tmp_path / "ml.csv"
    csv.write_text("text,label\nthe match,sport|tech\nthe vote,\nthe chip,tech\n")
    cfg = _config(multi_label, data=str(csv), label_separator="|")
    target = resolve_target(cfg)
    texts, labels, _ = load_data(cfg, target)
    assert texts == ["the match", "the vote", "the chip"] and labels == [["sport", "tech"], [], ["tech"]]
    y, why = truth(tasks.get("multi_label"), labels, target.id2label)
    assert why is None and y.tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]

    text_labels = _write_jsonl(tmp_path / "classes.jsonl", [{"text": r["text"], "text_pair": r["text_pair"],
                                                            "label": "good"} for r in _rows(4, "regression")])
    cfg = _config(pair_regression, data=str(text_labels), text_pair_column="text_pair")
    warnings: list[str] = []
    inputs, labels, _ = load_data(cfg, resolve_target(cfg), warnings)
    assert labels is None and len(inputs) == 4 and isinstance(inputs[0], tuple)
    assert len(warnings) == 1 and "regression" in warnings[0]
    cfg = _config(pair_regression, data=str(text_labels), text_pair_column="text_pair", label_separator="|")
    with pytest.raises(BertfastError, match="--label-separator"):
        load_data(cfg, resolve_target(cfg))


def test_model_folder_target_takes_its_task_from_config_and_pairs_from_data(pair_regression, multi_label, tmp_path):
    from bertfast.bench.target import load_data, resolve_target

    data = _write_jsonl(tmp_path / "pairs.jsonl", _rows(5, "regression"))
    cfg = _config(f"{pair_regression}-model", data=str(data), text_pair_column="text_pair")
    target = resolve_target(cfg)
    assert (target.task, target.activation, target.pair) == ("regression", "identity", None)
    inputs, labels, _ = load_data(cfg, target)
    assert target.pair is True and isinstance(inputs[0], tuple) and isinstance(labels[0], float)
    target = resolve_target(_config(f"{multi_label}-model"))
    assert (target.task, target.activation) == ("multi_label", "sigmoid")


def test_cli_flags():
    import argparse

    from bertfast.bench import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["x", "--text-pair-column", "doc", "--label-separator", "|"])
    assert args.text_pair_column == "doc" and args.label_separator == "|"
    assert p.parse_args(["x"]).text_pair_column is None


def test_committed_reports_render_unchanged():
    """Results written before tasks (no `task` in the workload) still render as they were."""
    from bertfast.bench.report import Report

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    checked = 0
    for f in sorted(root.glob("*/results.json")):
        d = json.loads(f.read_text())
        if d.get("format") != "bertfast-bench" or not (f.parent / "results.md").is_file():
            continue
        assert Report(d).to_markdown() == (f.parent / "results.md").read_text(), f
        checked += 1
    if not checked:
        pytest.skip("no committed bench results")


def test_optimum_on_pairs(pair_regression, tmp_path):
    """Optimum's pipeline gets pairs as {"text", "text_pair"} and agrees with torch on the scores."""
    pytest.importorskip("optimum.onnxruntime")
    from bertfast.bench import run_benchmark

    report = run_benchmark(_config(pair_regression, backends="torch,optimum", batch_sizes="4", latency_texts=2,
                                   cache_dir=tmp_path / "cache"))
    b = report.backend("optimum")
    assert b["status"] == "ok", b["error"]
    assert b["model_only"]["4"]["seq_per_s"] > 0 and b["throughput"]["4"]["padding_ratio"] is not None
    assert b["quality"]["label_agreement"] == 1.0 and b["quality"]["max_abs_prob_diff"] < 1e-3
    assert "pearson" in b["quality"]
