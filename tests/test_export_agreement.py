"""`--agreement-data`: texts without labels feed agreement, score error and batch invariance;
an export with only unlabeled texts gates on agreement alone; static quantization never
calibrates on rows it is validated on (#22)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import make_texts

from bertfast.errors import BertfastError, DataError
from bertfast.exporter import ExportConfig, export, format_table
from bertfast.manifest import load_manifest

# The tiny model scores at chance on its own labels (tests/conftest.py): the labeled exports here
# pass --accept-weak-reference, which is not what they are about.


def _no_splits(tiny_trained, tmp_path):
    """The tiny model as a third-party checkpoint: no saved splits, no training.json."""
    model = tmp_path / "model"
    shutil.copytree(tiny_trained, model)
    shutil.rmtree(model / "splits")
    (model / "training.json").unlink()
    return model


def _texts(path, n, seed=5):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t, _ in make_texts(n, seed=seed)))
    return path


def test_unlabeled_only_export_gates_on_agreement(tiny_trained, tmp_path):
    model = _no_splits(tiny_trained, tmp_path)
    texts = _texts(tmp_path / "traffic.jsonl", 300)
    out = export(ExportConfig(model_dir=str(model), out=str(tmp_path / "e"), agreement_data=str(texts),
                              variants="fp32,int8-dynamic,int8-static", window_search=False, max_agreement_samples=200))
    m = load_manifest(out)
    assert m.eval_data["rows"] == 0 and m.eval_data["agreement_rows"] == 150  # a quarter held out to calibrate
    assert m.eval_data["calibration"] == "50 rows of --agreement-data, held out of validation"
    assert m.eval_data["agreement"].endswith("(200 of 300 rows)")
    val = m.variants["int8-dynamic"]["validation"]
    assert val["n"] == 150 and val["labeled_n"] == 0 and val["accuracy"] is None
    lo, hi = val["agreement_ci"]
    assert 0 <= lo <= val["label_agreement"] <= 1 and val["agreement_bound"] == lo
    table = format_table(m.raw)
    assert "no labels: the gate bounds agreement and score error" in table and "agree95" in table


def test_agreement_rows_add_to_labeled_ones(tiny_trained, tmp_path):
    texts = _texts(tmp_path / "traffic.jsonl", 80)
    out = export(ExportConfig(model_dir=str(tiny_trained), out=str(tmp_path / "e"), agreement_data=str(texts),
                              variants="fp32,int8-static", window_search=False, accept_weak_reference=True))
    m = load_manifest(out)
    val = m.variants["fp32"]["validation"]
    assert val["labeled_n"] == m.eval_data["rows"] and val["n"] == m.eval_data["rows"] + 80
    assert val["accuracy"] is not None  # the labeled rows still feed the metric
    assert m.eval_data["calibration"].startswith("training split")


def test_calibration_rows_are_held_out_of_validation(tiny_trained, tmp_path):
    model = _no_splits(tiny_trained, tmp_path)
    ev = tiny_trained / "splits" / "validation.jsonl"
    n = sum(1 for _ in open(ev))
    out = export(ExportConfig(model_dir=str(model), out=str(tmp_path / "e"), eval_data=str(ev),
                              variants="fp32,int8-static", window_search=False, accept_weak_reference=True))
    m = load_manifest(out)
    held = n // 4
    assert m.eval_data["calibration"] == f"{held} eval rows, held out of validation"
    assert m.eval_data["rows"] == n - held == sum(1 for _ in open(out / "eval.jsonl"))


def test_bad_agreement_data_is_one_line_naming_the_flag(tiny_trained, tmp_path):
    model = _no_splits(tiny_trained, tmp_path)
    texts = _texts(tmp_path / "traffic.jsonl", 50)
    with pytest.raises(DataError, match="^--max-metric-drop needs labeled data"):
        export(ExportConfig(model_dir=str(model), out=str(tmp_path / "e"), agreement_data=str(texts),
                            max_metric_drop=0.5))
    with pytest.raises(DataError) as e:
        export(ExportConfig(model_dir=str(model), out=str(tmp_path / "e"), agreement_data=str(texts),
                            text_column="body"))
    assert str(e.value).startswith("--agreement-data") and "body" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="--agreement-data FILE"):
        export(ExportConfig(model_dir=str(model), out=str(tmp_path / "e")))
    assert not (tmp_path / "e").exists()
    with pytest.raises(BertfastError, match="^--max-agreement-samples"):
        ExportConfig(model_dir="m", max_agreement_samples=1)
