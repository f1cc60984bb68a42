"""Single label values as files hold them: missing, a number, a class name. Shared by the task
modules' `parse` and by the label reader (`training/labels.py`), which decides the task."""

from __future__ import annotations

import re

from ..errors import DataError

BREAKS = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # tab + what str.splitlines splits on
# One comma between digits: "0,5", "-2,25". Not "1,000,000", and not "a,b" (label lists).
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")


def missing(y) -> bool:
    return y is None or (isinstance(y, float) and y != y) or (isinstance(y, str) and not y.strip())


def number(y) -> float | None:
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


def class_name(y, where: str, row: int) -> str:
    """A label as a class name (1.0 -> "1"); a tab or line break in it is refused."""
    if isinstance(y, float) and y.is_integer():
        y = int(y)
    s = str(y).strip()
    if any(c in s for c in BREAKS):
        raise DataError(
            f"{where}: label in data row {row + 1} ({s[:40]!r}) holds a tab or line break, which would break "
            "line-based outputs; fix that label (a stray quote in a CSV can merge rows into one)."
        )
    return s


def required(y, where: str, row: int) -> None:
    if missing(y):
        raise DataError(f"{where}: label in data row {row + 1} is missing; every row needs a label.")


def comma_number(y) -> float | None:
    """y as a float when it is a string written with a decimal comma ("0,5" -> 0.5), else None."""
    if isinstance(y, str) and _DECIMAL_COMMA.fullmatch(y.strip()):
        return float(y.strip().replace(",", "."))
    return None


def decimal_commas(raw: list) -> bool:
    """Whether a column writes its fractions with a decimal comma: some value does, and no
    string value uses a decimal point (with both, "1,5" could be a thousands separator)."""
    strings = [y.strip() for y in raw if isinstance(y, str)]
    return any(comma_number(y) is not None for y in strings) and not any("." in y for y in strings)
