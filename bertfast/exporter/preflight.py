"""Refuse a broken artifact before it ships (issue #22).

An export is validated against PyTorch running the *same* folder, so a fault that PyTorch shares
(no tokenizer files, another checkpoint's tokenizer, labels that do not belong to the data)
makes every variant "agree" 100% and the export would ship. Seen in the wild: a folder without
tokenizer files (transformers silently builds a tokenizer of five special tokens, so every word
is [UNK]); a third-party model whose eval texts were 99.5% [UNK]; a BBC model whose reference
scored 19.5% accuracy, below the 24% of always answering the most frequent class.

Checked here, one line each, before anything is written (`check_tokenizer_files`,
`load_tokenizer`, `check_tokenizer`) and once PyTorch's reference metrics exist
(`check_reference`):
- the folder holds the files a tokenizer is built from;
- the tokenizer's vocabulary fits the embedding table (`config.vocab_size`);
- its special tokens (cls/sep/pad, bos/eos, unk) are in its vocabulary, and it has a pad token;
- the share of [UNK] tokens in the eval texts (`--allow-unknown-tokens` to go on anyway);
- the reference beats a constant answer on the labeled eval data (`--accept-weak-reference`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BertfastError, ExportError, ModelError, require

log = logging.getLogger(__name__)

# Any one of these sets is something AutoTokenizer can build the family's tokenizer from:
# tokenizer.json (every fast tokenizer), else the vocabulary a slow tokenizer converts
# (WordPiece, byte-level BPE, sentencepiece). tokenizer_config.json alone is not: transformers
# then builds a tokenizer of special tokens only and every word becomes [UNK].
TOKENIZER_FILE_SETS: tuple[tuple[str, ...], ...] = (
    ("tokenizer.json",), ("vocab.txt",), ("vocab.json", "merges.txt"), ("sentencepiece.bpe.model",),
    ("spiece.model",), ("spm.model",), ("tokenizer.model",), ("source.spm",),
)
FIX_TOKENIZER = ("copy the tokenizer files of the base checkpoint into the folder "
                 "(or `tokenizer.save_pretrained` it there)")

MIN_VOCAB_SHARE = 0.5  # a tokenizer covering < half the embedding rows belongs to another model
UNKNOWN_SAMPLE = 500  # eval texts tokenized to measure the [UNK] rate (bounded cost on big sets)
UNKNOWN_WARN = 0.01  # matching tokenizers give ~0.1% on real text (emoji, rare scripts)
UNKNOWN_ERROR = 0.05  # one token in 20 lost: the model reads a different text than was written
SPECIAL_ROLES = ("cls_token", "sep_token", "pad_token", "bos_token", "eos_token", "unk_token")


def check_tokenizer_files(model_dir: Path) -> None:
    """Refuse a folder without the files a tokenizer is built from (checked before loading:
    transformers may fall back silently to an empty vocabulary)."""
    if any(all((model_dir / f).is_file() for f in names) for names in TOKENIZER_FILE_SETS):
        return
    partial = [f for f in ("tokenizer_config.json", "special_tokens_map.json") if (model_dir / f).is_file()]
    has = f" (it has only {', '.join(partial)})" if partial else ""
    raise ModelError(
        f"{model_dir / 'tokenizer.json'} is missing, and so is any vocabulary to build it from (vocab.txt, "
        f"vocab.json + merges.txt, a sentencepiece .model){has}: {FIX_TOKENIZER}."
    )


def load_tokenizer(model_dir: Path):
    """The folder's tokenizer (fast); transformers' own errors become one line naming the folder."""
    transformers = require("transformers", "train")
    check_tokenizer_files(model_dir)
    try:
        return transformers.AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    except Exception as e:  # tokenizers, sentencepiece and transformers raise many types here
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(
            f"could not load the tokenizer in {model_dir} ({type(e).__name__}{': ' + first[:200] if first else ''}); "
            f"{FIX_TOKENIZER}."
        ) from None


def check_tokenizer(tokenizer, config, ev, max_length: int, model_dir: Path, allow_unknown: bool) -> float | None:
    """Refuse a tokenizer that cannot be the model's; returns the eval texts' [UNK] rate (None
    when the tokenizer has no unknown token, e.g. byte-level BPE)."""
    vocab = tokenizer.get_vocab()
    _check_vocab_size(vocab, config, model_dir)
    _check_specials(tokenizer, vocab, model_dir)
    rate = unknown_rate(tokenizer, ev.inputs(), max_length)
    if rate is None:
        return None
    what = f"{rate:.1%} of the eval data's tokens{f' ({ev.source})' if ev.source else ''} are {tokenizer.unk_token}"
    if rate > UNKNOWN_ERROR and not allow_unknown:
        raise BertfastError(
            f"{what}: the tokenizer in {model_dir} does not match the model or the data is in another "
            "language; pass --allow-unknown-tokens to export anyway."
        )
    if rate > UNKNOWN_WARN:
        log.warning("%s: check that the tokenizer in %s is the model's and the data its language", what, model_dir)
    return round(rate, 6)


def _check_vocab_size(vocab: dict, config, model_dir: Path) -> None:
    """The tokenizer's ids must index the embedding table, and cover most of it."""
    rows = getattr(config, "vocab_size", None)
    if not vocab or not rows:
        return
    size = max(vocab.values()) + 1  # ids, not len(): added tokens may leave holes
    if size > rows:
        raise ModelError(
            f"the tokenizer in {model_dir} has {size} token ids but the model's embedding table has "
            f"{rows} (config.json vocab_size): it is another model's tokenizer, or tokens were added without "
            f"resizing the embeddings; {FIX_TOKENIZER}."
        )
    if size < MIN_VOCAB_SHARE * rows:
        raise ModelError(
            f"the tokenizer in {model_dir} has {size} token ids but the model's embedding table has "
            f"{rows} (config.json vocab_size): it cannot be the tokenizer the model was trained with; {FIX_TOKENIZER}."
        )


def _check_specials(tokenizer, vocab: dict, model_dir: Path) -> None:
    """Declared special tokens must exist in the vocabulary; batches need a pad token."""
    declared = tokenizer.special_tokens_map  # only the roles that are set (reading unset ones logs errors)
    if not declared.get("pad_token"):
        raise ModelError(
            f"the tokenizer in {model_dir} has no pad token, so batches cannot be padded; "
            f"{FIX_TOKENIZER} (or set pad_token in tokenizer_config.json)."
        )
    for role in SPECIAL_ROLES:
        token = declared.get(role)
        if isinstance(token, str) and token not in vocab:
            raise ModelError(
                f"the tokenizer in {model_dir} declares {role} {token!r}, which is not in its vocabulary; {FIX_TOKENIZER}."
            )


def unknown_rate(tokenizer, inputs: list, max_length: int) -> float | None:
    """Share of [UNK] among the tokens of up to `UNKNOWN_SAMPLE` inputs (texts or pairs), spread
    over the whole set; both texts of a pair count. None when the tokenizer has no [UNK]."""
    unk = tokenizer.unk_token_id if tokenizer.special_tokens_map.get("unk_token") else None
    if unk is None or not inputs:
        return None
    idx = np.unique(np.linspace(0, len(inputs) - 1, min(len(inputs), UNKNOWN_SAMPLE)).astype(int))
    texts = [t for i in idx for t in (inputs[i] if isinstance(inputs[i], tuple) else (inputs[i],))]
    # Special tokens left out (they are never [UNK]); truncated as the model will read them.
    ids = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
    total = sum(len(x) for x in ids)
    return sum(x.count(unk) for x in ids) / total if total else 0.0


# ----------------------------------------------------------------------------- a weak reference


@dataclass(frozen=True)
class Chance:
    """What a constant answer scores on the eval labels, for one primary metric.

    Attributes:
        name: how the error names the baseline ("majority class").
        baseline: the metric of the best constant answer on these labels.
        margin: (baseline, rows) -> how far above the baseline still counts as chance.
        absolute: compare |metric| (a correlation: -0.05 is as weak as 0.05).
        min_rows: below this many rows the comparison says nothing and is skipped.
        percent: the metric is a share (shown as 19.5%), else a number (0.031).
    """

    name: str
    baseline: Callable[[np.ndarray], float]
    margin: Callable[[float, int], float]
    absolute: bool = False
    min_rows: int = 1
    percent: bool = True


def _binomial_margin(base: float, n: int) -> float:
    """2 points, or the 95% half-width of a rate `base` measured on `n` rows when wider (a small
    eval set cannot tell a model from the baseline by less than its noise)."""
    return max(0.02, 1.96 * math.sqrt(base * (1 - base) / max(n, 1)))


def _majority(y: np.ndarray) -> float:
    """Accuracy of always answering the most frequent eval class."""
    y = np.asarray(y, dtype=np.int64)
    return float(np.bincount(y).max() / len(y)) if len(y) else 0.0


def _constant_label_set(y: np.ndarray) -> float:
    """Micro-F1 of answering the same label set for every row: the k most frequent labels,
    best k (k = 0: no label, k = all: every label)."""
    y = np.asarray(y).astype(bool)
    n, n_labels = y.shape
    freq = np.sort(y.sum(0))[::-1].astype(np.float64)
    positives = float(freq.sum())
    best = 0.0 if positives else 1.0  # k = 0; with no label in the data "none" is perfect
    for k in range(1, n_labels + 1):
        tp = float(freq[:k].sum())
        fp, fn = k * n - tp, positives - tp
        best = max(best, 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return best


# Keyed by the gate's primary metric (what the export is judged by). Ranking's ndcg@10 has no
# row: a random order's expected NDCG depends on every query's relevance list.
CHANCE: dict[str, Chance] = {
    "accuracy": Chance("majority class", _majority, _binomial_margin),
    "micro_f1": Chance("most frequent labels for every text", _constant_label_set, _binomial_margin),
    # 30 rows: below that, |pearson| < 0.1 is noise either way.
    "pearson": Chance("chance", lambda y: 0.0, lambda base, n: 0.1, absolute=True, min_rows=30, percent=False),
}


def check_reference(ev, metrics: dict, accept: bool) -> bool:
    """Refuse a PyTorch reference that scores no better than a constant answer on the labeled
    eval data (the labels, the tokenizer or the checkpoint is wrong). Returns True when it does
    and `accept` (--accept-weak-reference) lets the export go on; False when the reference is
    fine, unlabeled, or its metric has no chance row."""
    chance = CHANCE.get(ev.primary)
    value = metrics.get(ev.primary)
    if chance is None or value is None or ev.y is None or len(ev) < chance.min_rows:
        return False
    base = chance.baseline(ev.y)
    score = abs(value) if chance.absolute else value
    if score > base + chance.margin(base, len(ev)):
        return False
    shown = (f"{value:.1%} {ev.primary}", f"{base:.1%}") if chance.percent else (f"{ev.primary} {value:.3f}", f"{base:.3f}")
    msg = (f"the PyTorch reference scores {shown[0]} on {ev.source} ({chance.name}: {shown[1]}): "
           "the labels, the tokenizer or the checkpoint is wrong")
    if not accept:
        raise ExportError(f"{msg}; fix it, or pass --accept-weak-reference to export anyway.")
    log.warning("%s; exporting anyway (--accept-weak-reference), recorded as weak_reference in the manifest", msg)
    return True
