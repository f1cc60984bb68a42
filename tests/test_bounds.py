"""Bounded work on hostile inputs, and ONNX Runtime failures as one-line errors.

* ORT run errors (out of memory, impossible shapes, a variant that loads but fails) become an
  `InferenceError` naming the variant, the batch shape and what to try; Ctrl-C still stops.
* Long texts: each long-text mode tokenizes only bounded slices of a text (a 20 MB text, a 5 MB
  text without spaces) and gives the same ids as tokenizing the whole text.
* The training length histogram samples and caps.
"""

from __future__ import annotations

import logging
import random
import time

import numpy as np
import pytest
from conftest import COMMON, TOPIC_WORDS

from bertfast.runtime import batching
from bertfast.runtime.classifier import Classifier, InferenceError

WORDS = " ".join(TOPIC_WORDS.values()).split() + COMMON.split()


@pytest.fixture(scope="module")
def clf(tiny_export):
    with Classifier.load(tiny_export, device="cpu") as c:
        yield c


# -- ONNX Runtime errors during a run ------------------------------------------------------


def _ort(name: str):
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return getattr(state, name)


class _Failing:
    """Stands in for an InferenceSession whose run raises `exc` (io_binding too)."""

    def __init__(self, real, exc):
        self.real, self.exc = real, exc

    def __getattr__(self, name):
        return getattr(self.real, name)

    def run(self, *a, **k):
        raise self.exc

    def run_with_iobinding(self, *a, **k):
        raise self.exc


@pytest.mark.parametrize("exc", [
    lambda: _ort("Fail")("[ONNXRuntimeError] : 1 : FAIL : bfc_arena.cc:376 Failed to allocate memory for\nrequested buffer"),
    lambda: _ort("InvalidArgument")("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions"),
    lambda: _ort("RuntimeException")("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code"),
    lambda: RuntimeError("CUDA error: an illegal memory access"),
    lambda: MemoryError(),
])
def test_run_errors_become_one_line(tiny_export, exc):
    with Classifier.load(tiny_export, device="cpu", batch_tokens=512, max_batch_size=8) as c:
        c.session = _Failing(c.session, exc())
        for texts in ("a goal", ["a goal", "the vote for the party", "win"]):
            with pytest.raises(InferenceError) as e:
                c.predict(texts)
            msg = str(e.value)
            assert "\n" not in msg and f"variant {c.variant!r}" in msg and "--batch-tokens, now 512" in msg
            assert "--max-batch-size, now 8" in msg and "bertfast export --force" in msg
        assert "batch of 3 x " in msg


def test_run_errors_on_the_stream_pool_and_io_binding(tiny_export):
    import dataclasses

    with Classifier.load(tiny_export, device="cpu", threads=2, streams=2, batch_tokens=64) as c:
        c.session = _Failing(c.session, _ort("Fail")("boom"))
        with pytest.raises(InferenceError, match="boom"):
            c.predict([" ".join(WORDS[: 3 + i]) for i in range(30)])
        c._provider = dataclasses.replace(c._provider, io_binding=True)
        with pytest.raises(InferenceError, match="boom"):
            c.predict("a goal")


def test_ctrl_c_is_not_swallowed(tiny_export):
    with Classifier.load(tiny_export, device="cpu") as c:
        c.session = _Failing(c.session, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            c.predict("a goal")


def test_programming_errors_are_not_disguised(tiny_export):
    with Classifier.load(tiny_export, device="cpu") as c:
        c.session = _Failing(c.session, TypeError("a bug"))
        with pytest.raises(TypeError):
            c.predict("a goal")


# -- long texts: bounded slices, same ids ---------------------------------------------------


class _Spy:
    """Wraps a tokenizers.Tokenizer and records the longest string it was given."""

    def __init__(self, tok):
        self.tok, self.longest, self.calls = tok, 0, 0

    def encode(self, text, **k):
        self.longest, self.calls = max(self.longest, len(text)), self.calls + 1
        return self.tok.encode(text, **k)

    def encode_batch(self, texts, **k):
        self.longest = max([self.longest, *map(len, texts)])
        self.calls += 1
        return self.tok.encode_batch(texts, **k)


def _spied(b: batching.Batcher) -> tuple[_Spy, _Spy]:
    b.tok, b.tok_plain = _Spy(b.tok), _Spy(b.tok_plain)
    return b.tok, b.tok_plain


def _words(n_chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    out = " ".join(rng.choice(WORDS) for _ in range(n_chars // 5 + 1))
    return out[:n_chars]


def _reference(b: batching.Batcher, text: str) -> list[list[int]]:
    """Windows computed from the whole text, as before the bound (and its window cap)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(b.tok_plain.to_str() if hasattr(b.tok_plain, "to_str") else b.tok_plain.tok.to_str())
    c = tok.encode(text, add_special_tokens=False).ids
    pre, suf, budget = b.prefix, b.suffix, b.budget
    if b.long_text == "truncate":
        return [pre + c[:budget] + suf]
    if b.long_text == "head-tail":
        head = budget // 4
        return [pre + (c if len(c) <= budget else c[:head] + c[len(c) - (budget - head):]) + suf]
    step, out, s = budget - b.stride, [], 0
    while len(out) < batching.MAX_WINDOWS:
        out.append(pre + c[s : s + budget] + suf)
        if s + budget >= len(c):
            break
        s += step
    return out


def _batcher(clf, mode: str) -> batching.Batcher:
    b = clf.batcher
    return batching.Batcher(clf.manifest.tokenizer_file, b.input_names, b.input_dtypes, b.pad_token_id,
                            b.max_length, long_text=mode)


MODES = ["truncate", "head-tail", "sliding-window"]


@pytest.mark.parametrize("mode", MODES)
def test_long_texts_give_the_same_ids_as_whole_tokenization(clf, mode):
    rng = random.Random(5)
    glued = "".join(rng.choice(WORDS) + rng.choice(",.;:!?-/") for _ in range(3000))  # no spaces at all
    texts = [
        _words(400), _words(3_000, 1), _words(60_000, 2), glued,
        "x" * 5_000 + " goal team",  # one "word" longer than the first slice
        "goal " + "https://example.com/" + "a" * 3_000 + " team " * 200,
        "vote " + " " * 20_000 + _words(2_000, 3),  # whitespace padding
        _words(2_000, 4) + "\n\n\t " + "z" * 4_000,
    ]
    b = _batcher(clf, mode)
    got, starts = b.windows(texts)
    per_text = np.split(np.arange(len(got)), starts[1:]) if starts is not None else [[i] for i in range(len(got))]
    for t, idx in zip(texts, per_text):
        assert [got[i] for i in idx] == _reference(b, t), (mode, t[:40])
    assert [w for t in texts for w in b.windows([t])[0]] == got  # one text at a time: the same


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["20 MB of words", "5 MB without spaces", "5 MB of one character"])
def test_huge_text_is_tokenized_in_bounded_slices(clf, mode, kind):
    if kind == "20 MB of words":
        text = ("goal team vote minister phone chip " * 600_000)[:20_000_000]
    elif kind == "5 MB without spaces":
        text = ("goal,team;vote." * 400_000)[:5_000_000]
    else:
        text = "a" * 5_000_000
    b = _batcher(clf, mode)
    tok, plain = _spied(b)
    t0 = time.perf_counter()
    wins, _ = b.windows([text, "a short one"])
    took = time.perf_counter() - t0
    assert max(tok.longest, plain.longest) <= batching.MAX_SLICE_CHARS
    if kind != "5 MB of one character":  # ordinary tokens per character: the first, small slice suffices
        assert plain.longest <= 8 * (b.budget + (batching.MAX_WINDOWS - 1) * (b.budget - b.stride) + 1)
    assert took < 10, took
    assert 1 <= len(wins) <= batching.MAX_WINDOWS + 1 and all(len(w) <= b.max_length for w in wins)


def test_huge_text_through_the_classifier(clf):
    text = ("goal team vote minister phone chip " * 600_000)[:20_000_000]
    for mode in MODES:
        with Classifier.load(clf.manifest.folder, device="cpu", long_text=mode) as c:
            t0 = time.perf_counter()
            p = c.predict_proba([text, "a goal"])
            assert p.shape == (2, 3) and time.perf_counter() - t0 < 20
            assert c.last_stats["n_windows"] <= batching.MAX_WINDOWS + 1


def test_sliding_windows_are_capped_and_logged(clf, caplog):
    b = _batcher(clf, "sliding-window")
    text = _words(2_000_000, 9)
    with caplog.at_level(logging.WARNING, logger="bertfast.runtime"):
        wins, starts = b.windows(["goal", text])
    assert len(wins) == 1 + batching.MAX_WINDOWS and list(starts) == [0, 1]
    assert wins[1:] == _reference(b, text[:200_000])  # the first MAX_WINDOWS windows of the whole text
    assert "only the first 256 windows" in caplog.text


def test_too_few_tokens_per_character_is_logged(clf, caplog):
    b = _batcher(clf, "head-tail")
    text = "goal " + " " * 3_000_000 + " vote"
    with caplog.at_level(logging.WARNING, logger="bertfast.runtime"):
        (w,), _ = b.windows([text])
    assert w[0] == b.prefix[0] and len(w) >= 3
    assert "fewer than one token per 512 characters" in caplog.text


# -- the training length histogram ---------------------------------------------------------


def test_length_histogram_is_bounded(tiny_model):
    from transformers import AutoTokenizer

    from bertfast.training.checkpoints import length_histogram

    tok = AutoTokenizer.from_pretrained(tiny_model)
    texts = [_words(200, i) for i in range(50)] + [("goal team " * 1_000_000)[:5_000_000]]
    t0 = time.perf_counter()
    h = length_histogram(tok, texts, limit=64, model_limit=128)
    assert time.perf_counter() - t0 < 10
    assert h["cap"] == 512 and h["max"] == 512 and h["texts"] == 51 and sum(h["counts"]) == 51
    small = length_histogram(tok, texts, limit=64, model_limit=128, sample=10)
    assert small["texts"] == 10 and sum(small["counts"]) == 10
