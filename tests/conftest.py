"""Shared fixtures: a tiny random BERT classifier and a small local WordPiece vocab.

No network anywhere: the vocab is written here, the model is random-initialized from a
2-layer `BertConfig`, and each test gets its own copy of the session-built folders.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LABELS = ["sport", "tech", "politics"]
# Each class gets its own topic words so a tiny model can actually learn something.
TOPIC_WORDS = {
    "sport": "match goal team win league player coach score season cup",
    "tech": "phone software chip computer internet data network code device app",
    "politics": "vote election minister party government law policy tax parliament leader",
}
COMMON = "the a of and to in is was it for on with as said new year"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocab() -> list[str]:
    words = set(COMMON.split())
    for w in TOPIC_WORDS.values():
        words.update(w.split())
    extra = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    out = SPECIALS + sorted(words) + extra
    return list(dict.fromkeys(out))  # no duplicates: WordPiece ids must be contiguous


def make_texts(n: int, seed: int = 0, min_words: int = 3, max_words: int = 40) -> list[tuple[str, str]]:
    """`n` (text, label) pairs with varied lengths, balanced over LABELS."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        k = rng.randint(min_words, max_words)
        words = [rng.choice(TOPIC_WORDS[label].split()) if rng.random() < 0.6 else rng.choice(COMMON.split()) for _ in range(k)]
        out.append((" ".join(words).capitalize() + ".", label))
    rng.shuffle(out)
    return out


def bert_tokenizer(vocab: Path, **kw):
    """A BertTokenizerFast over `vocab` (a vocab.txt) on transformers 4 and 5 alike.

    transformers 5 takes the vocabulary as `vocab=` and silently ignores `vocab_file=` (every
    word then becomes [UNK], and tests comparing texts compare nothing).
    """
    import inspect

    from transformers import BertTokenizerFast

    key = "vocab" if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters else "vocab_file"
    tok = BertTokenizerFast(**{key: str(vocab)}, do_lower_case=True, **kw)
    assert tok.convert_tokens_to_ids("match") != tok.unk_token_id, "the test vocabulary was not loaded"
    return tok


@pytest.fixture(scope="session")
def _tiny_model_session(tmp_path_factory) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    root = tmp_path_factory.mktemp("tiny-model")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(_vocab()) + "\n")
    tok = bert_tokenizer(vocab, model_max_length=128)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
        id2label=dict(enumerate(LABELS)), label2id={name: i for i, name in enumerate(LABELS)},
    )
    model = BertForSequenceClassification(cfg).eval()
    out = root / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def tiny_model(_tiny_model_session, tmp_path) -> Path:
    """A fresh copy of a tiny random BertForSequenceClassification folder (3 labels)."""
    dst = tmp_path / "tiny-model"
    shutil.copytree(_tiny_model_session, dst)
    return dst


def write_csv(path: Path, rows: list[tuple[str, str]], text_col: str = "text", label_col: str = "label") -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([text_col, label_col])
        w.writerows(rows)
    return path


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    """A labeled CSV (text,label) with 90 rows over 3 balanced classes."""
    return write_csv(tmp_path / "data.csv", make_texts(90))


@pytest.fixture(scope="session")
def tiny_trained(_tiny_model_session, tmp_path_factory) -> Path:
    """The tiny model after one short `bertfast train` run (has splits/ and training.json).

    Session-scoped and shared: tests must not modify it (copy it first).
    """
    from bertfast.training import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny-trained")
    data = write_csv(root / "data.csv", make_texts(120, seed=1))
    return train(TrainConfig(model=str(_tiny_model_session), data=str(data), out=str(root / "model"),
                             epochs=2, batch_size=16, max_length=64, lr=2e-3))


@pytest.fixture(scope="session")
def tiny_export(tiny_trained, tmp_path_factory) -> Path:
    """A real `bertfast export` of `tiny_trained` (fp32 + int8 dynamic/per-channel/static).

    Session-scoped and shared: tests must not modify it (copy it first).
    """
    from bertfast.exporter import ExportConfig, export

    out = tmp_path_factory.mktemp("tiny-export") / "export"
    # No window search: the runtime tests here are about the training length (tests/test_window.py
    # covers the search, and an export whose default runs a shorter window). tiny_trained answers
    # at chance on its 12 validation rows: these tests are about the export, not the model.
    return export(ExportConfig(model_dir=str(tiny_trained), out=str(out), window_search=False,
                               accept_weak_reference=True))
