"""Tokenize, window, sort and batch texts so that almost no padded token is computed.

Texts are tokenized in one `encode_batch` call of the Rust tokenizer (it releases the GIL),
turned into windows (one per text, or several for `long_text="sliding-window"`), sorted by
length (longest first) and cut into batches by a *token budget*: a batch holds as many
windows as fit in `batch_tokens` padded tokens (and at most `max_batch_size`), ending early
where lengths drop well below its longest once it holds `min_batch_tokens`. Each batch is
padded with numpy to its own longest window only. The result remembers where every window came
from, so logits go back to the caller's order.

Bounded work per text: a text longer than its mode needs is never tokenized whole. Only a head
slice (and for head-tail a tail slice) of characters is tokenized, sized from the tokens the
mode keeps at `_CHARS_PER_TOKEN` characters per token and widened while too few tokens came
out, up to `MAX_SLICE_CHARS`; the token ids are the same as tokenizing the whole text (see
`Batcher._content`). Sliding windows stop after `MAX_WINDOWS` windows per text (logged). A
100 MB text thus costs about what a 10 kB one does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np

from ..errors import BertfastError, ModelError
from .pairs import PairTemplate, check_pairs, truncate_pair
from .tokens import encode, special_affixes, trim_word

__all__ = ["Batcher", "Encoded", "check_pairs", "check_texts"]
_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_SHRINK = 0.8  # see Batcher.encode
log = logging.getLogger(__name__)

# Characters per needed token tried in turn when slicing a long text: ordinary prose needs ~4-6,
# so the first slice nearly always suffices; 64 and 512 catch long URLs, symbol runs and
# whitespace padding. Past the last (or past MAX_SLICE_CHARS) the text is cut there, logged.
_CHARS_PER_TOKEN = (8, 64, 512)
MAX_SLICE_CHARS = 1_000_000
# Sliding windows classified per text at most: 256 windows of 128 tokens is ~24k tokens, a
# long book chapter; a 100 MB text would otherwise run ~200k windows.
MAX_WINDOWS = 256
PAIR_LENGTH_CAP, PAIR_LENGTH_MIN = 4, 2048  # see Batcher.pair_windows


@dataclass
class Encoded:
    """Texts tokenized, sorted and batched, ready to run (see `Classifier.encode`).

    Attributes:
        n_texts: number of texts.
        n_windows: number of model inputs (== n_texts unless sliding windows split long texts).
        real_tokens: tokens in all windows, special tokens included.
        padded_tokens: tokens the model computes (batch size x batch length, summed).
        batches: (window indices, feed dict) per batch; window indices are in caller order.
        window_starts: for sliding windows, the first window of each text (windows of one text
            are contiguous); None when every text has exactly one window.
    """

    n_texts: int
    n_windows: int
    real_tokens: int
    padded_tokens: int
    batches: list[tuple[np.ndarray, dict[str, np.ndarray]]] = field(repr=False)
    window_starts: np.ndarray | None = field(default=None, repr=False)

    @property
    def padding_ratio(self) -> float:
        """Fraction of computed tokens that are padding (0 = no waste)."""
        return 0.0 if not self.padded_tokens else 1.0 - self.real_tokens / self.padded_tokens


def check_texts(texts) -> tuple[list[str], bool]:
    """Normalize the caller's input to a list of str; return (texts, was_single_string).

    Raises a BertfastError naming the first bad item's index, so a caller with a million rows
    knows which one to fix.
    """
    if isinstance(texts, str):
        return [texts], True
    if texts is None:
        raise BertfastError("texts is None; pass a string or a list of strings.")
    if isinstance(texts, (bytes, bytearray)):
        raise BertfastError("texts is bytes; decode it first (e.g. `data.decode('utf-8')`).")
    if isinstance(texts, dict):
        raise BertfastError("texts is a dict; pass a string or a list of strings (e.g. `list(d.values())`).")
    try:
        texts = texts if isinstance(texts, list) else list(texts)
    except TypeError:
        raise BertfastError(
            f"texts must be a string or an iterable of strings; got {type(texts).__name__}."
        ) from None
    # One C-level pass over the types; the per-item scan only runs when something is wrong.
    if set(map(type, texts)) - {str}:
        for i, t in enumerate(texts):
            if t is None:
                raise BertfastError(f"texts[{i}] is None; pass a string (use '' for an empty text).")
            if not isinstance(t, str):
                raise BertfastError(f"texts[{i}] is {type(t).__name__}, not str; convert it with str() or drop it.")
    return texts, False


class Batcher:
    """Owns the tokenizer and turns texts into an `Encoded` for one export's graph.

    Thread-safe: the tokenizer's settings are fixed here, once, and never changed per call.
    """

    def __init__(
        self,
        tokenizer_file: Path,
        input_names: list[str],
        input_dtypes: dict[str, np.dtype],
        pad_token_id: int,
        max_length: int,
        long_text: str = "truncate",
        stride: int | None = None,
        batch_tokens: int = 8192,
        max_batch_size: int = 256,
        pair_truncation: str = "longest_first",
        min_batch_tokens: int | None = None,
    ):
        from tokenizers import Tokenizer

        unknown = [n for n in input_names if n not in _KNOWN_INPUTS]
        if unknown:
            raise ModelError(
                f"the model graph expects inputs {unknown} that bertfast cannot build "
                f"(it builds {', '.join(_KNOWN_INPUTS)}); re-export with `bertfast export`."
            )
        if "input_ids" not in input_names:
            raise ModelError("the model graph has no `input_ids` input; re-export with `bertfast export`.")
        try:
            tok = Tokenizer.from_file(str(tokenizer_file))
        except Exception as e:  # tokenizers raises a plain Exception on bad JSON
            raise ModelError(f"tokenizer {tokenizer_file} cannot be read ({e}); re-run `bertfast export --force`.") from None
        # Padding and truncation are ours: a tokenizer.json saved with padding="max_length"
        # would otherwise pad every text to 512 and undo the batching below.
        tok.no_padding()
        tok.no_truncation()
        self.long_text = long_text
        self.max_length = max_length
        self.input_names = list(input_names)
        self.input_dtypes = input_dtypes
        self.pad_token_id = pad_token_id
        self.batch_tokens = batch_tokens
        self.max_batch_size = max_batch_size
        # None: a quarter of the budget (see _batch).
        self.min_batch_tokens = max(1, min_batch_tokens or batch_tokens // 4)
        self.prefix, self.suffix = special_affixes(tok)
        self.pair_template = PairTemplate.probe(tok)
        self.pair_truncation = pair_truncation
        self.budget = max_length - len(self.prefix) - len(self.suffix)  # content tokens per window
        if self.budget < 1:
            raise BertfastError(f"max_length={max_length} leaves no room for text after the special tokens.")
        self.stride = max_length // 4 if stride is None else stride
        if long_text == "sliding-window" and not 0 <= self.stride < self.budget:
            raise BertfastError(
                f"stride must be between 0 and {self.budget - 1} (max_length minus special tokens, minus 1); "
                f"got {self.stride}."
            )
        self.tok_plain = tok  # no truncation, no padding: for slices of long texts
        if long_text == "truncate":
            # The Rust tokenizer truncates and adds [CLS]/[SEP] itself: no Python work per text.
            # A second instance, so the settings of each are fixed once (thread safety).
            tok = Tokenizer.from_str(tok.to_str())
            tok.enable_truncation(max_length)
        self.tok = tok

    # -- windows -------------------------------------------------------------------------

    def windows(self, texts: list[str]) -> tuple[list[list[int]], np.ndarray | None]:
        """Token ids per window (special tokens included) and, for sliding windows, starts."""
        pre, suf, budget = self.prefix, self.suffix, self.budget
        if self.long_text == "truncate":
            cap = budget * _CHARS_PER_TOKEN[0]
            ids: list = [None] * len(texts)
            short = [i for i, t in enumerate(texts) if len(t) <= cap]
            for i, e in zip(short, encode(self.tok, [texts[i] for i in short], True)):
                ids[i] = e.ids
            if len(short) < len(texts):
                long = [i for i, t in enumerate(texts) if len(t) > cap]
                for i, c in zip(long, self._content([texts[i] for i in long], budget, 0)):
                    ids[i] = pre + c[:budget] + suf
            return ids, None
        if self.long_text == "head-tail":
            # "How to Fine-Tune BERT for Text Classification?" (Sun et al., 2019): keeping the
            # first ~1/4 and the last ~3/4 of the budget beat head-only and tail-only truncation.
            head = budget // 4
            tail = budget - head
            content = self._content(texts, head, tail)
            return [pre + (c if len(c) <= budget else c[:head] + c[-tail:]) + suf for c in content], None
        step = budget - self.stride
        most = budget + (MAX_WINDOWS - 1) * step  # content tokens that MAX_WINDOWS windows cover
        content = self._content(texts, most + 1, 0)
        over = sum(len(c) > most for c in content)
        if over:
            log.warning("%d text(s) need more than %d sliding windows of %d tokens; only the first %d windows "
                        "(%d tokens) of each were classified (bertfast.runtime.batching.MAX_WINDOWS).",
                        over, MAX_WINDOWS, self.max_length, MAX_WINDOWS, most)
        out: list[list[int]] = []
        starts = np.empty(len(content), dtype=np.int64)
        for i, c in enumerate(content):
            c = c[:most]
            starts[i] = len(out)
            s = 0
            while True:  # every window is [CLS] + slice + [SEP]; consecutive ones overlap by `stride`
                out.append(pre + c[s : s + budget] + suf)
                if s + budget >= len(c):
                    break
                s += step
        return out, (starts if len(out) != len(content) else None)

    def _content(self, texts: list[str], head: int, tail: int) -> list[list[int]]:
        """Content token ids (no special tokens) per text: all of them when a text has at most
        `head + tail`, else its first `head` and last `tail` (at least); never more characters
        tokenized than a few times what those tokens span.

        A text over `(head + tail) * 8` characters is not tokenized whole: a head slice of
        `head * 8` characters (and a tail slice of `tail * 8`) is. The pre-tokenizer's word
        at each cut may be split differently from the whole text, so its tokens are dropped;
        every other token is the same as in the whole text (the tokenizer model runs per
        word). When the slices hold too few tokens after that (URLs, symbol runs, whitespace
        padding) they are widened to 64 and 512 characters per token, or the whole text once
        it fits; past that, or past MAX_SLICE_CHARS, the slices' tokens are used as they are
        and a warning is logged.
        """
        out: list = [None] * len(texts)
        todo = list(range(len(texts)))
        cut_short = 0
        for level, per_token in enumerate(_CHARS_PER_TOKEN):
            last = level == len(_CHARS_PER_TOKEN) - 1
            n_head = min(head * per_token, MAX_SLICE_CHARS)
            n_tail = min(tail * per_token, MAX_SLICE_CHARS)
            whole = [i for i in todo if len(texts[i]) <= n_head + n_tail]
            for i, e in zip(whole, encode(self.tok_plain, [texts[i] for i in whole], False)):
                out[i] = e.ids
            cut = [i for i in todo if len(texts[i]) > n_head + n_tail]
            if not cut:
                break
            heads = encode(self.tok_plain, [texts[i][:n_head] for i in cut], False)
            tails = encode(self.tok_plain, [texts[i][len(texts[i]) - n_tail:] for i in cut], False) if tail else None
            todo = []
            for j, i in enumerate(cut):
                h = trim_word(heads[j], last=True)
                t = trim_word(tails[j], last=False) if tail else []
                if len(h) >= head and len(t) >= tail:
                    out[i] = h[:head] + t[len(t) - tail:]
                elif last:
                    cut_short += 1
                    h, t = heads[j].ids, (tails[j].ids if tail else [])
                    out[i] = h[:head] + t[max(0, len(t) - tail):]
                else:
                    todo.append(i)
        if cut_short:
            log.warning("%d text(s) have fewer than one token per %d characters (long URLs, symbols or "
                        "whitespace); only their first%s %d characters were tokenized, so the tokens at the "
                        "cut may differ from tokenizing the whole text.", cut_short, _CHARS_PER_TOKEN[-1],
                        " and last" if tail else "", min(head * _CHARS_PER_TOKEN[-1], MAX_SLICE_CHARS))
        return out

    # -- batches -------------------------------------------------------------------------

    def pair_windows(self, pairs: list[tuple[str, str]]) -> tuple[list[list[int]], list[list[int]], np.ndarray | None]:
        """Token ids and segment (token type) ids per window of text pairs, encoded as the
        tokenizer's pair template says ([CLS] a [SEP] b [SEP] with segments 0/1 for BERT,
        <s> a </s></s> b </s> for RoBERTa), cut by `pair_truncation`; for sliding windows the
        first text is kept (up to half the window) and the second is windowed."""
        t = self.pair_template
        budget = self.max_length - t.n_special
        if budget < 2:
            raise BertfastError(f"max_length={self.max_length} leaves no room for a text pair after the special tokens.")
        if self.long_text == "head-tail":
            raise BertfastError(
                "long_text='head-tail' is for single texts; text pairs are cut by pair_truncation "
                "(longest_first, only_second, only_first) or windowed with long_text='sliding-window'."
            )
        # Which text loses tokens first depends on their whole lengths; they are exact up to
        # PAIR_LENGTH_CAP x the budget (at least PAIR_LENGTH_MIN tokens) (beyond, work stays bounded and the longer in characters
        # counts as the longer).
        cap = max(PAIR_LENGTH_CAP * budget, PAIR_LENGTH_MIN)
        firsts = self._content([a for a, _ in pairs], cap, 0)
        if self.long_text == "truncate":
            seconds = self._content([b for _, b in pairs], cap, 0)
            ids, types = [], []
            for i, (a, b) in enumerate(zip(firsts, seconds)):
                la, lb = len(a), len(b)
                if min(la, lb) >= cap:  # both cut (or beyond): the longer in characters is the longer
                    la, lb = (cap + 1, cap) if len(pairs[i][0]) > len(pairs[i][1]) else (cap, cap + 1)
                na, nb = truncate_pair(la, lb, budget, self.pair_truncation, i)
                ids.append(t.ids(a[:na], b[:nb]))
                types.append(t.types(na, nb))
            return ids, types, None
        ids, types, starts = [], [], np.empty(len(pairs), dtype=np.int64)
        step_cap = MAX_WINDOWS * budget
        seconds = self._content([b for _, b in pairs], step_cap, 0)
        for i, (a, b) in enumerate(zip(firsts, seconds)):
            a = a[: budget // 2] if len(a) + len(b) > budget else a
            size = budget - len(a)  # second-text tokens per window
            step = size - min(self.stride, size - 1) if size > 1 else 1
            starts[i] = len(ids)
            s, n = 0, 0
            while True:
                part = b[s : s + size]
                ids.append(t.ids(a, part))
                types.append(t.types(len(a), len(part)))
                n += 1
                if s + size >= len(b) or n == MAX_WINDOWS:
                    break
                s += step
        return ids, types, (starts if len(ids) != len(pairs) else None)

    def encode_pairs(self, pairs: list[tuple[str, str]]) -> Encoded:
        """`encode` for text pairs (see `pair_windows`)."""
        wins, types, starts = self.pair_windows(pairs)
        return self._batch(wins, starts, len(pairs), types)

    def encode(self, texts: list[str]) -> Encoded:
        """Tokenize, window, sort (longest first) and batch by token budget."""
        wins, starts = self.windows(texts)
        return self._batch(wins, starts, len(texts))

    def _batch(self, wins: list[list[int]], starts: np.ndarray | None, n_texts: int,
               types: list[list[int]] | None = None) -> Encoded:
        n = len(wins)
        if n == 1:  # batch-1 latency path: no sorting, no masks to compute
            ids = np.array(wins, dtype=self.input_dtypes["input_ids"])
            L = ids.shape[1]
            return Encoded(1, 1, L, L, [(np.zeros(1, dtype=np.int64), self._feeds(ids, None, types))], None)
        lens = np.fromiter(map(len, wins), dtype=np.int64, count=n)
        order = np.argsort(-lens, kind="stable")
        batches = []
        padded = 0
        s = 0
        while s < n:
            L = int(lens[order[s]])  # longest first: the first window of a batch sets its length
            k = max(1, min(self.max_batch_size, self.batch_tokens // L, n - s))
            idx = order[s : s + k]
            blens = lens[idx]
            # A budget-sized batch of short texts can still span lengths 40..5 and compute
            # mostly padding; once a batch holds `min_batch_tokens`, end it where lengths fall
            # below 80% of its longest. That minimum keeps each run's fixed cost small next to
            # its compute (it is per execution provider: `Provider.min_batch_tokens`).
            min_rows = -(-self.min_batch_tokens // L)
            if k > min_rows:
                short = np.flatnonzero(blens[min_rows:] < _SHRINK * L)
                if short.size:
                    k = min_rows + int(short[0])
                    idx, blens = idx[:k], blens[:k]
            mask = np.arange(L) < blens[:, None]
            ids = np.full((k, L), self.pad_token_id, dtype=self.input_dtypes["input_ids"])
            # Row-major boolean assignment fills row 0's real tokens, then row 1's...: exactly
            # the concatenated windows, so no per-text copy loop in Python.
            ids[mask] = np.fromiter(chain.from_iterable(wins[j] for j in idx), dtype=ids.dtype, count=int(blens.sum()))
            btypes = None
            if types is not None:
                btypes = np.zeros((k, L), dtype=np.int64)
                btypes[mask] = np.fromiter(chain.from_iterable(types[j] for j in idx), dtype=np.int64,
                                           count=int(blens.sum()))
            batches.append((idx, self._feeds(ids, mask, btypes)))
            padded += k * L
            s += k
        return Encoded(n_texts, n, int(lens.sum()), padded, batches, starts)

    def _feeds(self, ids: np.ndarray, mask: np.ndarray | None, types=None) -> dict[str, np.ndarray]:
        feeds = {}
        for name in self.input_names:
            if name == "input_ids":
                feeds[name] = ids
            elif name == "attention_mask":
                dt = self.input_dtypes[name]
                feeds[name] = np.ones(ids.shape, dtype=dt) if mask is None else mask.astype(dt)
            elif types is None:  # token_type_ids: a single segment
                feeds[name] = np.zeros(ids.shape, dtype=self.input_dtypes[name])
            else:  # token_type_ids of a pair: 0 for the first text, 1 for the second (BERT's template)
                feeds[name] = np.asarray(types, dtype=self.input_dtypes[name]).reshape(ids.shape)
        return feeds
