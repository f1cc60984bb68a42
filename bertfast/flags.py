"""CLI flags generated from a config dataclass, so every setting is declared once.

A config's fields are its flags (`model_dir` -> positional `model_dir` when it has no default,
`max_length` -> `--max-length`); the help text is the field's entry in the class docstring's
`Attributes:` section (Google style, one entry per field), and a field's `metadata` (see
`meta`) adds what the type does not say: choices, a lower bound, a positional argument with a
default, a required `--flag`, a short alias, a `--no-` form, or `cli=False`.
As litgpt's `add_function_arguments` does for a function signature.
"""

from __future__ import annotations

import argparse
import inspect
import re
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

_ENTRY = re.compile(r"^(\s+)(\w+)(?: \([^)]*\))?: (.*)$")


def meta(*, choices=None, minimum: int | None = None, positional: bool = False, option: bool = False,
         short: str | None = None, negatable: bool = False, negative_only: bool = False, cli: bool = True,
         metavar: str | None = None) -> dict:
    """Field metadata for `add_arguments`.

    Args:
        choices: allowed values (a tuple, or a zero-argument callable returning one).
        minimum: the lowest allowed int (for the config's own check; argparse has no bound).
        positional: a positional argument even though it has a default (`nargs="?"`).
        option: a required `--flag` even though it has no default (else it is positional).
        short: a one-letter alias of the flag (`-i`).
        negatable: a bool flag with a `--no-` form (default True flags need one).
        negative_only: a default-True bool given only as `--no-<name>` (no `--<name>` form).
        cli: False: a Python-only field (no flag).
        metavar: the value's name in --help.
    """
    return {"choices": choices, "minimum": minimum, "positional": positional, "option": option, "short": short,
            "negatable": negatable, "negative_only": negative_only, "cli": cli, "metavar": metavar}


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


def kind(f) -> type:
    """The scalar type of dataclass field `f` (bool, int, float, else str), from its annotation."""
    t = str(f.type)
    for name, k in (("bool", bool), ("int", int), ("float", float)):
        if re.search(rf"\b{name}\b", t):
            return k
    return str


def choices_of(f) -> tuple | None:
    """The allowed values of field `f` from its metadata (None: any value of its type)."""
    c = f.metadata.get("choices")
    return c() if callable(c) else c


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls, skip: tuple[str, ...] = (),
                  metadata: Mapping[str, dict] | None = None) -> None:
    """One argument per field of dataclass `cls` (see the module docstring).

    `metadata` gives `meta(...)` for fields `cls` inherits from a base class it cannot annotate.
    """
    helps = docstring_help(cls)
    for f in fields(cls):
        m = {**f.metadata, **(metadata or {}).get(f.name, {})}
        if f.name in skip or not m.get("cli", True):
            continue
        if not helps.get(f.name):
            raise TypeError(f"{cls.__name__}.{f.name} has no entry in the docstring's Attributes section")
        _add(parser, f, m, helps[f.name].replace("%", "%%"))  # argparse formats help with %


def _add(parser, f, m: dict, help: str) -> None:
    default = None if f.default is MISSING else f.default
    kw: dict[str, Any] = {"help": help}
    names = [flag_name(f.name), *([m["short"]] if m.get("short") else [])]
    required = f.default is MISSING and f.default_factory is MISSING
    if required and not m.get("option"):
        parser.add_argument(f.name, **kw)
        return
    if m.get("positional"):
        parser.add_argument(f.name, nargs="?", default=default, **kw)
        return
    k, choices = kind(f), choices_of(f)
    if k is bool and m.get("negative_only"):
        parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false", **kw)
        return
    if k is bool:
        action = argparse.BooleanOptionalAction if m.get("negatable") or default else "store_true"
        parser.add_argument(*names, action=action, default=default, **kw)
        return
    if choices is not None:
        kw["choices"] = choices
    elif k is not str:
        kw["type"] = k
    if m.get("metavar"):
        kw["metavar"] = m["metavar"]
    if required:
        kw["required"] = True
    else:
        kw["default"] = default
    parser.add_argument(*names, **kw)


def from_args(cls, args: argparse.Namespace, **extra):
    """An instance of `cls` from parsed arguments (fields without a flag keep their defaults)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names}, **extra)
