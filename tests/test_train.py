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
