"""Every inference setting, declared once: `RuntimeOptions`.

`Classifier.load(path, options=None, **overrides)`, `bertfast predict` (single process and Ray)
and the benchmark all take this one frozen dataclass. Each field carries its own help text,
choices and lower bound in `metadata`, so the CLI flags (`add_arguments`), their `--help` and
the checks are generated from it: a new setting is one field here.

Errors name the Python argument (`long_text must be one of ...`) when the options come from
Python, and the flag (`--long-text must be one of ...`) when they come from the command line
(`from_flags`).
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from ..errors import BertfastError

LONG_TEXT = ("truncate", "head-tail", "sliding-window")
# How a text pair over max_length is cut: the Rust tokenizer's strategies (and transformers').
PAIR_TRUNCATION = ("longest_first", "only_second", "only_first")
AGGREGATE = ("mean", "max")
DEFAULT_BATCH_TOKENS = 8192  # when neither the caller nor the export's measurement says


def _device_choices() -> tuple[str, ...]:
    from .providers import DEVICES

    return DEVICES


def _opt(help: str, *, choices=None, minimum: int | None = None, kind: type = int, cli: bool = True) -> dict:
    """Field metadata: help text, allowed values (a tuple or a zero-argument callable), lower bound."""
    return {"help": help, "choices": choices, "minimum": minimum, "kind": kind, "cli": cli}


@dataclass(frozen=True)
class RuntimeOptions:
    """How an export runs. Every field is a `Classifier.load` keyword and a CLI flag.

    Attributes:
        device: an execution provider from the table in `runtime/providers.py` (cpu, cuda,
            tensorrt) or "auto": each GPU provider of `auto_order()` (CUDA) that really works
            with a variant made for it, else the CPU; every fallback is logged. A GPU provider
            asked for by name never falls back: it is an error naming the likely cause.
        variant: export variant (e.g. "int8-dynamic-pc"); default: the export's default for
            the device.
        threads: CPU intra-op threads; default: the CPUs this process may use (container quota
            and affinity), not the host's core count.
        long_text: texts over `max_length` tokens: "truncate" (keep the start), "head-tail"
            (first ~1/4 and last ~3/4 of the budget) or "sliding-window" (classify overlapping
            windows, aggregate logits). Default: the window the export's search chose with its
            default variant (manifest `window`: a shorter max_length, truncate or head-tail)
            when the caller sets neither `long_text` nor `max_length`, else "truncate".
        stride: token overlap between sliding windows; default max_length // 4.
        aggregate: how window logits combine into one per text: "mean" or "max".
        batch_tokens: padded tokens per batch (batch size x longest window in the batch);
            default: what the export measured fastest for its CPU default (`batching` in the
            manifest; not on GPU providers), else DEFAULT_BATCH_TOKENS.
        max_batch_size: most windows per batch, whatever their length.
        max_length: tokens per window incl. special tokens; default: the window the export
            chose for the loaded variant (see long_text), else the export's max_length.
        allow_spinning: let ONNX Runtime threads spin between ops (lower latency; turn off when
            the cores are shared with other busy work).
        streams: batches run concurrently, each on threads // streams intra-op threads (CPU
            only; a GPU runs one stream). With 2+ streams the cores work on different batches
            instead of splitting every matrix multiply and meeting at a barrier after each op,
            which wins throughput when there are several batches and keeps working when another
            process steals a core. Batch-1 latency is unaffected (one batch = one stream).
            Default (None): 1; `bertfast serve` runs one stream while calls come one at a
            time (lowest latency) and two single-threaded ones while calls overlap.
        pair_truncation: for pair exports, how a pair over `max_length` is cut:
            "longest_first" (tokens come off the longer text first, as transformers trains
            pairs), "only_second" or "only_first"; default: the export's. With
            long_text="sliding-window" the first text is kept (up to half the window) and the
            second is windowed.
    """

    device: str = field(default="auto", metadata=_opt(
        "execution provider, or auto: a GPU provider if it really works, else CPU (logged)",
        choices=_device_choices, kind=str))
    variant: str | None = field(default=None, metadata=_opt(
        "export variant (e.g. int8-dynamic-pc, fp16); default: the export's default for the device", kind=str))
    threads: int | None = field(default=None, metadata=_opt(
        "CPU threads; default: the CPUs this process may use", minimum=1))
    long_text: str | None = field(default=None, metadata=_opt(
        "texts over --max-length tokens: keep the start, the head+tail, or classify sliding windows; "
        "default: the window the export chose (see --max-length), else truncate",
        choices=LONG_TEXT, kind=str))
    stride: int | None = field(default=None, metadata=_opt(
        "token overlap between sliding windows (default max_length // 4)", minimum=0))
    aggregate: str = field(default="mean", metadata=_opt(
        "combine sliding-window logits by mean or max", choices=AGGREGATE, kind=str))
    batch_tokens: int | None = field(default=None, metadata=_opt(
        "padded tokens per batch (batches are cut by this budget); default: the budget the export "
        f"measured fastest on its machine, else {DEFAULT_BATCH_TOKENS}", minimum=1))
    max_batch_size: int = field(default=256, metadata=_opt("most texts per batch", minimum=1))
    max_length: int | None = field(default=None, metadata=_opt(
        "tokens per window; default: the window the export's search chose for its default variant "
        "(unless --long-text is set), else the export's max_length", minimum=3))
    allow_spinning: bool = field(default=True, metadata=_opt(
        "let ONNX Runtime threads spin between ops (lower latency, more CPU)", kind=bool))
    streams: int | None = field(default=None, metadata=_opt(
        "batches run concurrently on the CPU, each on threads // streams threads; default 1 "
        "(bertfast serve: adapts between 1 and 2 to its load)", minimum=1))
    pair_truncation: str | None = field(default=None, metadata=_opt(
        "text pairs over --max-length: cut the longer text first, only the second or only the first; "
        "default: as the export was trained and validated", choices=PAIR_TRUNCATION, kind=str))

    def __post_init__(self) -> None:
        for f in fields(self):
            problem = _problem(f, getattr(self, f.name))
            if problem:
                raise OptionError(f.name, problem)

    def replace(self, **overrides: Any) -> RuntimeOptions:
        """A copy with some settings changed (checked like the original)."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise BertfastError(
                f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(f.name for f in fields(self))}."
            )
        return replace(self, **overrides)

    @classmethod
    def from_flags(cls, **values: Any) -> RuntimeOptions:
        """Build from CLI-named values (None = not given); errors name the `--flag`."""
        names = {f.name for f in fields(cls)}
        given = {k: v for k, v in values.items() if k in names and v is not None}
        try:
            return cls(**given)
        except OptionError as e:
            raise BertfastError(e.message(flag=True)) from None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> RuntimeOptions:
        """The options among parsed CLI flags (see `add_arguments`)."""
        return cls.from_flags(**vars(args))


class OptionError(BertfastError):
    """A bad value for one option; `message(flag=True)` names it as the CLI flag."""

    def __init__(self, name: str, problem: str):
        self.name, self.problem = name, problem
        super().__init__(self.message())

    def message(self, flag: bool = False) -> str:
        return f"{flag_name(self.name) if flag else self.name} {self.problem}"


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _choices(f) -> tuple | None:
    c = f.metadata.get("choices")
    return c() if callable(c) else c


def _problem(f, value) -> str | None:
    """What is wrong with `value` for field `f` (None if nothing): one rule for every setting."""
    if value is None and f.default is None:
        return None
    meta, choices = f.metadata, _choices(f)
    if choices is not None:
        return None if value in choices else f"must be one of {', '.join(choices)}; got {value!r}."
    if meta.get("kind") is bool:
        return None if isinstance(value, bool) else f"must be True or False; got {value!r}."
    if meta.get("kind") is int:
        low = meta.get("minimum")
        bad = not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low)
        return f"must be an integer >= {low}; got {value!r}." if bad else None
    if meta.get("kind") is str and not isinstance(value, str):
        return f"must be a string; got {type(value).__name__}."
    return None


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, skip: tuple[str, ...] = ()) -> None:
    """One CLI flag per `RuntimeOptions` field, with its help, choices and default."""
    for f in fields(RuntimeOptions):
        meta = f.metadata
        if f.name in skip or not meta.get("cli", True):
            continue
        default = None if f.default is MISSING else f.default
        if meta.get("kind") is bool:
            parser.add_argument(flag_name(f.name), action=argparse.BooleanOptionalAction, default=default,
                                help=meta["help"])
            continue
        kwargs: dict[str, Any] = {"default": default, "help": meta["help"]}
        choices = _choices(f)
        if choices is not None:
            kwargs["choices"] = choices
        elif meta.get("kind") is int:
            kwargs["type"] = int
        parser.add_argument(flag_name(f.name), **kwargs)


def option_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(RuntimeOptions))


def option_keywords(cls):
    """Class decorator for the predict configs: fold `RuntimeOptions` keywords into `options`.

    `PredictConfig(export, input, output, device="cpu", threads=2)` keeps working: the values
    are checked by `RuntimeOptions.from_flags` (errors name the `--flag`); `cfg.device` reads
    `cfg.options.device`.
    """
    init, names = cls.__init__, frozenset(option_names())

    @functools.wraps(init)
    def __init__(self, *args, **kw):
        popped = {k: kw.pop(k) for k in list(kw) if k in names}
        given = {k: v for k, v in popped.items() if v is not None}  # None: not given, as on the CLI
        if popped:
            base = kw.get("options")
            kw["options"] = RuntimeOptions.from_flags(**{**(asdict(base) if base else {}), **given})
        init(self, *args, **kw)

    def __getattr__(self, name):
        # Only called for attributes not found normally: the old flat option attributes.
        if name in names and "options" in self.__dict__:
            return getattr(self.options, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    cls.__init__, cls.__getattr__ = __init__, __getattr__
    return cls
