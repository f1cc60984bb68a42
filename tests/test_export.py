from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import make_texts, write_csv

from bertfast.errors import BertfastError, DataError, ModelError
from bertfast.exporter import ExportConfig, export, format_table
from bertfast.exporter.optimize import op_counts
from bertfast.manifest import load_manifest

N_LAYERS = 2  # the tiny fixture model


def _torch_probs(model_dir, texts, max_length):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        enc = tok(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        if model.config.model_type == "distilbert":
            enc.pop("token_type_ids", None)
        return torch.softmax(model(**enc).logits, -1).numpy()


def test_manifest_records_inputs_labels_and_validation(tiny_export):
    m = load_manifest(tiny_export)
    raw = m.raw
    assert m.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    assert set(m.labels) == {"sport", "tech", "politics"}
    assert m.max_length == 64  # from training.json
    from bertfast.exporter.quantize import PRESETS

    expected = {"fp32", "int8-dynamic", "int8-dynamic-pc", "int8-static"}
    if PRESETS[raw["quantization_preset"]]["reduce_range"]:  # avx2: the full-range variant too
        expected.add("int8-dynamic-pc-fr")
    assert set(m.variants) == expected
    assert raw["source"]["sha256"] and raw["opset"] == 17 and "onnxruntime" in raw["versions"]
    for name, v in m.variants.items():
        val = v["validation"]
        assert val["n"] == raw["eval_data"]["rows"] > 0, name
        assert 0 <= val["label_agreement"] <= 1 and v["speed"]["seq_per_s"] > 0
        assert val["metric_drop_points"] == val["accuracy_drop_points"]  # single_label: the same figure
        # eligible only when the 95% evidence supports it: the drop's interval within the budget,
        # the agreement's lower bound over the floor (exporter/evidence.py)
        assert v["eligible"] == (val["drop_ci"][1] <= raw["max_accuracy_drop"]
                                 and val["agreement_bound"] * 100 >= raw["task"]["min_agreement"] - 1e-9
                                 and val["label_agreement"] * 100 >= raw["task"]["min_agreement"] - 1e-9), name
    assert raw["task"] == {"name": "single_label", "pair": False, "activation": "softmax", "thresholds": None,
                           "pair_truncation": "longest_first", "primary_metric": "accuracy", "min_agreement": 99.5}
    assert raw["max_accuracy_drop"] == 0.5
    assert m.variants["fp32"]["validation"]["label_agreement"] == 1.0
    assert m.variants["fp32"]["validation"]["max_abs_prob_diff"] < 1e-4
    # the default is an eligible CPU variant no other eligible one beats beyond the timing noise,
    # else fp32 (exporter/speed.py)
    from bertfast.exporter.speed import beats

    elig = {n: v["speed"] for n, v in m.variants.items() if v["eligible"]}
    if elig:
        assert m.default["cpu"] in elig and not any(beats(sp, elig[m.default["cpu"]]) for sp in elig.values())
    else:
        assert m.default["cpu"] == "fp32"
    assert m.default["cuda"] == "fp32"
    assert (tiny_export / "eval.jsonl").exists() and (tiny_export / "config.json").exists()


def test_fp32_graph_is_fused(tiny_export):
    ops = op_counts(tiny_export / "model.onnx")
    assert ops.get("Attention") == N_LAYERS
    assert ops.get("EmbedLayerNormalization") == 1
    assert ops.get("SkipLayerNormalization") == 2 * N_LAYERS
    assert ops.get("BiasGelu") == N_LAYERS
    assert "Softmax" not in ops and "Erf" not in ops  # nothing left unfused


def test_int8_graphs_are_quantized(tiny_export):
    m = load_manifest(tiny_export)
    for name in [n for n in m.variants if n.startswith("int8-dynamic")]:
        ops = op_counts(m.variant_file(name))
        assert ops.get("QAttention") == N_LAYERS, name
        assert ops.get("MatMulInteger", 0) >= 2 * N_LAYERS, name  # FFN in/out per layer
        assert ops.get("MatMul", 0) == 0 and ops.get("Attention", 0) == 0, name
    static = op_counts(m.variant_file("int8-static"))
    assert static.get("QuantizeLinear", 0) >= 2 * N_LAYERS and static.get("DequantizeLinear", 0) >= 2 * N_LAYERS


def test_fp32_variant_matches_pytorch(tiny_export, tiny_trained):
    from bertfast.runtime.classifier import Classifier

    texts = [t for t, _ in make_texts(25, seed=7)] + ["", "a " * 200]
    ref = _torch_probs(tiny_trained, texts, 64)
    with Classifier.load(tiny_export, device="cpu", variant="fp32") as clf:
        got = clf.predict_proba(texts)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    with Classifier.load(tiny_export, device="cpu", variant="int8-dynamic") as clf:
        q = clf.predict_proba(texts)
    assert np.abs(q - ref).max() < 0.05


def test_loads_in_optimum_and_transformers_pipeline(tiny_export):
    # optimum-onnx is the optional [optimum] extra (it pins transformers 4.57); CI's second
    # environment installs it and runs this test.
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification
    except ImportError:  # absent, or an optimum that does not match this transformers
        pytest.skip("needs pip install 'bertfast[optimum]' (transformers 4.57)")
    from transformers import AutoTokenizer, pipeline

    from bertfast.runtime.classifier import Classifier

    texts = [t for t, _ in make_texts(12, seed=3)]
    tok = AutoTokenizer.from_pretrained(tiny_export)
    m = load_manifest(tiny_export)
    for name in ("fp32", "int8-dynamic"):
        ort_model = ORTModelForSequenceClassification.from_pretrained(tiny_export, file_name=m.variants[name]["file"])
        pipe = pipeline("text-classification", model=ort_model, tokenizer=tok, truncation=True, max_length=64)
        theirs = [r["label"] for r in pipe(texts)]
        with Classifier.load(tiny_export, device="cpu", variant=name) as clf:
            ours = [r["label"] for r in clf.predict(texts)]
        assert theirs == ours, name


def test_mixed_and_fp16_variants(tiny_trained, tmp_path):
    out = export(ExportConfig(model_dir=str(tiny_trained), out=str(tmp_path / "e"), device="all",
                              variants="fp32,int8-mixed,fp16", accept_weak_reference=True))
    m = load_manifest(out)
    mixed = op_counts(m.variant_file("int8-mixed"))
    # first and last layer (both layers here) and the head stay fp32: no QAttention, float MatMuls remain
    assert mixed.get("MatMul", 0) > 0 and mixed.get("Attention", 0) == N_LAYERS
    fp16 = m.variants["fp16"]
    assert fp16["devices"] == ["cuda", "tensorrt"] and fp16["precision"] == "fp16"  # GPU providers only
    import onnx

    g = onnx.load(str(m.variant_file("fp16")))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in g.graph.initializer)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert fp16["eligible"] is False and "not validated" in fp16["reason"]
        assert m.default["cuda"] == "fp32"


def test_model_without_token_type_ids(tmp_path):
    """DistilBERT takes no token_type_ids: the graph and the runtime must agree on that."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from bertfast.runtime.classifier import Classifier

    src = tmp_path / "distil"
    shutil.copytree(_tok_dir(tmp_path), src)
    cfg = DistilBertConfig(vocab_size=200, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128,
                           id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1})
    DistilBertForSequenceClassification(cfg).save_pretrained(src)
    ev = write_csv(tmp_path / "ev.csv", [(t, "ab"[i % 2]) for i, (t, _) in enumerate(make_texts(20))])
    out = export(ExportConfig(model_dir=str(src), out=str(tmp_path / "e"), eval_data=str(ev), variants="fp32,int8-dynamic", max_length=32,
                              window_search=False, accept_weak_reference=True))  # a random model
    m = load_manifest(out)
    assert m.inputs == ["input_ids", "attention_mask"]
    texts = [t for t, _ in make_texts(6)]
    with Classifier.load(out, device="cpu", variant="fp32") as clf:
        np.testing.assert_allclose(clf.predict_proba(texts), _torch_probs(src, texts, 32), atol=1e-4)


def _tok_dir(tmp_path):
    from conftest import _vocab, bert_tokenizer

    d = tmp_path / "tok"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    bert_tokenizer(d / "vocab.txt").save_pretrained(d)
    return d


# ----------------------------------------------------------------------------- bad input


def test_refuses_to_overwrite_without_force(tiny_export, tiny_trained):
    before = (tiny_export / "bertfast.json").read_text()
    with pytest.raises(BertfastError, match="already exists.*--force"):
        export(ExportConfig(model_dir=str(tiny_trained), out=str(tiny_export)))
    assert (tiny_export / "bertfast.json").read_text() == before


def test_failed_export_keeps_previous_export(tiny_export, tiny_trained, tmp_path, monkeypatch):
    prev = tmp_path / "prev"
    shutil.copytree(tiny_export, prev)
    before = sorted(p.name for p in prev.iterdir())
    from bertfast.exporter import quantize

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quantize, "dynamic", boom)
    with pytest.raises(OSError, match="No space left"):
        export(ExportConfig(model_dir=str(tiny_trained), out=str(prev), force=True))
    assert sorted(p.name for p in prev.iterdir()) == before
    load_manifest(prev)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bertfast-tmp")]


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        export(ExportConfig(model_dir=str(tmp_path / "nope")))
    (tmp_path / "x").mkdir()
    with pytest.raises(ModelError, match="not a model folder"):
        export(ExportConfig(model_dir=str(tmp_path / "x")))


def test_non_classification_checkpoint(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(tmp_path / "enc")
    with pytest.raises(ModelError, match="BertModel checkpoint, not a sequence classifier"):
        export(ExportConfig(model_dir=str(tmp_path / "enc")))


def test_corrupt_weights(tiny_trained, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_trained, bad)
    (bad / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="corrupt"):
        export(ExportConfig(model_dir=str(bad), out=str(tmp_path / "e")))
    assert not (tmp_path / "e").exists()


def test_export_prints_nothing_and_logs_no_temporary_paths(tiny_trained, tmp_path, capfd, caplog):
    """Calibration chatter (ONNX Runtime print()s its histogram progress) stays off stdout, and the
    variants loaded while validating are not logged one line each with their temporary folder."""
    import logging

    with caplog.at_level(logging.INFO, logger="bertfast"):
        export(ExportConfig(model_dir=str(tiny_trained), out=str(tmp_path / "e"), variants="fp32,int8-static",
                            window_search=False, accept_weak_reference=True))
    out = capfd.readouterr().out
    assert "Collecting tensor data" not in out and "Number of tensors" not in out and out == ""
    assert "loaded " not in caplog.text and ".bertfast-tmp" not in caplog.text


def test_tensorflow_only_folder_names_tf_model_h5_and_the_conversion(tiny_trained, tmp_path):
    tf = tmp_path / "tf"
    shutil.copytree(tiny_trained, tf)
    (tf / "model.safetensors").unlink()
    (tf / "tf_model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(BertfastError) as e:
        export(ExportConfig(model_dir=str(tf), out=str(tmp_path / "e")))
    msg = str(e.value)
    assert "\n" not in msg and "tf_model.h5" in msg and "from_tf=True" in msg
    assert not (tmp_path / "e").exists()


def test_eval_labels_must_match_id2label(tiny_trained, tmp_path):
    ev = write_csv(tmp_path / "ev.csv", [("hello", "cooking"), ("world", "sport")])
    with pytest.raises(DataError, match="'cooking' that the model does not know; its labels.*sport"):
        export(ExportConfig(model_dir=str(tiny_trained), out=str(tmp_path / "e"), eval_data=str(ev)))


def test_no_eval_data(tiny_model, tmp_path):
    # A checkpoint not trained by bertfast has no saved split: ask for --eval-data.
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(tiny_model).save_pretrained(tiny_model)
    with pytest.raises(DataError, match="--eval-data"):
        export(ExportConfig(model_dir=str(tiny_model), out=str(tmp_path / "e")))


def test_bad_flags_name_the_flag():
    with pytest.raises(BertfastError, match="--variants: unknown int4"):
        ExportConfig(model_dir="m", variants="fp32,int4")
    with pytest.raises(BertfastError, match="--device"):
        ExportConfig(model_dir="m", device="tpu")
    with pytest.raises(BertfastError, match="--quantize 'avx9' is not a preset"):
        from bertfast.exporter.quantize import check_preset

        check_preset("avx9")


def test_unknown_variant_at_load(tiny_export):
    from bertfast.runtime.classifier import Classifier

    with pytest.raises(BertfastError, match="variant 'int4'.*available: fp32"):
        Classifier.load(tiny_export, variant="int4")


def test_manifest_is_readable_json(tiny_export):
    json.loads((tiny_export / "bertfast.json").read_text())


def test_default_choice_prefers_fidelity_among_near_ties():
    from bertfast.exporter import _choose_defaults

    def v(speed, agree, drop, eligible=True, devices=("cpu",)):
        return {"devices": list(devices), "eligible": eligible, "speed": {"seq_per_s": speed, "device": "cpu"},
                "validation": {"label_agreement": agree, "accuracy_drop_points": drop}}

    variants = {"fp32": v(30, 1.0, 0, devices=("cpu", "cuda")), "a": v(50, 0.995, 0.4), "b": v(49, 0.998, 0.2),
                "c": v(70, 0.90, 3.0, eligible=False)}
    # one key per provider; no variant here targets tensorrt
    assert _choose_defaults(variants) == {"cpu": "b", "cuda": "fp32", "tensorrt": None}  # c: fastest, over budget
    variants["a"]["speed"]["seq_per_s"] = 60  # now a clear winner on speed
    assert _choose_defaults(variants)["cpu"] == "a"
    for x in ("a", "b"):
        variants[x]["eligible"] = False
    assert _choose_defaults(variants)["cpu"] == "fp32"


def test_out_overlapping_the_model_folder_is_refused(tiny_trained):
    with pytest.raises(BertfastError, match="overlaps the model folder"):
        export(ExportConfig(model_dir=str(tiny_trained), out=str(tiny_trained), force=True))
    with pytest.raises(BertfastError, match="overlaps the model folder"):
        export(ExportConfig(model_dir=str(tiny_trained), out=str(tiny_trained / "onnx"), force=True))
    assert (tiny_trained / "model.safetensors").exists()


def test_failed_variant_is_recorded_not_fatal(tiny_trained, tmp_path, monkeypatch, capsys, caplog):
    import dataclasses
    import logging

    from bertfast.exporter.variants import VARIANTS

    def boom(ctx, dst):
        raise RuntimeError("calibration exploded\nsecond line")

    monkeypatch.setitem(VARIANTS, "int8-static", dataclasses.replace(VARIANTS["int8-static"], build=boom))
    with caplog.at_level(logging.WARNING):
        out = export(ExportConfig(model_dir=str(tiny_trained), out=str(tmp_path / "e"),
                                  variants="fp32,int8-dynamic,int8-static", accept_weak_reference=True))
    m = load_manifest(out)
    failed = m.variants["int8-static"]
    assert failed["status"] == "failed" and failed["reason"] == "calibration exploded"
    assert failed["precision"] == "int8" and failed["devices"] == ["cpu"] and "file" not in failed
    assert not (out / "model_int8_static.onnx").exists()
    assert m.variants["int8-dynamic"]["status"] == "ok" and m.variants["int8-dynamic"]["validation"]
    assert "int8-static" not in m.default.values() and m.pick_variant("cpu") != "int8-static"
    assert "failed: calibration exploded" in format_table(m.raw)  # the validation table
    assert capsys.readouterr().out == ""  # the library prints nothing; the CLI prints the table
    # ONNX Runtime's quantizer advice stays out of bertfast's output (shown only with -v)
    assert "pre-processing" not in caplog.text
    # paths as the user gave them, the family recorded
    assert m.raw["source"]["model_dir"] == str(tiny_trained) and m.raw["source"]["family"] == "bert"


def test_device_choices_come_from_the_provider_table():
    from bertfast.exporter.variants import DEVICE_CHOICES
    from bertfast.runtime.providers import PROVIDERS

    assert set(DEVICE_CHOICES) == {*PROVIDERS, "all"}
    assert ExportConfig(model_dir="m", device="tensorrt").variant_list() == ["fp32", "fp16"]
    assert "int8-mixed" not in ExportConfig(model_dir="m").variant_list()  # only as the fallback
    assert "int8-dynamic-pc-fr" in ExportConfig(model_dir="m").variant_list("avx2")
    assert "int8-dynamic-pc-fr" not in ExportConfig(model_dir="m").variant_list("avx512_vnni")
