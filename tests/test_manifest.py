"""The manifest dataclass: written and read through the same fields; old files still load."""

from __future__ import annotations

import json

import pytest

from bertfast.errors import BertfastError
from bertfast.manifest import MANIFEST_NAME, Manifest, load_manifest


def _folder(tmp_path, **over) -> Manifest:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "model_int8.onnx").write_bytes(b"onnx")
    (tmp_path / "tokenizer.json").write_text("{}")
    m = Manifest(
        id2label={0: "a", 1: "b"}, max_length=32, inputs=["input_ids", "attention_mask"],
        source={"model_dir": "runs/m", "family": "bert"},
        variants={
            "fp32": {"status": "ok", "file": "model.onnx", "precision": "fp32", "devices": ["cpu", "cuda"]},
            "int8": {"status": "ok", "file": "model_int8.onnx", "precision": "int8", "devices": ["cpu"]},
            "int8-static": {"status": "failed", "reason": "ExportError: calibration failed", "precision": "int8",
                            "devices": ["cpu"]},
        },
        default={"cpu": "int8", "cuda": "fp32", "tensorrt": None},
    )
    for k, v in over.items():
        setattr(m, k, v)
    m.write(tmp_path)
    return m


def test_write_then_load_round_trips(tmp_path):
    m = _folder(tmp_path)
    back = load_manifest(tmp_path)
    assert back.to_dict() == m.to_dict()
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert list(raw)[:2] == ["format", "format_version"] and raw["id2label"] == {"0": "a", "1": "b"}
    assert back.labels == ["a", "b"] and back.model_max_length == 32 and back.pad_token_id == 0
    assert back.tokenizer_file == tmp_path / "tokenizer.json" and back.folder == tmp_path
    assert back.raw["source"]["family"] == "bert"


def test_failed_variant_needs_no_file_and_is_never_picked(tmp_path):
    _folder(tmp_path, default={"cpu": "int8-static"})
    # The exporter never names a failed variant as a default: one that does was hand-edited.
    with pytest.raises(BertfastError, match="`default.cpu` must be a variant that was built; 'int8-static' failed"):
        load_manifest(tmp_path)
    _folder(tmp_path)
    m = load_manifest(tmp_path)
    m.default["cpu"] = "int8-static"  # edited in memory: still never picked
    assert m.pick_variant("cpu") == "fp32"  # first usable one for the device
    with pytest.raises(BertfastError, match="'int8-static'.*failed to build.*calibration failed"):
        m.pick_variant("cpu", "int8-static")
    with pytest.raises(BertfastError, match="failed to build"):
        m.variant_file("int8-static")


def test_old_manifest_with_cpu_cuda_defaults_loads(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "tokenizer.json").write_text("{}")
    old = {
        "format": "bertfast-export", "format_version": 1, "some_future_field": {"kept": True},
        "id2label": {"0": "x"}, "max_length": 16, "inputs": ["input_ids"],
        "tokenizer": {"file": "tokenizer.json", "pad_token_id": 3},
        "variants": {"fp32": {"file": "model.onnx", "precision": "fp32", "devices": ["cpu", "cuda"]}},
        "default": {"cpu": "fp32", "cuda": None},
    }
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(old))
    m = load_manifest(tmp_path)
    assert m.default == {"cpu": "fp32", "cuda": None} and m.pad_token_id == 3
    assert m.pick_variant("cuda") == "fp32" and m.raw["some_future_field"] == {"kept": True}
    with pytest.raises(BertfastError, match="no variant for device 'tensorrt'"):
        m.pick_variant("tensorrt")


def test_only_failed_variants_is_not_an_export(tmp_path):
    m = _folder(tmp_path)
    m.variants = {"int8-static": m.variants["int8-static"]}
    m.default = {"cpu": None}
    m.write(tmp_path)
    with pytest.raises(BertfastError, match="no usable variants"):
        load_manifest(tmp_path)


def test_missing_field_is_reported(tmp_path):
    _folder(tmp_path)
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    del raw["inputs"]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(BertfastError, match="`inputs` is missing .*re-run `bertfast export --force`"):
        load_manifest(tmp_path)


# -- the typed blocks: declared once, read as they were written --------------------------------

BLOCKS = {
    "task": {"name": "multi_label", "pair": False, "activation": "sigmoid", "thresholds": [0.3, 0.65],
             "pair_truncation": "longest_first", "primary_metric": "micro_f1", "min_agreement": 99.5,
             "label_mapping": "integer labels are class ids", "positive_label": "b", "future": {"kept": 1}},
    "window": {"cpu": {"variant": "int8", "max_length": 24, "long_text": "head-tail"}},
    "batching": {"cpu": {"batch_tokens": 2048, "variant": "int8", "device": "cpu",
                         "seq_per_s": {"1024": 10.5, "2048": 11.0}, "texts": 64}},
}
MIXED = {"base": {"per_channel": True, "reduce_range": None}, "sample": 40, "base_agreement": 0.9,
         "base_mean_abs_diff": 0.01, "sensitivity": {"0": {"agreement_gain": 0.1, "mean_abs_diff_gain": 0.0}},
         "steps": [{"kept_fp32": [0], "metric_drop_points": 0.1, "label_agreement": 1.0, "eligible": True,
                    "reason": ""}], "kept_fp32": [0], "layers": 2}


def test_blocks_are_typed_and_written_back_with_the_same_keys(tmp_path):
    from bertfast.manifest_schema import BatchingBlock, MixedBlock, TaskBlock, WindowBlock

    _folder(tmp_path)
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    raw.update(BLOCKS)
    raw["variants"]["int8"]["mixed"] = MIXED
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw))
    m = load_manifest(tmp_path)
    assert isinstance(m.task, TaskBlock) and isinstance(m.window["cpu"], WindowBlock)
    assert isinstance(m.batching["cpu"], BatchingBlock) and isinstance(m.variants["int8"]["mixed"], MixedBlock)
    assert (m.task.thresholds, m.window["cpu"].max_length, m.batching["cpu"].batch_tokens) == ([0.3, 0.65], 24, 2048)
    assert m.variants["int8"]["mixed"].kept_fp32 == [0] and m.task.extra == {"future": {"kept": 1}}
    assert (m.task_name, m.activation, m.positive_label, m.thresholds) == ("multi_label", "sigmoid", "b", [0.3, 0.65])
    # Read as the JSON object too (what code and tests written against dicts do), and written back as read.
    assert m.task["primary_metric"] == "micro_f1" and m.window["cpu"].get("long_text") == "head-tail"
    assert m.task == BLOCKS["task"] and m.to_dict() == raw
    m.write(tmp_path)
    assert json.loads((tmp_path / MANIFEST_NAME).read_text()) == raw


def test_a_block_from_before_its_newer_fields_loads(tmp_path):
    _folder(tmp_path, task={"name": "regression", "pair": True})  # written before activation, thresholds, ...
    m = load_manifest(tmp_path)
    assert (m.task_name, m.pair, m.activation, m.thresholds, m.pair_truncation) == (
        "regression", True, "identity", None, "longest_first")
    assert m.positive_label is None and "positive_label" not in m.task and "label_mapping" not in m.raw["task"]
    _folder(tmp_path, task=None)  # before tasks: single_label on single texts
    m = load_manifest(tmp_path)
    assert (m.task, m.task_name, m.pair, m.activation) == (None, "single_label", False, "softmax")


def test_blocks_are_frozen_and_checked_where_they_are_made(tmp_path):
    m = _folder(tmp_path, task={"name": "multi_label", "thresholds": [0.5, 0.5]})
    with pytest.raises(TypeError):
        m.task["thresholds"] = [0.2, 0.2]  # frozen: `replace` makes a checked copy
    m.task = m.task.replace(thresholds=[0.2, 0.7])
    assert m.thresholds == [0.2, 0.7]
    with pytest.raises(BertfastError, match=r"`task.thresholds\[1\]` must be a number between 0 and 1"):
        m.task.replace(thresholds=[0.2, 7])
    with pytest.raises(BertfastError, match="`task.name` must be one of single_label, multi_label, regression"):
        m.task = {"name": "ranking"}
    m.window = {"cpu": {"variant": "int8", "max_length": 16, "long_text": "truncate"}}  # as the exporter assigns it
    assert m.window["cpu"].variant == "int8"
    with pytest.raises(BertfastError, match="`window.cpu.long_text` must be truncate or head-tail"):
        m.window = {"cpu": {"variant": "int8", "max_length": 16, "long_text": "sideways"}}
    with pytest.raises(BertfastError, match="`batching.cpu.batch_tokens` must be an integer >= 1"):
        m.batching = {"cpu": {"batch_tokens": -5}}
    m.batching = {"cpu": {}}  # nothing measured (no eval inputs): an empty block, written as {}
    assert m.to_dict()["batching"] == {"cpu": {}}


def test_the_checks_are_derived_from_the_declarations():
    from dataclasses import fields

    from bertfast.manifest_schema import BatchingBlock, MixedBlock, TaskBlock, WindowBlock, schema_of

    for cls in (Manifest, TaskBlock, WindowBlock, BatchingBlock, MixedBlock):
        declared = {f.name for f in fields(cls)} - {"path", "extra", "at"}
        assert set(schema_of(cls)) == declared, cls
    assert {"positive_label", "thresholds", "label_mapping"} <= set(schema_of(TaskBlock))
