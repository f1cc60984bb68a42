"""The typed blocks of `bertfast.json` and the checks a manifest gets on load, each field declared once.

A manifest is data anyone can edit. Every field the runtime relies on is checked here, so a
hand-edited or damaged file fails on load with one line naming the field, instead of a
traceback deep in the runtime or, worse, silently shifted labels.

A field is declared once, with `spec`: its type and default (the dataclass field), what it must
be (the message) and its test. The blocks (`TaskBlock`, `WindowBlock`, `BatchingBlock`,
`MixedBlock`) are frozen dataclasses rebuilt from their JSON objects on load and checked in
`__post_init__`, as optimum's `ORTConfig` does with its `OptimizationConfig`; `Manifest`
(bertfast/manifest.py) declares the top-level fields the same way. The checks are derived from
those declarations (`schema_of`); only rules across fields are written out, in `validate`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from functools import cache
from typing import ClassVar, NamedTuple

from .errors import ManifestError  # noqa: F401  (re-exported: declared with the other error types)
from .runtime.options import PAIR_TRUNCATION
from .tasks import ACTIVATIONS, TASKS

FAILED = "failed"
FIX = "re-run `bertfast export --force`"


# -- tests a value passes ------------------------------------------------------------------


def of_type(*types) -> Callable:
    """isinstance, except that true/false is no number (JSON keeps them apart, Python does not)."""
    return lambda v: isinstance(v, types) and (bool in types or not isinstance(v, bool))


is_int, is_str, is_dict, is_bool, is_list = of_type(int), of_type(str), of_type(dict), of_type(bool), of_type(list)


def at_least(low: int) -> Callable:
    return lambda v: is_int(v) and v >= low


def optional(test: Callable) -> Callable:
    return lambda v: v is None or test(v)


def one_of(choices) -> Callable:
    return lambda v: isinstance(v, str) and v in choices


def is_name(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def is_number(v) -> bool:
    return of_type(int, float)(v) and math.isfinite(v)


def is_names(v) -> bool:
    return isinstance(v, list) and all(is_name(x) for x in v)


# -- declaring a field once ----------------------------------------------------------------


class Rule(NamedTuple):
    """How one field is checked: `each` checks list items, named `field[i]` in the message."""

    required: bool
    what: str
    test: Callable
    each: tuple[str, Callable] | None = None


Schema = dict[str, Rule]


def spec(what: str, test: Callable, default=MISSING, *, factory=MISSING, required: bool | None = None,
         each: tuple[str, Callable] | None = None, null_written: bool = False):
    """A dataclass field of the manifest, with what it must be and its test.

    Args:
        what: the message's "must be ...".
        test: value -> bool.
        default, factory: as in `dataclasses.field`; a field without either is required.
        required: required on load although it has a default (`format`).
        each: (what, test) for every item of a list.
        null_written: write `null` for None (default: leave the key out, as exports before the
            field existed did).
    """
    needed = default is MISSING and factory is MISSING if required is None else required
    meta = {"rule": Rule(needed, what, test, each), "null_written": null_written}
    return field(default=default, default_factory=factory, metadata=meta)


@cache
def schema_of(cls) -> Schema:
    """The checks of a dataclass's declared fields (those made with `spec`)."""
    return {f.name: f.metadata["rule"] for f in fields(cls) if "rule" in f.metadata}


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


def _at(path) -> str:
    return f"manifest {path}" if path is not None else "manifest"


def bad(path, where: str, what: str, value=None, shown: bool = True) -> ManifestError:
    """The one-line error for field `where`: what it must be, what it holds, how to fix it."""
    got = f", got {_show(value)}" if shown else ""
    return ManifestError(f"{_at(path)}: `{where}` must be {what}{got}; {FIX}.")


def missing(path, where: str, what: str) -> ManifestError:
    return ManifestError(f"{_at(path)}: `{where}` is missing (it must be {what}); {FIX}.")


def check_fields(obj: dict, schema: Schema, prefix: str, path) -> None:
    """Check the fields of `obj` that `schema` lists; others are kept as they are (a newer
    bertfast's fields still load), listed ones must have their type, because a "128" or a list
    where an object belongs surfaces later as a traceback or as silently wrong labels."""
    for key, rule in schema.items():
        where = prefix + key
        if key not in obj:
            if rule.required:
                raise missing(path, where, rule.what)
            continue
        value = obj[key]
        if not rule.test(value):
            raise bad(path, where, rule.what, value)
        if rule.each is not None and value is not None:
            for i, item in enumerate(value):
                if not rule.each[1](item):
                    raise bad(path, f"{where}[{i}]", rule.each[0], item)


# -- the blocks ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class Block(Mapping):
    """A typed manifest block: rebuilt from its JSON object by `from_dict`, checked in
    `__post_init__`, written back by `to_dict`; frozen (change one with `replace`).

    It also reads as the JSON object it is written as (a read-only Mapping), so code that
    reads `m.task["primary_metric"]` or `(m.window or {}).get("cpu")` keeps working.
    `extra` keeps fields this version does not know; `at` is (field name, manifest path), for messages.
    """

    KEY: ClassVar[str] = ""
    extra: dict = field(default_factory=dict, repr=False)
    at: tuple = field(default=("", None), repr=False)

    def __post_init__(self):
        where, path = self.where
        check_fields({k: getattr(self, k) for k in schema_of(type(self))}, schema_of(type(self)), where + ".", path)

    @property
    def where(self) -> tuple:
        return self.at if self.at[0] else (self.KEY, self.at[1])

    @classmethod
    def from_dict(cls, obj, where: str | None = None, path=None):
        """The block of JSON object `obj` (a block passes through), checked; unknown keys go to `extra`."""
        if isinstance(obj, cls):
            return obj
        where = where or cls.KEY
        if not isinstance(obj, dict):
            raise bad(path, where, f"an object {{{', '.join(schema_of(cls))}}}", obj)
        schema = schema_of(cls)
        for key, rule in schema.items():
            if rule.required and key not in obj:
                raise missing(path, f"{where}.{key}", rule.what)
        return cls(**{k: v for k, v in obj.items() if k in schema},
                   extra={k: v for k, v in obj.items() if k not in schema}, at=(where, path))

    def to_dict(self) -> dict:
        """The JSON object, in field order; None fields are left out unless declared `null_written`."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if "rule" in f.metadata and (value is not None or f.metadata["null_written"]):
                out[f.name] = value
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    def replace(self, **changes) -> Block:
        """A copy with `changes`, checked like the original."""
        return replace(self, **changes)

    def __getitem__(self, key):
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


RANGE = "a number between 0 and 1, exclusive (0 gives every row the label, 1 none)"


@dataclass(frozen=True, kw_only=True, eq=False)
class TaskBlock(Block):
    """`task`: what the model solves and how its scores become decisions (absent: single_label)."""

    KEY: ClassVar[str] = "task"
    name: str = spec(f"one of {', '.join(TASKS)}", one_of(TASKS))
    pair: bool = spec("true or false", is_bool, False)  # classifies text pairs ([a, b])
    activation: str | None = spec(f"one of {', '.join(ACTIVATIONS)} or null", optional(one_of(ACTIVATIONS)),
                                  None)  # None: the task's own
    # Per-label decision thresholds of a multi-label export (null: 0.5 each).
    thresholds: list[float] | None = spec("a list of numbers (one per label) or null", optional(is_list), None,
                                          each=(RANGE, lambda v: is_number(v) and 0 < v < 1), null_written=True)
    pair_truncation: str = spec(", ".join(PAIR_TRUNCATION), one_of(PAIR_TRUNCATION), "longest_first")
    primary_metric: str | None = spec("a metric name or null", optional(is_name), None)  # what the gate bounds
    min_agreement: float | None = spec("a number between 0 and 100 or null",
                                       optional(lambda v: is_number(v) and 0 <= v <= 100), None)
    label_mapping: str | None = spec("a string or null", optional(is_str), None)  # only when integers were mapped
    positive_label: str | None = spec("a label name or null", optional(is_name), None)  # two-class reranker: relevant


@dataclass(frozen=True, kw_only=True, eq=False)
class WindowBlock(Block):
    """`window.<provider>`: the window the export's search chose, with the variant it was chosen for."""

    KEY: ClassVar[str] = "window.<provider>"
    variant: str = spec("a variant name", is_name)
    max_length: int = spec("an integer >= 3", at_least(3))
    long_text: str = spec("truncate or head-tail", one_of(("truncate", "head-tail")))


@dataclass(frozen=True, kw_only=True, eq=False)
class BatchingBlock(Block):
    """`batching.<provider>`: the token budget per batch the export measured fastest for `variant`."""

    KEY: ClassVar[str] = "batching.<provider>"
    batch_tokens: int | None = spec("an integer >= 1 or null", optional(at_least(1)), None)
    variant: str | None = spec("a variant name or null", optional(is_name), None)
    device: str | None = spec("a provider name or null", optional(is_name), None)
    seq_per_s: dict | None = spec('an object {"<budget>": rate} or null', optional(is_dict), None)
    texts: int | None = spec("an integer >= 0 or null", optional(at_least(0)), None)  # texts timed


@dataclass(frozen=True, kw_only=True, eq=False)
class MixedBlock(Block):
    """`variants.<name>.mixed`: how exporter/mixed.py chose the layers kept in fp32."""

    KEY: ClassVar[str] = "variants.<name>.mixed"
    base: dict | None = spec("an object or null", optional(is_dict), None)  # the int8 settings started from
    sample: int | None = spec("an integer >= 0 or null", optional(at_least(0)), None)  # inputs per sensitivity build
    base_agreement: float | None = spec("a number or null", optional(is_number), None)
    base_mean_abs_diff: float | None = spec("a number or null", optional(is_number), None)
    sensitivity: dict | None = spec('an object {"<layer>": {...}} or null', optional(is_dict), None)
    steps: list | None = spec("a list of objects or null", optional(is_list), None,
                              each=("an object", is_dict))  # the greedy's candidates, in order
    kept_fp32: list[int] | None = spec("a list of layer numbers or null", optional(is_list), None,
                                       each=("a layer number (an integer >= 0)", at_least(0)))
    layers: int | None = spec("an integer >= 0 or null", optional(at_least(0)), None)


def per_provider(cls, value, key: str, path=None) -> dict | None:
    """`{provider: block}` of a `window` or `batching` object (null stays None)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad(path, key, f"an object {{provider: {{{', '.join(schema_of(cls))}}}}} or null", value)
    return {p: cls.from_dict(v, f"{key}.{p}", path) for p, v in value.items()}


def to_json(value):
    """`value` with every block turned into its JSON object (blocks may sit inside dicts)."""
    if isinstance(value, Block):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


# -- the parts that are not blocks, and the rules across fields --------------------------

FILE = "a file name inside the export folder"
TOKENIZER: Schema = {
    "file": Rule(True, FILE, is_name),
    "pad_token_id": Rule(False, "an integer >= 0", at_least(0)),
    "lowercase": Rule(False, "true or false", is_bool),
}
VARIANT: Schema = {
    "status": Rule(False, '"ok" or "failed"', lambda v: v in ("ok", FAILED)),
    "file": Rule(False, FILE, is_name),
    "precision": Rule(False, "a string", is_str),
    "devices": Rule(False, "a list of provider names", is_names),
    "eligible": Rule(False, "true or false", is_bool),
    "reason": Rule(False, "a string", is_str),
    "validation": Rule(False, "an object or null", optional(is_dict)),
    "speed": Rule(False, "an object or null", optional(is_dict)),
}
EVAL_DATA: Schema = {"file": Rule(False, FILE, is_name), "rows": Rule(False, "an integer >= 0", at_least(0))}


class Blocks(NamedTuple):
    """The typed blocks of a checked manifest (`mixed`: per variant name)."""

    task: TaskBlock | None
    window: dict | None
    batching: dict | None
    mixed: dict


def validate(raw, path, top: Schema) -> Blocks:
    """Check a parsed `bertfast.json`: the top-level fields against `top` (the `Manifest`
    dataclass's), each block against its dataclass, then the rules across fields.

    Returns:
        The blocks, typed.

    Raises:
        ManifestError: naming the first bad field, what it must be and what it holds.
    """
    if not isinstance(raw, dict):
        raise ManifestError(f"{_at(path)}: must be a JSON object, got {_kind(raw)}; {FIX}.")
    check_fields(raw, top, "", path)
    ids = _check_id2label(raw["id2label"], path)
    mml = raw.get("model_max_length")
    if mml is not None and raw["max_length"] > mml:
        raise bad(path, "max_length", f"at most model_max_length ({mml})", raw["max_length"])
    check_fields(raw.get("tokenizer", {"file": "tokenizer.json"}), TOKENIZER, "tokenizer.", path)
    if raw.get("eval_data"):
        check_fields(raw["eval_data"], EVAL_DATA, "eval_data.", path)
    batching = per_provider(BatchingBlock, raw.get("batching"), "batching", path)
    window = per_provider(WindowBlock, raw.get("window"), "window", path)
    for device, w in (window or {}).items():
        if w.max_length > raw["max_length"]:
            raise bad(path, f"window.{device}.max_length", f"at most max_length ({raw['max_length']})", w.max_length)
    task = TaskBlock.from_dict(raw["task"], "task", path) if raw.get("task") else None
    if task is not None and task.thresholds is not None and len(task.thresholds) != len(ids):
        raise bad(path, "task.thresholds", f"one threshold per label ({len(ids)})", task.thresholds)
    if task is not None and task.positive_label is not None and task.positive_label not in ids.values():
        raise bad(path, "task.positive_label", f"one of the labels ({', '.join(ids.values())})", task.positive_label)
    return Blocks(task, window, batching, _check_variants(raw, path))


def _check_id2label(ids: dict, path) -> dict:
    if not ids:
        raise bad(path, "id2label", "a non-empty object (one label per class)", ids)
    if set(ids) != {str(i) for i in range(len(ids))}:
        raise bad(path, "id2label", f'keyed "0".."{len(ids) - 1}" (one key per class id)', sorted(ids))
    for k, label in ids.items():
        if not is_name(label):
            raise bad(path, f"id2label.{k}", "a label name (non-empty string)", label)
    if len(set(ids.values())) != len(ids):
        dup = next(x for x in ids.values() if list(ids.values()).count(x) > 1)
        raise bad(path, "id2label", f"distinct label names ({dup!r} appears twice)", shown=False)
    return ids


def _check_variants(raw: dict, path) -> dict:
    """Check each variant entry and `default`; returns the variants' `mixed` blocks."""
    mixed = {}
    for name, entry in raw["variants"].items():
        if not isinstance(entry, dict):
            raise bad(path, f"variants.{name}", "an object", entry)
        check_fields(entry, VARIANT, f"variants.{name}.", path)
        if entry.get("status") != FAILED and "file" not in entry:
            raise ManifestError(f"{_at(path)}: `variants.{name}.file` is missing (a built variant needs "
                                f"its ONNX file); {FIX}.")
        if entry.get("mixed") is not None:
            mixed[name] = MixedBlock.from_dict(entry["mixed"], f"variants.{name}.mixed", path)
    for device, name in (raw.get("default") or {}).items():
        where = f"default.{device}"
        if name is None:
            continue
        if not is_name(name):
            raise bad(path, where, "a variant name or null", name)
        if name not in raw["variants"]:
            raise bad(path, where, f"one of the variants ({', '.join(raw['variants'])})", name)
        if raw["variants"][name].get("status") == FAILED:
            raise bad(path, where, f"a variant that was built; {name!r} failed to build", shown=False)
    return mixed
