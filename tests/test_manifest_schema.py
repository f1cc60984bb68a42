"""A hand-edited or damaged bertfast.json fails on load with one line naming the field.

Families: wrong types anywhere, a default naming a missing or failed variant, files outside the
export folder (../, absolute, symbolic links), and a label count the graph does not have.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from bertfast.errors import BertfastError
from bertfast.manifest import MANIFEST_NAME, ManifestError, load_manifest
from bertfast.tasks import TASKS

FIX = "re-run `bertfast export --force`"


def _raw() -> dict:
    return {
        "format": "bertfast-export", "format_version": 1, "bertfast_version": "0.1.0",
        "source": {"model_dir": "runs/m"}, "id2label": {"0": "a", "1": "b"}, "max_length": 32,
        "model_max_length": 64, "inputs": ["input_ids", "attention_mask"], "output": "logits", "opset": 17,
        "tokenizer": {"file": "tokenizer.json", "pad_token_id": 0, "lowercase": True},
        "variants": {
            "fp32": {"status": "ok", "file": "model.onnx", "precision": "fp32", "devices": ["cpu"],
                     "validation": {"accuracy": 1.0}, "speed": None, "eligible": True},
            "int8": {"status": "failed", "reason": "calibration failed", "precision": "int8", "devices": ["cpu"]},
        },
        "default": {"cpu": "fp32", "cuda": None},
        "max_accuracy_drop": 0.5, "eval_data": {"source": "x", "rows": 3, "file": "eval.jsonl"},
        "training": None, "versions": {}, "reference": None, "export_seconds": 1.5,
    }


def _write(folder, raw) -> None:
    folder.mkdir(exist_ok=True)
    for name in ("model.onnx", "tokenizer.json", "eval.jsonl"):
        if not (folder / name).exists():
            (folder / name).write_text("x")
    (folder / MANIFEST_NAME).write_text(json.dumps(raw))


def _set(path: str, value):
    """A mutation of the raw manifest: set the dotted `path` (DELETE removes it)."""
    def edit(raw):
        *parents, last = path.split(".")
        obj = raw
        for p in parents:
            obj = obj[p]
        if value is DELETE:
            del obj[last]
        else:
            obj[last] = value
    return edit


DELETE = object()

BAD = [
    ("max_length", "128", "`max_length` must be an integer >= 3"),
    ("max_length", True, "`max_length` must be an integer"),
    ("max_length", 100, "`max_length` must be at most model_max_length (64)"),
    ("model_max_length", 12.5, "`model_max_length`"),
    ("format_version", "1", "`format_version` must be an integer"),
    ("inputs", "input_ids", "`inputs` must be a non-empty list"),
    ("inputs", [], "`inputs`"),
    ("inputs", ["input_ids", "input_ids"], "`inputs`"),
    ("inputs", ["input_ids", 3], "`inputs`"),
    ("output", 5, "`output`"),
    ("output", "", "`output`"),
    ("variants", [], "`variants` must be an object"),
    ("variants", {}, "`variants`"),
    ("variants.fp32", "model.onnx", "`variants.fp32` must be an object"),
    ("variants.fp32.file", DELETE, "`variants.fp32.file` is missing"),
    ("variants.fp32.file", 7, "`variants.fp32.file` must be a file name"),
    ("variants.fp32.devices", "cpu", "`variants.fp32.devices` must be a list"),
    ("variants.fp32.status", "maybe", "`variants.fp32.status`"),
    ("variants.fp32.eligible", "yes", "`variants.fp32.eligible`"),
    ("variants.fp32.validation", [1], "`variants.fp32.validation`"),
    ("id2label", ["a", "b"], "`id2label` must be an object"),
    ("id2label", {}, "`id2label` must be a non-empty object"),
    ("id2label", {"0": "a", "1": 2}, "`id2label.1` must be a label name"),
    ("id2label", {"0": "a", "1": None}, "`id2label.1`"),
    ("id2label", {"0": "a", "2": "b"}, "`id2label` must be keyed \"0\"..\"1\""),
    ("id2label", {"0": "a", "1": "a"}, "distinct label names"),
    ("id2label", DELETE, "`id2label` is missing"),
    ("tokenizer", "tokenizer.json", "`tokenizer` must be an object"),
    ("tokenizer.file", DELETE, "`tokenizer.file` is missing"),
    ("tokenizer.file", ["tokenizer.json"], "`tokenizer.file`"),
    ("tokenizer.pad_token_id", -1, "`tokenizer.pad_token_id` must be an integer >= 0"),
    ("tokenizer.pad_token_id", "0", "`tokenizer.pad_token_id`"),
    ("default", "fp32", "`default` must be an object"),
    ("default.cpu", "int4", "`default.cpu` must be one of the variants (fp32, int8)"),
    ("default.cpu", "int8", "`default.cpu` must be a variant that was built; 'int8' failed"),
    ("default.cpu", 3, "`default.cpu`"),
    ("max_accuracy_drop", "0.5", "`max_accuracy_drop`"),
    ("export_seconds", float("nan"), "`export_seconds`"),
    ("eval_data", "eval.jsonl", "`eval_data`"),
    ("eval_data.file", 5, "`eval_data.file`"),
    ("source", "runs/m", "`source` must be an object"),
    ("versions", [], "`versions`"),
    # task: a name from the task table, thresholds inside (0, 1) and one per label (#23)
    ("task", {"name": "ranking"}, "`task.name` must be one of single_label, multi_label, regression"),
    ("task", {"name": "multi_label", "thresholds": [1.5, 2]}, "`task.thresholds[0]` must be a number between 0 and 1"),
    ("task", {"name": "multi_label", "thresholds": [-1, -1]}, "`task.thresholds[0]` must be a number between 0 and 1"),
    ("task", {"name": "multi_label", "thresholds": [0.5, 1.0]}, "`task.thresholds[1]` must be a number between 0 and 1"),
    ("task", {"name": "multi_label", "thresholds": [0.5, "0.5"]}, "`task.thresholds[1]`"),
    ("task", {"name": "multi_label", "thresholds": [0.5]}, "`task.thresholds` must be one threshold per label (2)"),
    ("task", {"name": "multi_label", "thresholds": 0.5}, "`task.thresholds` must be a list of numbers"),
    ("task", {"name": "single_label", "pair": "yes"}, "`task.pair` must be true or false"),
    ("task", {"name": "single_label", "activation": "relu"}, "`task.activation` must be one of softmax, sigmoid"),
    ("task", {"name": "single_label", "pair_truncation": "middle"}, "`task.pair_truncation` must be longest_first"),
    ("task", {"name": "single_label", "min_agreement": 150}, "`task.min_agreement` must be a number between 0 and 100"),
    ("task", {"name": "single_label", "positive_label": "c"}, "`task.positive_label` must be one of the labels (a, b)"),
    ("task", {"pair": True}, "`task.name` is missing"),
    ("task", ["single_label"], "`task` must be an object or null"),
    ("window", {"cpu": {"variant": "fp32", "max_length": 16}}, "`window.cpu.long_text` is missing"),
    ("window", {"cpu": {"variant": "fp32", "max_length": 64, "long_text": "truncate"}},
     "`window.cpu.max_length` must be at most max_length (32)"),
    ("window", {"cpu": {"variant": "fp32", "max_length": 2, "long_text": "truncate"}}, "`window.cpu.max_length` must be an integer >= 3"),
    ("window", {"cpu": "fp32"}, "`window.cpu` must be an object {variant, max_length, long_text}"),
    ("batching", {"cpu": {"batch_tokens": 0}}, "`batching.cpu.batch_tokens` must be an integer >= 1"),
    ("batching", {"cpu": {"batch_tokens": 512, "seq_per_s": [1]}}, "`batching.cpu.seq_per_s`"),
    ("variants.fp32.mixed", {"kept_fp32": ["a"]}, "`variants.fp32.mixed.kept_fp32[0]` must be a layer number"),
    ("variants.fp32.mixed", {"steps": [1]}, "`variants.fp32.mixed.steps[0]` must be an object"),
    ("variants.fp32.mixed", "0,1", "`variants.fp32.mixed` must be an object"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[f"{p}={v!r}"[:40] for p, v, _ in BAD])
def test_bad_field_is_named(tmp_path, path, value, message):
    raw = _raw()
    _set(path, value)(raw)
    _write(tmp_path / "ex", raw)
    with pytest.raises(ManifestError) as e:
        load_manifest(tmp_path / "ex")
    msg = str(e.value)
    assert message in msg and msg.endswith(f"{FIX}.") and "\n" not in msg, msg


def test_valid_manifest_and_unknown_fields_load(tmp_path):
    raw = _raw()
    raw["future_field"] = {"kept": True}
    raw["variants"]["fp32"]["future"] = 1
    _write(tmp_path / "ex", raw)
    m = load_manifest(tmp_path / "ex")
    assert m.labels == ["a", "b"] and m.raw["future_field"] == {"kept": True}


@pytest.mark.parametrize("task", TASKS)
def test_every_task_in_the_table_loads(tmp_path, task):
    raw = _raw()
    raw["task"] = {"name": task, "pair": False, "thresholds": [0.001, 0.999], "future": 1}
    _write(tmp_path / "ex", raw)
    m = load_manifest(tmp_path / "ex")
    assert (m.task_name, m.thresholds, m.task.extra) == (task, [0.001, 0.999], {"future": 1})


# -- lengths against the positions the model has (its own config.json) ---------------------


def _positions(folder, **config) -> None:
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "max_position_embeddings": 64, **config}))


@pytest.mark.parametrize(("edit", "config", "message"), [
    ({"max_length": 2048, "model_max_length": None}, {},
     "`max_length` must be at most 64, the positions the model has (max_position_embeddings 64 in config.json), got 2048"),
    ({"max_length": 2048, "model_max_length": 2048}, {}, "`max_length` must be at most 64"),
    ({"model_max_length": 2048}, {}, "`model_max_length` must be at most 64"),
    ({"max_length": 100, "model_max_length": 100,
      "window": {"cpu": {"variant": "fp32", "max_length": 80, "long_text": "head-tail"}}}, {},
     "`window.cpu.max_length` must be at most 64"),
    # RoBERTa-style: padding_idx + 1 positions are reserved, as training's model_length_limit says.
    ({"max_length": 514, "model_max_length": None}, {"model_type": "roberta", "max_position_embeddings": 514,
                                                     "pad_token_id": 1},
     "`max_length` must be at most 512, the positions the model has (max_position_embeddings 514 in config.json, "
     "2 reserved by roberta), got 514"),
])
def test_lengths_over_the_model_positions_are_refused(tmp_path, edit, config, message):
    raw = {**_raw(), **edit}
    raw = {k: v for k, v in raw.items() if v is not None}
    _write(tmp_path / "ex", raw)
    _positions(tmp_path / "ex", **config)
    with pytest.raises(ManifestError) as e:
        load_manifest(tmp_path / "ex")
    msg = str(e.value)
    assert message in msg and msg.endswith(f"{FIX}.") and "\n" not in msg, msg


def test_lengths_within_the_positions_load_and_fill_an_old_export_limit(tmp_path):
    raw = _raw()
    del raw["model_max_length"]  # an export before the field: the limit was its window
    _write(tmp_path / "ex", raw)
    assert load_manifest(tmp_path / "ex").model_max_length == 32
    _positions(tmp_path / "ex", model_type="xlm-roberta", max_position_embeddings=514, pad_token_id=1)
    assert load_manifest(tmp_path / "ex").model_max_length == 512
    (tmp_path / "ex" / "config.json").write_text("{not json")
    with pytest.raises(BertfastError, match="config.json is unreadable or corrupt"):
        load_manifest(tmp_path / "ex")


def test_a_max_length_override_over_the_positions_is_refused(tiny_export, tmp_path):
    from bertfast.runtime.classifier import Classifier

    limit = json.loads((tiny_export / "config.json").read_text())["max_position_embeddings"]
    with pytest.raises(BertfastError) as e:
        Classifier.load(tiny_export, device="cpu", max_length=4 * limit)
    msg = str(e.value)
    assert f"max_length must be an integer between 3 and the model's limit {limit}; got {4 * limit}" in msg
    ex = _edited(tiny_export, tmp_path / "ex", max_length=4 * limit, model_max_length=4 * limit)
    with pytest.raises(ManifestError, match=rf"`max_length` must be at most {limit}, the positions the model has"):
        Classifier.load(ex, device="cpu")


@pytest.mark.parametrize("junk", ["[]", '"x"', "3", "null", "[" * 100_000])
def test_not_an_object(tmp_path, junk):
    _write(tmp_path / "ex", {})
    (tmp_path / "ex" / MANIFEST_NAME).write_text(junk)
    with pytest.raises(BertfastError, match="re-run `bertfast export --force`"):
        load_manifest(tmp_path / "ex")


# -- files outside the export folder -------------------------------------------------------


@pytest.mark.parametrize("field", ["variants.fp32.file", "tokenizer.file", "eval_data.file"])
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "symlinked-dir"])
def test_files_outside_the_folder_are_refused(tmp_path, field, how):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.onnx").write_text("secret")
    ex = tmp_path / "ex"
    raw = _raw()
    _write(ex, raw)
    if how == "dotdot":
        name = "../elsewhere/x.onnx"
    elif how == "absolute":
        name = str(outside / "x.onnx")
    elif how == "symlink":
        (ex / "link.onnx").symlink_to(outside / "x.onnx")
        name = "link.onnx"
    else:
        (ex / "sub").symlink_to(outside, target_is_directory=True)
        name = "sub/x.onnx"
    _set(field, name)(raw)
    _write(ex, raw)
    with pytest.raises(ManifestError) as e:
        load_manifest(ex)
    msg = str(e.value)
    assert f"`{field}`" in msg and "outside the export folder" in msg and msg.endswith(f"{FIX}.")


def test_links_inside_the_folder_and_a_linked_export_folder_are_fine(tmp_path):
    ex = tmp_path / "ex"
    raw = _raw()
    _write(ex, raw)
    (ex / "sub").mkdir()
    shutil.move(ex / "model.onnx", ex / "sub" / "real.onnx")
    (ex / "model.onnx").symlink_to(os.path.join("sub", "real.onnx"))
    raw["variants"]["fp32"]["file"] = "sub/../model.onnx"
    _write(ex, raw)
    assert load_manifest(ex).variant_file("fp32").is_file()
    (tmp_path / "alias").symlink_to(ex, target_is_directory=True)
    assert load_manifest(tmp_path / "alias").tokenizer_file.is_file()


def test_editing_a_loaded_manifest_cannot_escape_either(tmp_path):
    _write(tmp_path / "ex", _raw())
    m = load_manifest(tmp_path / "ex")
    m.variants["fp32"]["file"] = "../../etc/passwd"
    with pytest.raises(ManifestError, match="variants.fp32.file"):
        m.variant_file("fp32")


# -- the label count against the graph ---------------------------------------------------


def _edited(src, dst, **fields):
    shutil.copytree(src, dst)
    raw = json.loads((dst / MANIFEST_NAME).read_text())
    raw.update(fields)
    (dst / MANIFEST_NAME).write_text(json.dumps(raw))
    return dst


@pytest.mark.parametrize("labels", [["a", "b"], ["a", "b", "c", "d"]])
def test_label_count_must_match_the_graph(tiny_export, tmp_path, labels):
    from bertfast.runtime.classifier import Classifier

    ex = _edited(tiny_export, tmp_path / "ex", id2label={str(i): x for i, x in enumerate(labels)})
    with pytest.raises(ManifestError) as e:
        Classifier.load(ex, device="cpu")
    msg = str(e.value)
    assert f"has {len(labels)} labels but the model outputs 3 scores" in msg and "`id2label`" in msg
    assert "\n" not in msg


def test_dynamic_output_width_is_checked_on_the_first_run(tiny_export):
    from bertfast.runtime.classifier import Classifier
    from bertfast.runtime.session import check_output_width

    class Out:
        name, shape = "logits", ["batch", "labels"]

    class Dynamic:
        def get_outputs(self):
            return [Out()]

    with Classifier.load(tiny_export, device="cpu") as clf:
        check_output_width(clf.manifest, Dynamic())  # nothing to compare before a run: no error
        assert np.isfinite(clf.predict_proba("a goal")).all()
        # As if id2label had 4 entries and the graph's width were dynamic (unchecked at load).
        clf.manifest.id2label = {**clf.manifest.id2label, 3: "extra"}
        clf.labels = clf.manifest.labels
        for texts in ("a goal", ["a goal", "the vote"]):
            with pytest.raises(ManifestError, match="has 4 labels but the model outputs 3 scores"):
                clf.predict(texts)


def test_cli_prints_one_line_and_exits_2(tiny_export, tmp_path, capsys):
    from bertfast.cli import main

    ex = _edited(tiny_export, tmp_path / "ex", max_length="128")
    (tmp_path / "in.txt").write_text("a goal\n")
    rc = main(["predict", str(ex), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "o.jsonl"),
               "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "`max_length` must be an integer" in err
