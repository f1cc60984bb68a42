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
