"""Text pairs: the caller's input checked, the tokenizer's pair template, and truncation.

A pair is encoded as the model was trained on pairs: the tokenizer's own post-processor
template ([CLS] a [SEP] b [SEP] with segment ids 0/1 for BERT; <s> a </s></s> b </s> for
RoBERTa, which has no segment ids), found by probing the tokenizer once, so any family's
separator is used without a table of them. Truncation follows the Rust tokenizer's strategies
(`truncate_pair`), so a pair is cut exactly as `tokenizer(a, b, truncation=True)` cuts it
during training and validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BertfastError


def check_pairs(pairs, name: str = "pairs") -> tuple[list[tuple[str, str]], bool]:
    """Normalize the caller's pairs to a list of (str, str); return (pairs, was_single_pair).

    Accepts one pair (a 2-tuple/list of strings) or an iterable of them. Errors name the first
    bad item's index and what to do.
    """
    if _is_pair(pairs):
        return [(pairs[0], pairs[1])], True
    if pairs is None or isinstance(pairs, (str, bytes, dict)):
        raise BertfastError(
            f"{name} must be a pair [text, text_pair] or a list of pairs; got {type(pairs).__name__}."
        )
    try:
        items = list(pairs)
    except TypeError:
        raise BertfastError(f"{name} must be a list of [text, text_pair] pairs; got {type(pairs).__name__}.") from None
    out = []
    for i, p in enumerate(items):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            what = f"has {len(p)} elements" if isinstance(p, (list, tuple)) else f"is {type(p).__name__}"
            raise BertfastError(f"{name}[{i}] {what}; each pair must be [text, text_pair] (2 strings).")
        for j, t in enumerate(p):
            if not isinstance(t, str):
                kind = "None (missing)" if t is None else type(t).__name__
                raise BertfastError(
                    f"{name}[{i}][{j}] is {kind}, not a string; every pair needs two texts (use '' for an empty one)."
                )
        out.append((p[0], p[1]))
    return out, False


def _is_pair(x) -> bool:
    return isinstance(x, (list, tuple)) and len(x) == 2 and all(isinstance(t, str) for t in x)


def truncate_pair(la: int, lb: int, budget: int, strategy: str, index: int = 0) -> tuple[int, int]:
    """Tokens kept of each text of a pair with `la` and `lb` content tokens in `budget`.

    longest_first: tokens come off the longer text until both are equal, then alternately
    (the longer keeps the odd one), which is what the Rust tokenizer and transformers do.
    """
    if la + lb <= budget:
        return la, lb
    if strategy == "only_second":
        if la >= budget:
            raise BertfastError(
                f"pair {index}: its first text has {la} tokens, no room for the second within max_length with "
                "pair_truncation='only_second'; use 'longest_first' or a larger max_length."
            )
        return la, budget - la
    if strategy == "only_first":
        if lb >= budget:
            raise BertfastError(
                f"pair {index}: its second text has {lb} tokens, no room for the first within max_length with "
                "pair_truncation='only_first'; use 'longest_first' or a larger max_length."
            )
        return budget - lb, lb
    # The longer text keeps the odd token (the shorter one when equal: the Rust tokenizer's rule).
    s1, s2 = ((budget + 1) // 2, budget // 2) if la > lb else (budget // 2, (budget + 1) // 2)
    if la <= s1:
        return la, budget - la
    if lb <= s2:
        return budget - lb, lb
    return s1, s2


@dataclass(frozen=True)
class PairTemplate:
    """The special tokens around and between a pair, and the segment id of each part."""

    pre: tuple[int, ...]
    mid: tuple[int, ...]
    suf: tuple[int, ...]
    type_pre: int = 0
    type_a: int = 0
    type_mid: int = 0
    type_b: int = 1
    type_suf: int = 1

    @property
    def n_special(self) -> int:
        return len(self.pre) + len(self.mid) + len(self.suf)

    def ids(self, a: list[int], b: list[int]) -> list[int]:
        return [*self.pre, *a, *self.mid, *b, *self.suf]

    def types(self, na: int, nb: int) -> list[int]:
        return ([self.type_pre] * len(self.pre) + [self.type_a] * na + [self.type_mid] * len(self.mid)
                + [self.type_b] * nb + [self.type_suf] * len(self.suf))

    @classmethod
    def probe(cls, tok) -> PairTemplate:
        """Read the template off the tokenizer by encoding a known pair with and without specials."""
        a_txt, b_txt = "hello world", "good morning"
        a = tok.encode(a_txt, add_special_tokens=False).ids
        b = tok.encode(b_txt, add_special_tokens=False).ids
        enc = tok.encode(a_txt, b_txt)
        full, types = enc.ids, enc.type_ids
        for i in range(len(full) - len(a) + 1):
            if full[i : i + len(a)] != a:
                continue
            for j in range(i + len(a), len(full) - len(b) + 1):
                if full[j : j + len(b)] == b:
                    k = j + len(b)

                    def t(lo, hi, default):
                        return types[lo] if hi > lo else default

                    return cls(tuple(full[:i]), tuple(full[i + len(a) : j]), tuple(full[k:]),
                               t(0, i, 0), t(i, i + len(a), 0), t(i + len(a), j, 0), t(j, k, 1),
                               t(k, len(full), 1))
        # No template found (a tokenizer without a pair post-processor): concatenate.
        return cls((), (), (), 0, 0, 0, 1, 1)
