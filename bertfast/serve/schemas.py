"""Request validation for every route: nothing malformed reaches the model.

Bodies are checked by hand instead of by pydantic models so that each error is one TEI-style
JSON object, `{"error": "...", "error_type": "..."}`, whose message names the field (`inputs[3]`,
`parameters.top_k`) and the server flag behind a limit (`--max-inputs`). Standard library only.

`inputs` follows TEI's grammar exactly: a string is one text; a flat list is ONE sequence (a text
`["a"]` or a pair `["a", "b"]`); a batch is a list of lists `[["a"], ["b"]]`. What a sequence must
be depends on the export: a pair export (a cross-encoder, `clf.pair`) takes pairs only, a
single-text export single texts only; the other kind is a 422 naming the item. Checked pairs
are returned as `(text, text_pair)` tuples, which `Classifier.encode` takes as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import tasks as _tasks
from ..errors import BertfastError

FUNCTIONS = ("softmax", "sigmoid", "none")


class ApiError(Exception):
    """An HTTP error answered as TEI's error body `{"error": ..., "error_type": ...}`."""

    def __init__(self, status: int, message: str, error_type: str = "validation",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}


@dataclass(frozen=True)
class Limits:
    """Per-request limits (each one a `bertfast serve` flag)."""

    max_inputs: int
    max_chars: int


@dataclass(frozen=True)
class PredictRequest:
    """A checked TEI `/predict` body. `texts`: strings, or `(text, text_pair)` tuples for a pair
    export. `function` is how scores are made from logits (softmax, sigmoid or none)."""

    texts: list
    single: bool
    function: str = "softmax"
    top_k: int | None = None
    truncate: bool | None = None


@dataclass(frozen=True)
class ClassifyRequest:
    """A checked native `/classify` body (`texts`: strings, or `(text, text_pair)` tuples)."""

    texts: list
    single: bool
    top_k: int = 1
    all_scores: bool = False


@dataclass(frozen=True)
class RerankRequest:
    """A checked TEI `/rerank` body."""

    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 422 naming what is wrong with it."""
    if not body:
        raise ApiError(422, "body is empty; send a JSON object such as {\"inputs\": \"some text\"}.")
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise ApiError(422, f"body is not valid JSON ({str(e)[:120]}).") from None
    if not isinstance(obj, dict):
        raise ApiError(422, f"body must be a JSON object; got {_kind(obj)}.")
    return obj


def parse_predict(obj: dict[str, Any], limits: Limits, pair: bool = False,
                  default_function: str = "softmax") -> PredictRequest:
    """Check a TEI `/predict` (or HF Inference API `/`) body.

    Args:
        obj: the parsed JSON body.
        limits: per-request limits.
        pair: the export classifies text pairs: every sequence must be `[text, text_pair]`
            (else every sequence must be one text).
        default_function: scores without `raw_scores` or `parameters.function_to_apply`: the
            export's activation (softmax; sigmoid for multi-label; none for regression).

    Raises:
        ApiError: 422 for a wrong shape or type, 413 for a limit; the message names the field.
    """
    _only(obj, ("inputs", "truncate", "raw_scores", "parameters"))
    texts, single = _predict_inputs(_required(obj, "inputs"), limits, pair)
    raw = _bool(obj, "raw_scores", False)
    params = obj.get("parameters")
    top_k, function = None, "none" if raw else default_function
    if params is not None:  # the HF Inference API's form, as InferenceClient sends it
        if not isinstance(params, dict):
            raise ApiError(422, f"parameters must be an object; got {_kind(params)}.")
        _only(params, ("top_k", "function_to_apply"), where="parameters.")
        top_k = _int(params, "top_k", None, low=1, where="parameters.")
        f = params.get("function_to_apply")
        if f is not None:
            if not isinstance(f, str) or f.lower() not in FUNCTIONS:
                raise ApiError(422, f"parameters.function_to_apply must be one of {', '.join(FUNCTIONS)}; got {f!r}.")
            function = f.lower()
    truncate = obj.get("truncate")
    if truncate is not None and not isinstance(truncate, bool):
        raise ApiError(422, f"truncate must be true or false; got {_kind(truncate)}.")
    return PredictRequest(texts, single, function, top_k, truncate)


def parse_classify(obj: dict[str, Any], limits: Limits, n_labels: int, pair: bool = False,
                   task: str = "single_label") -> ClassifyRequest:
    """Check a native `/classify` body: `{"texts": ..., "top_k": int, "all_scores": bool}`.

    `texts` is what `Classifier.predict` takes: a string or a list of strings; for a pair export
    one pair `[text, text_pair]` or a list of pairs. `top_k` is for single-label exports only
    (multi-label and regression exports always answer every label / the one score).
    """
    _only(obj, ("texts", "top_k", "all_scores"))
    raw = _required(obj, "texts")
    if pair:
        texts, single = _pairs(raw, "texts", limits)
    else:
        single = isinstance(raw, str)
        texts = [raw] if single else raw
        if not isinstance(texts, list):
            raise ApiError(422, f"texts must be a string or a list of strings; got {_kind(raw)}.")
        _check_texts(texts, "texts", limits, single_texts=True)
    top_k = _int(obj, "top_k", 1, low=1)
    try:
        _tasks.get(task).check_top_k(top_k, "this export", "top_k")
    except BertfastError as e:
        raise ApiError(422, str(e)) from None
    if top_k > n_labels:
        raise ApiError(422, f"top_k must be between 1 and {n_labels} (the number of labels); got {top_k}.")
    return ClassifyRequest(texts, single, top_k, _bool(obj, "all_scores", False))


def parse_rerank(obj: dict[str, Any], limits: Limits) -> RerankRequest:
    """Check a TEI `/rerank` body: `{"query": str, "texts": [str], ...}`."""
    _only(obj, ("query", "texts", "truncate", "raw_scores", "return_text", "truncation_direction"))
    query = _required(obj, "query")
    if not isinstance(query, str):
        raise ApiError(422, f"query must be a string; got {_kind(query)}.")
    if len(query) > limits.max_chars:
        raise ApiError(413, f"query has {len(query):,} characters; the limit is {limits.max_chars:,} (--max-chars).")
    _check_unicode(query, "query")
    texts = _required(obj, "texts")
    if not isinstance(texts, list):
        raise ApiError(422, f"texts must be a list of strings; got {_kind(texts)}.")
    _check_texts(texts, "texts", limits)
    truncate = obj.get("truncate")
    if truncate is not None and not isinstance(truncate, bool):
        raise ApiError(422, f"truncate must be true or false; got {_kind(truncate)}.")
    direction = obj.get("truncation_direction")
    if direction is not None and (not isinstance(direction, str) or direction.lower() not in ("left", "right")):
        raise ApiError(422, f"truncation_direction must be \"left\" or \"right\"; got {json.dumps(direction)[:40]}.")
    return RerankRequest(query, texts, _bool(obj, "raw_scores", False), _bool(obj, "return_text", False), truncate)


# -- helpers ------------------------------------------------------------------------------


def _predict_inputs(inputs: Any, limits: Limits, pair: bool = False) -> tuple[list, bool]:
    """TEI's `PredictInput`: (texts or (text, text_pair) tuples, was_single)."""
    if isinstance(inputs, str):
        _check_texts([inputs], "inputs", limits)
        if pair:
            raise ApiError(422, _ONE.format(where="inputs", what="one string"))
        return [inputs], True
    if not isinstance(inputs, list):
        raise ApiError(422, f"inputs must be a string, a pair [a, b] or a batch [[text], ...]; got {_kind(inputs)}.")
    if not inputs:
        raise ApiError(422, "inputs must not be empty; send a string or a batch [[text], ...].")
    if not isinstance(inputs[0], list):  # a flat list is one sequence: [text] or [text_a, text_b]
        _check_texts(inputs, "inputs", limits)
        if len(inputs) > 2:
            example = '[["a 1", "b 1"], ["a 2", "b 2"]]' if pair else '[["text 1"], ["text 2"]]'
            raise ApiError(422, f"inputs is a flat list of {len(inputs)} strings; TEI reads a flat list as one "
                                f"sequence ([text] or [text_a, text_b]); send a batch as a list of lists: {example}.")
        if pair:
            if len(inputs) == 1:
                raise ApiError(422, _ONE.format(where="inputs", what="one text [text]"))
            return [(inputs[0], inputs[1])], True
        if len(inputs) == 2:
            raise ApiError(422, _PAIR.format(where="inputs"))
        return inputs, True
    if len(inputs) > limits.max_inputs:
        raise ApiError(413, f"inputs has {len(inputs)} items; the limit is {limits.max_inputs} per request (--max-inputs).")
    texts = []
    for i, item in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(item, list):
            want = "a pair [text, text_pair]" if pair else "a list [text]"
            raise ApiError(422, f"{where} must be {want} (inputs is a batch); got {_kind(item)}.")
        if len(item) not in (1, 2):
            want = "a pair [text, text_pair]" if pair else "[text] (or a pair [text_a, text_b])"
            raise ApiError(422, f"{where} has {len(item)} elements; a batch item is {want}.")
        _check_texts(item, where, limits)
        if pair:
            if len(item) == 1:
                raise ApiError(422, _ONE.format(where=where, what="one text [text]"))
            texts.append((item[0], item[1]))
            continue
        if len(item) == 2:
            raise ApiError(422, _PAIR.format(where=where))
        texts.append(item[0])
    return texts, False


def _pairs(raw: Any, where: str, limits: Limits) -> tuple[list[tuple[str, str]], bool]:
    """`Classifier.predict`'s pair input: one pair [a, b] or a list of pairs; (pairs, was_single)."""
    if isinstance(raw, str):
        raise ApiError(422, _ONE.format(where=where, what="one string"))
    if not isinstance(raw, list):
        raise ApiError(422, f"{where} must be a pair [text, text_pair] or a list of pairs; got {_kind(raw)}.")
    if not raw:
        raise ApiError(422, f"{where} must not be empty; send a pair [text, text_pair] or a list of pairs.")
    if not isinstance(raw[0], list):  # one pair
        _check_texts(raw, where, limits)
        if len(raw) != 2:
            raise ApiError(422, f"{where} is a flat list of {len(raw)} string(s); a pair is [text, text_pair] "
                                "(2 strings); send several as a list of pairs [[\"a 1\", \"b 1\"], [\"a 2\", \"b 2\"]].")
        return [(raw[0], raw[1])], True
    if len(raw) > limits.max_inputs:
        raise ApiError(413, f"{where} has {len(raw)} items; the limit is {limits.max_inputs} per request (--max-inputs).")
    out = []
    for i, item in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(item, list):
            raise ApiError(422, f"{w} must be a pair [text, text_pair]; got {_kind(item)}.")
        if len(item) != 2:
            raise ApiError(422, f"{w} has {len(item)} elements; each pair is [text, text_pair] (2 strings).")
        _check_texts(item, w, limits)
        out.append((item[0], item[1]))
    return out, False


_PAIR = ("{where} is a pair [text_a, text_b], but this export classifies single texts (it is not a pair / "
         "cross-encoder model); send [text] instead.")
_ONE = ("{where} is {what}, but this export classifies text pairs (a pair / cross-encoder model); send a pair "
        "[text, text_pair] or a batch of pairs [[text, text_pair], ...].")


def _check_texts(texts: list, where: str, limits: Limits, single_texts: bool = False) -> None:
    """Each item a string within --max-chars. `single_texts`: a list item is most likely a pair
    sent to a single-text export, and the message says so."""
    if not texts:
        raise ApiError(422, f"{where} must not be empty; send at least one text.")
    if len(texts) > limits.max_inputs:
        raise ApiError(413, f"{where} has {len(texts)} items; the limit is {limits.max_inputs} per request (--max-inputs).")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            if single_texts and isinstance(t, list):
                raise ApiError(422, f"{where}[{i}] must be a string; got a list (a pair?), but this export "
                                    "classifies single texts (it is not a pair / cross-encoder model).")
            raise ApiError(422, f"{where}[{i}] must be a string; got {_kind(t)}.")
        if len(t) > limits.max_chars:
            raise ApiError(413, f"{where}[{i}] has {len(t):,} characters; the limit is {limits.max_chars:,} (--max-chars).")
        if not t.isascii():
            _check_unicode(t, f"{where}[{i}]")


def _check_unicode(text: str, where: str) -> None:
    """Refuse a lone surrogate: valid JSON ("\\ud800"), but not text the tokenizer takes or UTF-8
    can write, so the client's error (422), not the backend's (it failed the model call: 500)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(422, f"{where} is not valid Unicode text: a lone surrogate \\u{ord(text[e.start]):04x} at "
                            f"character {e.start}; send well-formed text (surrogates only in pairs).") from None


def _only(obj: dict, allowed: tuple[str, ...], where: str = "") -> None:
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        raise ApiError(422, f"unknown field(s) {', '.join(where + str(k) for k in unknown)}; "
                            f"accepted: {', '.join(where + a for a in allowed)}.")


def _required(obj: dict, name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise ApiError(422, f"{name} is required.")
    return obj[name]


def _bool(obj: dict, name: str, default: bool) -> bool:
    value = obj.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(422, f"{name} must be true or false; got {_kind(value)}.")
    return value


def _int(obj: dict, name: str, default: int | None, low: int, where: str = "") -> int | None:
    value = obj.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ApiError(422, f"{where}{name} must be an integer >= {low}; got {json.dumps(value)[:40]}.")
    return value


def _kind(value: Any) -> str:
    """A JSON type name for error messages (never the value itself: it may be 10 MB)."""
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)
