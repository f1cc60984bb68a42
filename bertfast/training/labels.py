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

from .. import tasks
from ..errors import DataError
from ..tasks.values import BREAKS, comma_number, decimal_commas
from ..tasks.values import missing as _missing
from ..tasks.values import number as _number


def infer(raw: list, separator: str | None) -> tasks.Task:
    """The task the raw label values imply (see the module docstring)."""
    if separator is not None or any(isinstance(y, (list, tuple)) for y in raw):
        return tasks.get("multi_label")
    present = [y for y in raw if not _missing(y)]
    nums = [_number(y) for y in present]
    if present and all(n is not None for n in nums) and any(not math.isfinite(n) or not n.is_integer() for n in nums):
        return tasks.get("regression")
    return tasks.get("single_label")


def coerce(raw: list, where: str, task: str | None = None, separator: str | None = None) -> tuple[str, list]:
    """(task name, labels): the raw label values of a file checked and converted for the task
    (`--task`, else inferred from the values)."""
    if task is not None and task not in tasks.TASKS:
        raise DataError(f"--task must be one of {', '.join(tasks.TASK_NAMES)}; got {task!r}.")
    t = tasks.get(task) if task is not None else None
    check_separator(separator, t)
    if t is None:
        t = infer(raw, separator)
        if t.has_classes and not t.label_lists:  # inferred as class names: refuse what is really scores
            _refuse_scores_with_names(raw, where)
            _refuse_decimal_commas(raw, where)
    _refuse_mixed(raw, where, t, separator)
    return t.name, t.parse(raw, where, separator)


def check_separator(separator: str | None, task: tasks.Task | None) -> None:
    """--label-separator splits strings into label lists: only a multi-label task has those."""
    if separator is None:
        return
    if not isinstance(separator, str) or not separator:
        raise DataError(f"--label-separator must be a non-empty string such as '|'; got {separator!r}.")
    if any(c in separator for c in BREAKS):
        raise DataError(f"--label-separator {separator!r} holds a tab or line break; use a character such as '|'.")
    if task is not None and not task.label_lists:
        raise DataError(
            f"--label-separator splits labels into multi-label lists, but --task is {task.name}; drop --label-separator "
            "(or pass --task multi_label)."
        )


def _refuse_mixed(raw: list, where: str, task: tasks.Task, separator: str | None) -> None:
    """Labels of different kinds in one file (a list and a string; a number and a class name in
    a typed file) are an error, not a guess."""
    first: dict[str, int] = {}
    for i, y in enumerate(raw):
        if _missing(y):
            continue
        kind = ("list" if isinstance(y, (list, tuple)) else "number" if isinstance(y, (int, float))
                and not isinstance(y, bool) else "string")
        first.setdefault(kind, i)
    if task.label_lists and separator is None and "list" in first and len(first) > 1:
        other = min(v for k, v in first.items() if k != "list")
        raise DataError(
            f"{where}: labels mix lists (data row {first['list'] + 1}) and single values (data row {other + 1}); "
            "a multi-label file needs a list in every row (or --label-separator for delimited strings)."
        )
    if "number" in first and "string" in first and not task.label_lists:
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
    if not present or not decimal_commas(raw):
        return
    if all(_number(y) is not None or comma_number(y) is not None for _, y in present):
        i, y = next((i, y) for i, y in present if comma_number(y) is not None)
        raise DataError(
            f"{where}: every label is a number and some have a decimal comma (data row {i + 1}: {y.strip()!r}); "
            f"pass --task regression to read them as scores ({comma_number(y):g}), or --task single_label to keep "
            "them as class names."
        )
