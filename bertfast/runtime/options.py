"""Every inference setting, declared once: `RuntimeOptions`.

`Classifier.load(path, options=None, **overrides)`, `bertfast predict` (single process and Ray)
and the benchmark all take this one frozen dataclass. The CLI flags (`add_arguments`, through
`bertfast.flags`) take their help from the docstring's `Attributes:` entries and their choices
from each field's `metadata`, which also holds the lower bound the checks use: a new setting is
one field here (and its docstring entry).

Errors name the Python argument (`long_text must be one of ...`) when the options come from
Python, and the flag (`--long-text must be one of ...`) when they come from the command line
(`from_flags`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import BertfastError
from ..flags import add_arguments as add_flags
from ..flags import choices_of, flag_name, kind, meta

LONG_TEXT = ("truncate", "head-tail", "sliding-window")
# How a text pair over max_length is cut: the Rust tokenizer's strategies (and transformers').
PAIR_TRUNCATION = ("longest_first", "only_second", "only_first")
AGGREGATE = ("mean", "max")
DEFAULT_BATCH_TOKENS = 8192  # when neither the caller nor the export's measurement says


def _device_choices() -> tuple[str, ...]:
    from .providers import DEVICES

    return DEVICES


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
            manifest; not on GPU providers), else 8192 (DEFAULT_BATCH_TOKENS).
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

    device: str = field(default="auto", metadata=meta(choices=_device_choices))
    variant: str | None = None
    threads: int | None = field(default=None, metadata=meta(minimum=1))
    long_text: str | None = field(default=None, metadata=meta(choices=LONG_TEXT))
    stride: int | None = field(default=None, metadata=meta(minimum=0))
    aggregate: str = field(default="mean", metadata=meta(choices=AGGREGATE))
    batch_tokens: int | None = field(default=None, metadata=meta(minimum=1))
    max_batch_size: int = field(default=256, metadata=meta(minimum=1))
    max_length: int | None = field(default=None, metadata=meta(minimum=3))
    allow_spinning: bool = True
    streams: int | None = field(default=None, metadata=meta(minimum=1))
    pair_truncation: str | None = field(default=None, metadata=meta(choices=PAIR_TRUNCATION))

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


def _problem(f, value) -> str | None:
    """What is wrong with `value` for field `f` (None if nothing): one rule for every setting."""
    if value is None and f.default is None:
        return None
    choices, k = choices_of(f), kind(f)
    if choices is not None:
        return None if value in choices else f"must be one of {', '.join(choices)}; got {value!r}."
    if k is bool:
        return None if isinstance(value, bool) else f"must be True or False; got {value!r}."
    if k is int:
        low = f.metadata.get("minimum")
        bad = not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low)
        return f"must be an integer >= {low}; got {value!r}." if bad else None
    if k is str and not isinstance(value, str):
        return f"must be a string; got {type(value).__name__}."
    return None


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, skip: tuple[str, ...] = ()) -> None:
    """One CLI flag per `RuntimeOptions` field, with its help, choices and default (`bertfast.flags`)."""
    add_flags(parser, RuntimeOptions, skip=skip)
