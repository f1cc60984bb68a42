"""The schema `bertfast.json` is checked against on load (see `bertfast.manifest` for its layout).

A manifest is data anyone can edit. Every field the runtime relies on is checked here, so a
hand-edited or damaged file fails on load with one line naming the field, instead of a
traceback deep in the runtime or, worse, silently shifted labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from .errors import ManifestError  # noqa: F401  (re-exported: declared with the other error types)

FAILED = "failed"
FIX = "re-run `bertfast export --force`"


# -- schema -------------------------------------------------------------------------------
# One table per object: field -> (required, what it must be, test). Fields not listed are kept
# as they are (`Manifest.extra`), so a manifest from a newer bertfast still loads; listed ones
# must have their type, because a "128" or a list where an object belongs surfaces later as a
# traceback deep in the runtime, or as silently wrong labels.


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(low: int) -> Callable:
    return lambda v: is_int(v) and v >= low


def _opt(test: Callable) -> Callable:
    return lambda v: v is None or test(v)


def _str(v) -> bool:
    return isinstance(v, str)


def _name(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _dict(v) -> bool:
    return isinstance(v, dict)


def _bool(v) -> bool:
    return isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _names(v) -> bool:
    return isinstance(v, list) and all(_name(x) for x in v)


Schema = dict[str, tuple[bool, str, Callable]]
FILE = "a file name inside the export folder"
FIELDS: Schema = {
    "format": (True, '"bertfast-export"', lambda v: v == "bertfast-export"),
    "format_version": (False, "an integer >= 1", _int(1)),
    "bertfast_version": (False, "a string", _str),
    "created": (False, "a string or null", _opt(_str)),
    "source": (False, "an object", _dict),
    "id2label": (True, 'an object {"0": "label", "1": ...}', _dict),
    "max_length": (True, "an integer >= 3", _int(3)),
    "model_max_length": (False, "an integer >= 3 or null", _opt(_int(3))),
    "inputs": (True, "a non-empty list of input names", lambda v: _names(v) and 0 < len(v) == len(set(v))),
    "output": (False, "an output name (string)", _name),
    "opset": (False, "an integer or null", _opt(_int(1))),
    "tokenizer": (False, "an object", _dict),
    "quantization_preset": (False, "a string or null", _opt(_str)),
    "variants": (True, "an object {name: {...}} with at least one variant", lambda v: _dict(v) and len(v) > 0),
    "default": (False, "an object {device: variant name or null}", _opt(_dict)),
    "max_accuracy_drop": (False, "a finite number or null", _opt(_number)),
    "eval_data": (False, "an object or null", _opt(_dict)),
    "training": (False, "an object or null", _opt(_dict)),
    "versions": (False, "an object", _dict),
    "reference": (False, "an object or null", _opt(_dict)),
    "export_seconds": (False, "a finite number or null", _opt(_number)),
    "task": (False, "an object or null", _opt(_dict)),
    "batching": (False, "an object {device: {batch_tokens: ...}} or null", _opt(_dict)),
    "window": (False, "an object {device: {variant, max_length, long_text}} or null", _opt(_dict)),
}
WINDOW: Schema = {
    "variant": (True, "a variant name", _name),
    "max_length": (True, "an integer >= 3", _int(3)),
    "long_text": (True, "truncate or head-tail", lambda v: v in ("truncate", "head-tail")),
}
TASK: Schema = {
    "name": (True, "single_label, multi_label or regression", lambda v: v in ("single_label", "multi_label", "regression")),
    "pair": (False, "true or false", _bool),
    "activation": (False, "softmax, sigmoid or identity", lambda v: v in ("softmax", "sigmoid", "identity")),
    "thresholds": (False, "a list of numbers (one per label) or null", _opt(lambda v: isinstance(v, list) and all(map(_number, v)))),
    "pair_truncation": (False, "longest_first, only_second or only_first",
                        lambda v: v in ("longest_first", "only_second", "only_first")),
}
TOKENIZER: Schema = {
    "file": (True, FILE, _name),
    "pad_token_id": (False, "an integer >= 0", _int(0)),
    "lowercase": (False, "true or false", _bool),
}
VARIANT: Schema = {
    "status": (False, '"ok" or "failed"', lambda v: v in ("ok", FAILED)),
    "file": (False, FILE, _name),
    "precision": (False, "a string", _str),
    "devices": (False, "a list of provider names", _names),
    "eligible": (False, "true or false", _bool),
    "reason": (False, "a string", _str),
    "validation": (False, "an object or null", _opt(_dict)),
    "speed": (False, "an object or null", _opt(_dict)),
}
EVAL_DATA: Schema = {"file": (False, FILE, _name), "rows": (False, "an integer >= 0", _int(0))}


def _kind(v) -> str:
    if v is None:
        return "null"
    for t, name in ((bool, "true/false"), (str, "a string"), (int, "a number"), (float, "a number"),
                    (list, "a list"), (dict, "an object")):
        if isinstance(v, t):
            return name
    return type(v).__name__


def _show(v) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, float) or math.isfinite(v) else str(v)
    return (text if len(text) <= 40 else text[:37] + "...") + f" ({_kind(v)})"


def _bad(path, where: str, what: str, value=None, shown: bool = True) -> ManifestError:
    got = f", got {_show(value)}" if shown else ""
    return ManifestError(f"manifest {path}: `{where}` must be {what}{got}; {FIX}.")


def _check(obj: dict, schema: Schema, prefix: str, path) -> None:
    for key, (required, what, test) in schema.items():
        where = prefix + key
        if key not in obj:
            if required:
                raise ManifestError(f"manifest {path}: `{where}` is missing (it must be {what}); {FIX}.")
            continue
        if not test(obj[key]):
            raise _bad(path, where, what, obj[key])


def validate(raw, path=None) -> None:
    """Check a parsed `bertfast.json` against the schema above and its cross-field rules.

    Raises:
        ManifestError: naming the first bad field, what it must be and what it holds.
    """
    if not isinstance(raw, dict):
        raise ManifestError(f"manifest {path}: must be a JSON object, got {_kind(raw)}; {FIX}.")
    _check(raw, FIELDS, "", path)
    ids = raw["id2label"]
    if not ids:
        raise _bad(path, "id2label", "a non-empty object (one label per class)", ids)
    if set(ids) != {str(i) for i in range(len(ids))}:
        raise _bad(path, "id2label", f'keyed "0".."{len(ids) - 1}" (one key per class id)', sorted(ids))
    for k, label in ids.items():
        if not _name(label):
            raise _bad(path, f"id2label.{k}", "a label name (non-empty string)", label)
    if len(set(ids.values())) != len(ids):
        dup = next(x for x in ids.values() if list(ids.values()).count(x) > 1)
        raise _bad(path, "id2label", f"distinct label names ({dup!r} appears twice)", shown=False)
    mml = raw.get("model_max_length")
    if mml is not None and raw["max_length"] > mml:
        raise _bad(path, "max_length", f"at most model_max_length ({mml})", raw["max_length"])
    _check(raw.get("tokenizer", {"file": "tokenizer.json"}), TOKENIZER, "tokenizer.", path)
    if raw.get("eval_data"):
        _check(raw["eval_data"], EVAL_DATA, "eval_data.", path)
    for device, spec in (raw.get("batching") or {}).items():
        if not isinstance(spec, dict) or not (spec.get("batch_tokens") is None or _int(1)(spec["batch_tokens"])):
            raise _bad(path, f"batching.{device}", "an object with batch_tokens (an integer >= 1)", spec)
    for device, spec in (raw.get("window") or {}).items():
        if not isinstance(spec, dict):
            raise _bad(path, f"window.{device}", "an object {variant, max_length, long_text}", spec)
        _check(spec, WINDOW, f"window.{device}.", path)
        if spec["max_length"] > raw["max_length"]:
            raise _bad(path, f"window.{device}.max_length", f"at most max_length ({raw['max_length']})", spec["max_length"])
    task = raw.get("task")
    if task:
        _check(task, TASK, "task.", path)
        th = task.get("thresholds")
        if th is not None and len(th) != len(ids):
            raise _bad(path, "task.thresholds", f"one threshold per label ({len(ids)})", th)
    for name, spec in raw["variants"].items():
        if not isinstance(spec, dict):
            raise _bad(path, f"variants.{name}", "an object", spec)
        _check(spec, VARIANT, f"variants.{name}.", path)
        if spec.get("status") != FAILED and "file" not in spec:
            raise ManifestError(f"manifest {path}: `variants.{name}.file` is missing (a built variant needs "
                                f"its ONNX file); {FIX}.")
    for device, name in (raw.get("default") or {}).items():
        where = f"default.{device}"
        if name is None:
            continue
        if not _name(name):
            raise _bad(path, where, "a variant name or null", name)
        if name not in raw["variants"]:
            raise _bad(path, where, f"one of the variants ({', '.join(raw['variants'])})", name)
        if raw["variants"][name].get("status") == FAILED:
            raise _bad(path, where, f"a variant that was built; {name!r} failed to build", shown=False)
