"""Token-level helpers of the batcher: encoding without a thread pool for one text, the word a
cut may have split, the special tokens of the model's template, and windows back into texts."""

from __future__ import annotations

import numpy as np


def encode(tok, texts: list[str], special: bool) -> list:
    """`tok.encode_batch`, except for one text: encode_batch hands even one to a thread pool."""
    if len(texts) == 1:
        return [tok.encode(texts[0], add_special_tokens=special)]
    return tok.encode_batch(texts, add_special_tokens=special) if texts else []


def trim_word(enc, last: bool) -> list[int]:
    """The ids of a slice's encoding without its last (or first) pre-tokenizer word: the word the
    cut may have split, whose tokens can differ from the whole text's."""
    ids, words = enc.ids, enc.word_ids
    if not ids:
        return ids
    edge = words[-1] if last else words[0]
    k = len(ids) if last else 0
    if last:
        while k and words[k - 1] == edge:
            k -= 1
        return ids[:k]
    while k < len(ids) and words[k] == edge:
        k += 1
    return ids[k:]


def aggregate_windows(logits: np.ndarray, starts: np.ndarray | None, how: str) -> np.ndarray:
    """Per-text logits from per-window logits (windows of one text are contiguous)."""
    if starts is None:
        return logits
    if how == "max":
        return np.maximum.reduceat(logits, starts, axis=0)
    counts = np.diff(np.append(starts, len(logits))).astype(logits.dtype)
    return np.add.reduceat(logits, starts, axis=0) / counts[:, None]


def special_affixes(tok) -> tuple[list[int], list[int]]:
    """The special token ids the post-processor puts before and after a single text.

    Found by encoding a probe with and without special tokens, so it works for any
    single-sequence template ([CLS] x [SEP] for BERT, <s> x </s> for RoBERTa, none at all).
    """
    probe = "hello world"
    plain = tok.encode(probe, add_special_tokens=False).ids
    full = tok.encode(probe).ids
    n = len(plain)
    for i in range(len(full) - n + 1):
        if full[i : i + n] == plain:
            return full[:i], full[i + n :]
    return [], []
