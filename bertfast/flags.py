"""CLI flags generated from a config dataclass, so every setting is declared once.

A config's fields are its flags (`model_dir` -> positional `model_dir` when it has no default,
`max_length` -> `--max-length`); the help text is the field's entry in the class docstring's
`Attributes:` section (Google style), and a field's `metadata` (see `meta`) adds what the type
does not say: choices, a positional argument with a default, a `--no-` form, or `cli=False`.
As litgpt's `add_function_arguments` does for a function signature.
"""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import MISSING, fields
from typing import Any

_ENTRY = re.compile(r"^(\s+)(\w+)(?: \([^)]*\))?: (.*)$")


def meta(*, choices=None, positional: bool = False, negatable: bool = False, cli: bool = True,
         metavar: str | None = None) -> dict:
    """Field metadata for `add_arguments`.

    Args:
        choices: allowed values (a tuple, or a zero-argument callable returning one).
        positional: a positional argument even though it has a default (`nargs="?"`).
        negatable: a bool flag with a `--no-` form (default True flags need one).
        cli: False: a Python-only field (no flag).
        metavar: the value's name in --help.
    """
    return {"choices": choices, "positional": positional, "negatable": negatable, "cli": cli, "metavar": metavar}


def docstring_help(cls) -> dict[str, str]:
    """Field name -> its `Attributes:` entry in `cls`'s docstring, joined onto one line."""
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    in_attrs, current, indent = False, None, None
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            in_attrs = True
            continue
        if not in_attrs:
            continue
        if line and not line.startswith(" "):  # the next section
            break
        m = _ENTRY.match(line)
        if m and (indent is None or len(m.group(1)) == indent):
            indent, current = len(m.group(1)), m.group(2)
            out[current] = m.group(3).strip()
        elif current and line.strip():
            out[current] += " " + line.strip()
    return out


def _kind(f) -> type:
    t = str(f.type)
    for name, kind in (("bool", bool), ("int", int), ("float", float)):
        if re.search(rf"\b{name}\b", t):
            return kind
    return str


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls, skip: tuple[str, ...] = ()) -> None:
    """One argument per field of dataclass `cls` (see the module docstring)."""
    helps = docstring_help(cls)
    for f in fields(cls):
        m = f.metadata
        if f.name in skip or not m.get("cli", True):
            continue
        if f.name not in helps:
            raise TypeError(f"{cls.__name__}.{f.name} has no entry in the docstring's Attributes section")
        default = None if f.default is MISSING else f.default
        kw: dict[str, Any] = {"help": helps[f.name]}
        choices = m.get("choices")
        if callable(choices):
            choices = choices()
        kind = _kind(f)
        if f.default is MISSING and f.default_factory is MISSING:
            parser.add_argument(f.name, **kw)
            continue
        if m.get("positional"):
            parser.add_argument(f.name, nargs="?", default=default, **kw)
            continue
        if kind is bool:
            action = argparse.BooleanOptionalAction if m.get("negatable") or default else "store_true"
            parser.add_argument(flag_name(f.name), action=action, default=default, **kw)
            continue
        if choices is not None:
            kw["choices"] = choices
        elif kind is not str:
            kw["type"] = kind
        if m.get("metavar"):
            kw["metavar"] = m["metavar"]
        parser.add_argument(flag_name(f.name), default=default, **kw)


def from_args(cls, args: argparse.Namespace, **extra):
    """An instance of `cls` from parsed arguments (fields without a flag keep their defaults)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names}, **extra)
