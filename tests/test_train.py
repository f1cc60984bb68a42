from __future__ import annotations

import json

import pytest
from conftest import make_texts, write_csv

from bertfast.errors import BertfastError, ModelError
from bertfast.training import TrainConfig, train


def _cfg(model, data, out, **kw):
    base = dict(model=str(model), data=str(data), out=str(out), epochs=1, batch_size=16, max_length=32, lr=1e-3)
    return TrainConfig(**(base | kw))


def test_train_on_csv_writes_a_complete_model_folder(tiny_model, tiny_csv, tmp_path):
    out = train(_cfg(tiny_model, tiny_csv, tmp_path / "out"))
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "training.json", "splits"} <= names
    cfg = json.loads((out / "config.json").read_text())
    assert set(cfg["id2label"].values()) == {"sport", "tech", "politics"}
    summary = json.loads((out / "training.json").read_text())
    assert summary["data"]["rows"]["train"] + summary["data"]["rows"]["validation"] + summary["data"]["rows"]["test"] == 90
    assert {"accuracy", "macro_f1"} <= set(summary["metrics"]["test"])
    assert set(summary["metrics"]["test_per_class"]) == {"sport", "tech", "politics"}
    assert sum(summary["token_lengths"]["counts"]) == summary["data"]["rows"]["train"]
    assert "transformers" in summary["versions"]
    assert not (tmp_path / "out.checkpoints").exists()  # removed after success
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bertfast-tmp")]


def test_train_on_class_folders(tiny_model, tmp_path):
    for i, (t, y) in enumerate(make_texts(60)):
        (tmp_path / "data" / y).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / y / f"{i}.txt").write_text(t)
    out = train(_cfg(tiny_model, tmp_path / "data", tmp_path / "out"))
    assert json.loads((out / "training.json").read_text())["labels"] == ["politics", "sport", "tech"]


def test_output_exists_needs_force(tiny_model, tiny_csv, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("precious")
    with pytest.raises(BertfastError, match="already exists.*--force"):
        train(_cfg(tiny_model, tiny_csv, tmp_path / "out"))
    assert (tmp_path / "out" / "keep.txt").read_text() == "precious"


def test_max_length_over_model_limit(tiny_model, tiny_csv, tmp_path):
    with pytest.raises(BertfastError, match="--max-length 4096 is over the limit.*128"):
        train(_cfg(tiny_model, tiny_csv, tmp_path / "out", max_length=4096))


def test_unknown_model(tiny_csv, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        train(_cfg(tmp_path / "no" / "such" / "model", tiny_csv, tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="without config.json"):
        train(_cfg(tmp_path / "empty", tiny_csv, tmp_path / "out"))


def test_bad_flags_name_the_flag():
    with pytest.raises(BertfastError, match="--lr"):
        TrainConfig(model="m", data="d", lr=5)
    with pytest.raises(BertfastError, match="--epochs"):
        TrainConfig(model="m", data="d", epochs=0)
    with pytest.raises(BertfastError, match="--val-fraction"):
        TrainConfig(model="m", data="d", val_fraction=0.9)


def test_failed_run_leaves_no_model_folder(tiny_model, tmp_path):
    bad = write_csv(tmp_path / "d.csv", [(f"t {i}", "one") for i in range(30)])
    with pytest.raises(BertfastError):
        train(_cfg(tiny_model, bad, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_interrupted_training_leaves_no_model_folder(tiny_model, tiny_csv, tmp_path, monkeypatch):
    import transformers

    def boom(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(transformers.Trainer, "save_model", boom)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_model, tiny_csv, tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bertfast-tmp")]


def test_resume_from_checkpoint(tiny_model, tiny_csv, tmp_path):
    out = tmp_path / "out"
    train(_cfg(tiny_model, tiny_csv, out, epochs=1, keep_checkpoints=True))
    assert (tmp_path / "out.checkpoints").exists()
    train(_cfg(tiny_model, tiny_csv, out, epochs=2, resume=True))
    log = json.loads((out / "training.json").read_text())["log_history"]
    assert max(x.get("epoch", 0) for x in log) == 2


def test_head_lr_puts_the_new_head_in_its_own_groups(tiny_model):
    import torch
    from transformers import AutoModelForSequenceClassification

    from bertfast.training.args import head_lr_optimizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    cfg = TrainConfig(model="m", data="d", lr=1e-4, head_lr=2e-3)
    opt = head_lr_optimizer(model, cfg, torch)
    by_lr = {}
    for g in opt.param_groups:
        by_lr.setdefault(g["lr"], set()).update(id(p) for p in g["params"])
    head = {id(p) for n, p in model.named_parameters() if n.startswith(("classifier", "bert.pooler"))}
    assert by_lr[2e-3] == head
    assert len(by_lr[1e-4]) == len(list(model.parameters())) - len(head)
    with pytest.raises(BertfastError, match="--head-lr"):
        TrainConfig(model="m", data="d", head_lr=3.0)


def test_stale_checkpoints_need_resume_or_force(tiny_model, tiny_csv, tmp_path):
    (tmp_path / "out.checkpoints" / "checkpoint-5").mkdir(parents=True)
    with pytest.raises(BertfastError, match="unfinished run: continue it with --resume, or pass --force"):
        train(_cfg(tiny_model, tiny_csv, tmp_path / "out"))
    out = train(_cfg(tiny_model, tiny_csv, tmp_path / "out", force=True))
    assert (out / "training.json").exists() and not (tmp_path / "out.checkpoints").exists()
    (tmp_path / "out.checkpoints").mkdir()
    with pytest.raises(BertfastError, match="--resume: no checkpoints in"):
        train(_cfg(tiny_model, tiny_csv, tmp_path / "out", resume=True))


def test_tensorflow_only_checkpoint_names_tf_model_h5_and_the_conversion(tiny_model, tiny_csv, tmp_path):
    (tiny_model / "model.safetensors").unlink()
    (tiny_model / "tf_model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")  # what transformers' TF classes wrote
    with pytest.raises(ModelError) as e:
        train(_cfg(tiny_model, tiny_csv, tmp_path / "out"))
    msg = str(e.value)
    assert "\n" not in msg and "tf_model.h5" in msg and "from_tf=True" in msg and "save_pretrained" in msg
    assert str(tiny_model) in msg and "transformers 5" in msg
    assert not (tmp_path / "out").exists()


def _load_report_records():
    """A handler on transformers' loading logger: the records that reach its handlers."""
    import logging

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.records = []

        def emit(self, record):
            self.records.append(record.getMessage())

    return logging.getLogger("transformers.modeling_utils"), Keep()


def test_a_new_head_is_one_line_and_other_missing_weights_keep_the_report(tmp_path, caplog):
    import logging

    import torch
    import transformers

    from bertfast.training.checkpoints import load_classifier

    cfg = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)
    torch.manual_seed(0)
    encoder = transformers.BertModel(cfg)
    encoder.save_pretrained(tmp_path / "encoder")  # an encoder without a classification head
    state = encoder.state_dict()
    del state["encoder.layer.0.output.dense.weight"]
    encoder.save_pretrained(tmp_path / "damaged", state_dict=state)
    logger, keep = _load_report_records()
    logger.addHandler(keep)
    try:
        with caplog.at_level(logging.INFO, logger="bertfast"):
            load_classifier(transformers, str(tmp_path / "encoder"), "enc", "single_label_classification",
                            {0: "a", 1: "b"})
        new_head = list(keep.records)
        keep.records.clear()
        load_classifier(transformers, str(tmp_path / "damaged"), "dmg", "single_label_classification", {0: "a", 1: "b"})
    finally:
        logger.removeHandler(keep)
    assert new_head == []  # transformers' report of the new head is not shown ...
    lines = [r.getMessage() for r in caplog.records if "classification head" in r.getMessage()]
    assert lines == ["enc: new classification head (classifier.bias, classifier.weight), as expected when fine-tuning"]
    # ... but a missing encoder weight is, as transformers reports it.
    assert any("encoder.layer.0.output.dense.weight" in m for m in keep.records), keep.records
    assert logging.getLogger("transformers.modeling_utils").filters == []


def test_new_head_keys_accept_only_head_weights():
    import transformers

    from bertfast.training.checkpoints import new_head_keys

    cfg = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32, num_labels=2)
    model = transformers.BertForSequenceClassification(cfg)
    head = {"missing_keys": ["classifier.weight", "classifier.bias"], "unexpected_keys": [], "mismatched_keys": []}
    assert new_head_keys(model, head) == ["classifier.bias", "classifier.weight"]
    # A pretraining head the classifier has no place for, and a resized head: still the head case.
    mlm = {"missing_keys": [], "unexpected_keys": ["cls.predictions.bias", "cls.seq_relationship.weight"],
           "mismatched_keys": [("classifier.weight", (3, 16), (2, 16))]}
    assert new_head_keys(model, mlm) == ["classifier.weight"]
    assert new_head_keys(model, {"missing_keys": ["bert.embeddings.word_embeddings.weight"]}) is None
    assert new_head_keys(model, {"missing_keys": [], "unexpected_keys": ["bert.encoder.layer.5.output.dense.weight"]}) is None
