"""Labels as users keep them, turned into one task's labels (see `bertfast.tasks`).

- single_label: a string (or an integer id) per row -> str.
- multi_label: a list per row (JSONL/Parquet), or a string split by `--label-separator`
  (CSV/TSV: "sport|politics") -> list[str] (an empty list means "no label applies").
- regression: a finite number per row (numeric strings from CSV too) -> float.

The task is the caller's (`--task`), else inferred from the values: lists (or a separator) ->
multi_label; numbers with any non-integer value -> regression; else single_label (fractional
numbers next to words, "0.73" and "n/a", are refused rather than read as class names, and so is
a column of numbers written with a decimal comma, "0,5" and "2,25" from a German or French
spreadsheet: scores or class names, only `--task` can say; regression reads them as 0.5, 2.25).
Every refusal is one line naming the data row (1-based, header not counted) or the flag, and
what to do.
"""

from __future__ import annotations

import math
import re

from ..errors import DataError
from ..tasks import TASK_NAMES

_BREAKS = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # tab + what str.splitlines splits on
# One comma between digits: "0,5", "-2,25". Not "1,000,000", and not "a,b" (label lists).
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")


def _missing(y) -> bool:
    return y is None or (isinstance(y, float) and y != y) or (isinstance(y, str) and not y.strip())


def _number(y) -> float | None:
    """y as a float if it is a number or a numeric string, else None."""
    if isinstance(y, bool):
        return None
    if isinstance(y, (int, float)):
        return float(y)
    if isinstance(y, str):
        try:
            return float(y.strip())
        except ValueError:
            return None
    return None


def _comma_number(y) -> float | None:
    """y as a float when it is a string written with a decimal comma ("0,5" -> 0.5), else None."""
    if isinstance(y, str) and _DECIMAL_COMMA.fullmatch(y.strip()):
        return float(y.strip().replace(",", "."))
    return None


def _decimal_commas(raw: list) -> bool:
    """Whether the column writes its fractions with a decimal comma: some value does, and no
    string value uses a decimal point (with both, "1,5" could be a thousands separator)."""
    strings = [y.strip() for y in raw if isinstance(y, str)]
    return any(_comma_number(y) is not None for y in strings) and not any("." in y for y in strings)


def _name(y, where: str, row: int) -> str:
    if isinstance(y, float) and y.is_integer():
        y = int(y)
    s = str(y).strip()
    if any(c in s for c in _BREAKS):
        raise DataError(
            f"{where}: label in data row {row + 1} ({s[:40]!r}) holds a tab or line break, which would break "
            "line-based outputs; fix that label (a stray quote in a CSV can merge rows into one)."
        )
    return s


def infer(raw: list, separator: str | None) -> str:
    """The task the raw label values imply (see the module docstring)."""
    if separator is not None or any(isinstance(y, (list, tuple)) for y in raw):
        return "multi_label"
    present = [y for y in raw if not _missing(y)]
    nums = [_number(y) for y in present]
    if present and all(n is not None for n in nums) and any(not math.isfinite(n) or not n.is_integer() for n in nums):
        return "regression"
    return "single_label"


def coerce(raw: list, where: str, task: str | None = None, separator: str | None = None) -> tuple[str, list]:
    """(task, labels): the raw label values of a file checked and converted for the task."""
    if task is not None and task not in TASK_NAMES:
        raise DataError(f"--task must be one of {', '.join(TASK_NAMES)}; got {task!r}.")
    check_separator(separator, task)
    if task is None:
        task = infer(raw, separator)
        if task == "single_label":
            _refuse_scores_with_names(raw, where)
            _refuse_decimal_commas(raw, where)
    _refuse_mixed(raw, where, task, separator)
    if task == "multi_label":
        return task, [_labels_list(y, where, i, separator) for i, y in enumerate(raw)]
    out = []
    commas = None  # decided on the first value float() cannot read
    for i, y in enumerate(raw):
        if _missing(y):
            raise DataError(f"{where}: label in data row {i + 1} is missing; every row needs a label.")
        if task == "regression":
            n = _number(y)
            if n is None and commas is None:
                commas = _decimal_commas(raw)
            if n is None and commas:
                n = _comma_number(y)
            if n is None:
                raise DataError(
                    f"{where}: label in data row {i + 1} is {str(y)[:40]!r}, not a number; a regression task needs "
                    "a number in every row (or pass --task single_label for class names)."
                )
            if not math.isfinite(n):
                raise DataError(f"{where}: label in data row {i + 1} is {n}; regression labels must be finite numbers.")
            out.append(n)
        else:
            out.append(_name(y, where, i))
    return task, out


def check_separator(separator: str | None, task: str | None) -> None:
    """--label-separator splits strings into label lists: only a multi-label task has those."""
    if separator is None:
        return
    if not isinstance(separator, str) or not separator:
        raise DataError(f"--label-separator must be a non-empty string such as '|'; got {separator!r}.")
    if any(c in separator for c in _BREAKS):
        raise DataError(f"--label-separator {separator!r} holds a tab or line break; use a character such as '|'.")
    if task is not None and task != "multi_label":
        raise DataError(
            f"--label-separator splits labels into multi-label lists, but --task is {task}; drop --label-separator "
            "(or pass --task multi_label)."
        )


def _labels_list(y, where: str, i: int, separator: str | None) -> list[str]:
    if y is None or (isinstance(y, float) and y != y):
        if separator is not None:
            return []  # an empty CSV field: no label applies
        raise DataError(
            f"{where}: label in data row {i + 1} is missing; a multi-label row needs a list of labels ([] for none)."
        )
    if isinstance(y, str):
        if separator is None:
            raise DataError(
                f"{where}: label in data row {i + 1} is a string ({y[:30]!r}), not a list; a multi-label task needs a "
                "list in every row, or pass --label-separator to split strings such as 'sport|politics'."
            )
        y = [p for p in y.split(separator)]
    if not isinstance(y, (list, tuple)):
        raise DataError(f"{where}: label in data row {i + 1} is {type(y).__name__}; a multi-label row needs a list.")
    out = []
    for y1 in y:
        if _missing(y1):
            raise DataError(f"{where}: label list in data row {i + 1} holds an empty or null label; remove it.")
        out.append(_name(y1, where, i))
    return sorted(set(out))


def _refuse_mixed(raw: list, where: str, task: str, separator: str | None) -> None:
    """Labels of different kinds in one file (a list and a string; a number and a class name in
    a typed file) are an error, not a guess."""
    first: dict[str, int] = {}
    for i, y in enumerate(raw):
        if _missing(y):
            continue
        kind = ("list" if isinstance(y, (list, tuple)) else "number" if isinstance(y, (int, float))
                and not isinstance(y, bool) else "string")
        first.setdefault(kind, i)
    if task == "multi_label" and separator is None and "list" in first and len(first) > 1:
        other = min(v for k, v in first.items() if k != "list")
        raise DataError(
            f"{where}: labels mix lists (data row {first['list'] + 1}) and single values (data row {other + 1}); "
            "a multi-label file needs a list in every row (or --label-separator for delimited strings)."
        )
    if "number" in first and "string" in first and task != "multi_label":
        s = first["string"]
        if _number(raw[s]) is None:
            raise DataError(
                f"{where}: labels mix numbers (data row {first['number'] + 1}) and strings (data row {s + 1}, "
                f"{str(raw[s])[:30]!r}); use one kind of label in the whole file."
            )


def _refuse_scores_with_names(raw: list, where: str) -> None:
    """Fractional numbers next to non-numbers ("0.73" and "n/a" in a CSV) are scores with a stray
    value, not hundreds of class names: refuse to guess (--task single_label reads them as names)."""
    frac = word = None
    for i, y in enumerate(raw):
        if _missing(y) or isinstance(y, (list, tuple)):
            continue
        n = _number(y)
        if n is None:
            word = i if word is None else word
        elif not n.is_integer() and frac is None:
            frac = i
        if frac is not None and word is not None:
            raise DataError(
                f"{where}: labels mix scores (data row {frac + 1}: {str(raw[frac])[:20]!r}) and non-numbers (data row "
                f"{word + 1}: {str(raw[word])[:30]!r}); fix that row, or pass --task single_label to read every label "
                "as a class name."
            )


def _refuse_decimal_commas(raw: list, where: str) -> None:
    """Every label a number, some with a decimal comma ("0,5", "1,5", "3"): a spreadsheet's scores
    exported with a German or French locale, which would otherwise train as one class per
    distinct value. Refuse to guess; the message names both ways to say what they are."""
    present = [(i, y) for i, y in enumerate(raw) if not _missing(y)]
    if not present or not _decimal_commas(raw):
        return
    if all(_number(y) is not None or _comma_number(y) is not None for _, y in present):
        i, y = next((i, y) for i, y in present if _comma_number(y) is not None)
        raise DataError(
            f"{where}: every label is a number and some have a decimal comma (data row {i + 1}: {y.strip()!r}); "
            f"pass --task regression to read them as scores ({_comma_number(y):g}), or --task single_label to keep "
            "them as class names."
        )


def label_set(task: str, labels: list) -> list[str]:
    """Class names in class-id order: integers sort numerically ("2" < "10"), others by name."""
    if task == "regression":
        return ["score"]
    uniq = {y for ys in labels for y in ys} if task == "multi_label" else set(labels)
    try:
        return sorted(uniq, key=int)
    except ValueError:
        return sorted(uniq)


def stratum(task: str, labels: list) -> list:
    """A key per row for stratified splits: the class; the label set; a quintile of the score."""
    if task == "multi_label":
        return ["|".join(ys) for ys in labels]
    if task == "regression":
        import numpy as np

        edges = np.quantile(np.asarray(labels, dtype=float), [0.2, 0.4, 0.6, 0.8])
        return [int(np.searchsorted(edges, y, side="right")) for y in labels]
    return list(labels)
