"""`bertfast export` refuses a broken artifact (issue #22): no tokenizer files, another model's
tokenizer, eval texts the tokenizer cannot read, and a PyTorch reference at chance on the labels.
Each refusal is one line and leaves nothing under --out."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
from _export_helpers import sharpen
from conftest import SPECIALS, TOPIC_WORDS, _vocab, bert_tokenizer, make_texts

from bertfast.errors import BertfastError, ModelError
from bertfast.exporter import ExportConfig, export, preflight
from bertfast.manifest import load_manifest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


@pytest.fixture(scope="module")
def sharp(tiny_trained, tmp_path_factory):
    """The trained tiny model with its head sharpened, so that its answers differ per text
    (tiny_trained itself answers about the same for every text)."""
    return sharpen(tiny_trained, tmp_path_factory.mktemp("preflight") / "model")


@pytest.fixture
def model(sharp, tmp_path):
    """A copy of `sharp` this test may change."""
    return shutil.copytree(sharp, tmp_path / "model")


def _answers(model_dir, texts: list[str]) -> list[str]:
    """The model's own class names for `texts`, read with the folder's tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    m = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        enc = tok(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
        ids = m(**enc).logits.argmax(-1).tolist()
    return [m.config.id2label[i] for i in ids]


def _eval_file(model_dir, path, shuffle: bool = False, n: int = 90):
    """Eval data labeled with the model's own answers (its reference is right on them);
    `shuffle` moves the labels to other rows, so the reference is at chance."""
    texts = [t for t, _ in make_texts(n, seed=7)]
    labels = _answers(model_dir, texts)
    assert len(set(labels)) > 1, labels  # a one-class answer would be at chance already
    if shuffle:
        random.Random(0).shuffle(labels)
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels)))
    return path


def _export(model_dir, out, **kw):
    return export(ExportConfig(model_dir=str(model_dir), out=str(out), variants="fp32", window_search=False, **kw))


def _refused(model_dir, tmp_path, match, **kw) -> str:
    out = tmp_path / "e"
    with pytest.raises(BertfastError, match=match) as e:
        _export(model_dir, out, **kw)
    assert "\n" not in str(e.value) and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bertfast-tmp")]
    return str(e.value)


def _set_vocab(model_dir, words: list[str]) -> None:
    """Replace the folder's tokenizer by a WordPiece one over `words` (vocab.txt + tokenizer.json)."""
    for f in TOKENIZER_FILES:
        (model_dir / f).unlink(missing_ok=True)
    (model_dir / "vocab.txt").write_text("\n".join(words) + "\n")
    bert_tokenizer(model_dir / "vocab.txt").save_pretrained(model_dir)


# ----------------------------------------------------------------------------- tokenizer files


def test_a_good_export_records_its_unknown_token_rate(model, tmp_path):
    m = load_manifest(_export(model, tmp_path / "e", eval_data=str(_eval_file(model, tmp_path / "ev.jsonl"))))
    assert m.reference["unknown_token_rate"] == 0.0 and "weak_reference" not in m.reference
    assert m.reference["accuracy"] > 0.9


def test_no_tokenizer_files(model, tmp_path):
    for f in TOKENIZER_FILES:
        (model / f).unlink(missing_ok=True)
    msg = _refused(model, tmp_path, "tokenizer.json is missing")
    assert str(model) in msg and "vocab.txt" in msg and "copy the tokenizer files of the base checkpoint" in msg


def test_tokenizer_config_alone_is_not_a_tokenizer(model, tmp_path):
    """transformers would build a tokenizer of five special tokens from it: every word [UNK]."""
    (model / "tokenizer.json").unlink()
    assert (model / "tokenizer_config.json").exists()
    msg = _refused(model, tmp_path, "tokenizer.json is missing")
    assert "it has only tokenizer_config.json" in msg


def test_unreadable_tokenizer_is_one_line(model, tmp_path):
    (model / "tokenizer.json").write_text("{not json")
    msg = _refused(model, tmp_path, "could not load the tokenizer in")
    assert "copy the tokenizer files" in msg


def test_no_tokenizer_from_the_cli(model, tmp_path, capfd):
    from bertfast import cli

    for f in TOKENIZER_FILES:
        (model / f).unlink(missing_ok=True)
    code = cli.main(["export", str(model), "--out", str(tmp_path / "out")])
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and "tokenizer.json is missing" in lines[0]
    assert "Traceback" not in out + err and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- another model's tokenizer


def test_vocabulary_larger_than_the_embedding_table(model, tmp_path):
    n = len(_vocab())
    _set_vocab(model, _vocab() + [f"[unused{i}]" for i in range(40)])
    msg = _refused(model, tmp_path, "token ids but the model's embedding table has")
    assert f"has {n + 40} token ids" in msg and f"has {n} (config.json vocab_size)" in msg


def test_vocabulary_much_smaller_than_the_embedding_table(model, tmp_path):
    words = SPECIALS + sorted({w for ws in TOPIC_WORDS.values() for w in ws.split()})
    _set_vocab(model, words)
    assert len(words) < len(_vocab()) / 2
    msg = _refused(model, tmp_path, "cannot be the tokenizer the model was trained with")
    assert f"has {len(words)} token ids" in msg and f"has {len(_vocab())}" in msg


def test_unknown_tokens(model, tmp_path):
    """A vocabulary with the common words, characters and punctuation replaced (same size, so
    only the [UNK] rate can tell): about half the eval tokens are [UNK]."""
    topic = {w for ws in TOPIC_WORDS.values() for w in ws.split()}
    words = [w if w in SPECIALS or w in topic else f"[unused{i}]" for i, w in enumerate(_vocab())]
    _set_vocab(model, words)
    ev = _eval_file(model, tmp_path / "ev.jsonl")  # labeled by the model as it now reads them
    msg = _refused(model, tmp_path, r"% of the eval data's tokens .* are \[UNK\]", eval_data=str(ev))
    assert msg.endswith("does not match the model or the data is in another language; "
                        "pass --allow-unknown-tokens to export anyway.")
    rate = float(msg.split("%")[0]) / 100
    assert 0.2 < rate < 0.8, msg
    m = load_manifest(_export(model, tmp_path / "e", eval_data=str(ev), allow_unknown_tokens=True))
    assert m.reference["unknown_token_rate"] == pytest.approx(rate, abs=0.001)


def test_unknown_rate_counts_both_texts_of_a_pair(sharp):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sharp)  # "€" is in no vocabulary piece: one [UNK]
    assert preflight.unknown_rate(tok, ["match goal", "€"], 64) == pytest.approx(1 / 3)
    assert preflight.unknown_rate(tok, [("match goal", "€ €")], 64) == pytest.approx(2 / 4)
    assert preflight.unknown_rate(tok, [], 64) is None


@dataclass
class _Specials:
    special_tokens_map: dict


def test_special_tokens_must_exist():
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    ok = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]"}
    preflight._check_specials(_Specials(ok), vocab, "m")
    with pytest.raises(ModelError, match="m has no pad token"):
        preflight._check_specials(_Specials({k: v for k, v in ok.items() if k != "pad_token"}), vocab, "m")
    with pytest.raises(ModelError, match="declares bos_token '<s>', which is not in its vocabulary"):
        preflight._check_specials(_Specials({**ok, "bos_token": "<s>"}), vocab, "m")


# ----------------------------------------------------------------------------- a reference at chance


def test_weak_reference(model, tmp_path):
    ev = _eval_file(model, tmp_path / "ev.jsonl", shuffle=True)
    msg = _refused(model, tmp_path, "the PyTorch reference scores", eval_data=str(ev))
    head, tail = msg.split(" on ", 1)
    assert head.startswith("the PyTorch reference scores ") and head.endswith("% accuracy")
    assert tail.startswith(f"{ev} (majority class: ") and "%): the labels, the tokenizer or the checkpoint is wrong; " \
        "fix it, or pass --accept-weak-reference to export anyway." in tail
    m = load_manifest(_export(model, tmp_path / "e", eval_data=str(ev), accept_weak_reference=True))
    assert m.reference["weak_reference"] is True
    majority = float(tail.split("majority class: ")[1].split("%")[0]) / 100
    assert m.reference["accuracy"] <= majority + preflight._binomial_margin(majority, m.reference["n"])


@dataclass
class _Ev:
    """What `check_reference` reads of an EvalSet."""

    primary: str
    y: np.ndarray | None
    source: str = "ev.jsonl"

    def __len__(self):
        return len(self.y)


def test_chance_per_task():
    y = np.array([0] * 24 + [1] * 76)
    assert preflight.CHANCE["accuracy"].baseline(y) == 0.76
    # 76% majority on 100 rows: +- 8.4 points of noise (95%), wider than the 2-point floor
    assert not preflight.check_reference(_Ev("accuracy", y), {"accuracy": 0.85}, accept=False)
    with pytest.raises(BertfastError, match=r"^the PyTorch reference scores 83.0% accuracy on ev.jsonl "
                                            r"\(majority class: 76.0%\): the labels"):
        preflight.check_reference(_Ev("accuracy", y), {"accuracy": 0.83}, accept=False)
    assert preflight.check_reference(_Ev("accuracy", y), {"accuracy": 0.83}, accept=True)
    assert not preflight.check_reference(_Ev("accuracy", None), {"accuracy": None}, accept=False)  # unlabeled
    assert not preflight.check_reference(_Ev("ndcg@10", y), {"ndcg@10": 0.1}, accept=False)  # no chance row

    # multi-label: the best constant label set (here: always label 0) is the baseline
    ml = np.zeros((100, 4), np.int8)
    ml[:90, 0] = 1
    ml[:10, 1] = 1
    assert preflight.CHANCE["micro_f1"].baseline(ml) == pytest.approx(2 * 90 / (2 * 90 + 10 + 10))
    with pytest.raises(BertfastError, match=r"micro_f1 on ev.jsonl \(most frequent labels"):
        preflight.check_reference(_Ev("micro_f1", ml), {"micro_f1": 0.9}, accept=False)
    assert not preflight.check_reference(_Ev("micro_f1", ml), {"micro_f1": 0.99}, accept=False)

    # regression: |pearson| < 0.1, from 30 rows on
    scores = np.linspace(0, 5, 40)
    with pytest.raises(BertfastError, match=r"scores pearson -0.050 on ev.jsonl \(chance: 0.000\)"):
        preflight.check_reference(_Ev("pearson", scores), {"pearson": -0.05}, accept=False)
    assert not preflight.check_reference(_Ev("pearson", scores), {"pearson": 0.3}, accept=False)
    assert not preflight.check_reference(_Ev("pearson", scores[:20]), {"pearson": 0.0}, accept=False)
