"""Request validation for every route: nothing malformed reaches the model.

Bodies are checked by hand instead of by pydantic models so that each error is one TEI-style
JSON object, `{"error": "...", "error_type": "..."}`, whose message names the field (`inputs[3]`,
`parameters.top_k`) and the server flag behind a limit (`--max-inputs`). Standard library only.

`inputs` follows TEI's grammar exactly: a string is one text; a flat list is ONE sequence (a text
`["a"]` or a pair `["a", "b"]`); a batch is a list of lists `[["a"], ["b"]]`. Pairs are refused
with 422 until cross-encoder exports exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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
    """A checked TEI `/predict` body. `function` is how scores are made from logits."""

    texts: list[str]
    single: bool
    function: str = "softmax"
    top_k: int | None = None
    truncate: bool | None = None


@dataclass(frozen=True)
class ClassifyRequest:
    """A checked native `/classify` body."""

    texts: list[str]
    single: bool
    top_k: int = 1
    all_scores: bool = False


@dataclass(frozen=True)
class RerankRequest:
    """A checked TEI `/rerank` body (answered with an error until cross-encoders exist)."""

    query: str
    texts: list[str]


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


def parse_predict(obj: dict[str, Any], limits: Limits) -> PredictRequest:
    """Check a TEI `/predict` (or HF Inference API `/`) body.

    Args:
        obj: the parsed JSON body.
        limits: per-request limits.

    Raises:
        ApiError: 422 for a wrong shape or type, 413 for a limit; the message names the field.
    """
    _only(obj, ("inputs", "truncate", "raw_scores", "parameters"))
    texts, single = _predict_inputs(_required(obj, "inputs"), limits)
    raw = _bool(obj, "raw_scores", False)
    params = obj.get("parameters")
    top_k, function = None, "none" if raw else "softmax"
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


def parse_classify(obj: dict[str, Any], limits: Limits, n_labels: int) -> ClassifyRequest:
    """Check a native `/classify` body: `{"texts": str | [str], "top_k": int, "all_scores": bool}`."""
    _only(obj, ("texts", "top_k", "all_scores"))
    raw = _required(obj, "texts")
    single = isinstance(raw, str)
    texts = [raw] if single else raw
    if not isinstance(texts, list):
        raise ApiError(422, f"texts must be a string or a list of strings; got {_kind(raw)}.")
    _check_texts(texts, "texts", limits)
    top_k = _int(obj, "top_k", 1, low=1)
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
    texts = _required(obj, "texts")
    if not isinstance(texts, list):
        raise ApiError(422, f"texts must be a list of strings; got {_kind(texts)}.")
    _check_texts(texts, "texts", limits)
    for name in ("truncate", "raw_scores", "return_text"):
        _bool(obj, name, False)
    return RerankRequest(query, texts)


# -- helpers ------------------------------------------------------------------------------


def _predict_inputs(inputs: Any, limits: Limits) -> tuple[list[str], bool]:
    """TEI's `PredictInput`: (texts, was_single)."""
    if isinstance(inputs, str):
        _check_texts([inputs], "inputs", limits)
        return [inputs], True
    if not isinstance(inputs, list):
        raise ApiError(422, f"inputs must be a string, a pair [a, b] or a batch [[text], ...]; got {_kind(inputs)}.")
    if not inputs:
        raise ApiError(422, "inputs must not be empty; send a string or a batch [[text], ...].")
    if not isinstance(inputs[0], list):  # a flat list is one sequence: [text] or [text_a, text_b]
        _check_texts(inputs, "inputs", limits)
        if len(inputs) == 2:
            raise ApiError(422, _PAIR.format(where="inputs"))
        if len(inputs) > 2:
            raise ApiError(422, f"inputs is a flat list of {len(inputs)} strings; TEI reads a flat list as one "
                                "sequence ([text] or [text_a, text_b]); send a batch as a list of lists: "
                                "[[\"text 1\"], [\"text 2\"]].")
        return inputs, True
    if len(inputs) > limits.max_inputs:
        raise ApiError(413, f"inputs has {len(inputs)} items; the limit is {limits.max_inputs} per request (--max-inputs).")
    texts = []
    for i, item in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(item, list):
            raise ApiError(422, f"{where} must be a list [text] (inputs is a batch); got {_kind(item)}.")
        if len(item) not in (1, 2):
            raise ApiError(422, f"{where} has {len(item)} elements; a batch item is [text] (or a pair [text_a, text_b]).")
        _check_texts(item, where, limits)
        if len(item) == 2:
            raise ApiError(422, _PAIR.format(where=where))
        texts.append(item[0])
    return texts, False


_PAIR = ("{where} is a pair [text_a, text_b]; this export classifies single texts (pairs need a cross-encoder "
         "export, not supported yet); send [text] instead.")


def _check_texts(texts: list, where: str, limits: Limits) -> None:
    if not texts:
        raise ApiError(422, f"{where} must not be empty; send at least one text.")
    if len(texts) > limits.max_inputs:
        raise ApiError(413, f"{where} has {len(texts)} items; the limit is {limits.max_inputs} per request (--max-inputs).")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ApiError(422, f"{where}[{i}] must be a string; got {_kind(t)}.")
        if len(t) > limits.max_chars:
            raise ApiError(413, f"{where}[{i}] has {len(t):,} characters; the limit is {limits.max_chars:,} (--max-chars).")


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
