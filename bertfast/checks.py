"""Value checks shared by the config dataclasses (`TrainConfig`, `ExportConfig`, `BenchConfig`, ...).

Each check names the flag the user typed and says what to pass instead, so a bad value stops
the run before any work starts with a one-line `BertfastError`. argparse already turns
`--epochs abc` into an error, but `float("nan")`, `float("inf")` and negative numbers pass it,
and the Python API passes anything at all.
"""

from __future__ import annotations

import math

from .errors import BertfastError


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _range(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}" + (" (exclusive)" if low_open and high_open else "")
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"


def check_int(flag: str, value, minimum: int | None = None, maximum: int | None = None,
              optional: bool = False) -> int | None:
    """`value` if it is an integer within [minimum, maximum] (None allowed when `optional`).

    Raises:
        BertfastError: naming `flag` and the allowed range.
    """
    if value is None and optional:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return value
    where = "" if minimum is None and maximum is None else " " + _range(minimum, maximum, False, False)
    raise BertfastError(f"{flag} must be an integer{where}; got {_show(value)}.")


def check_float(flag: str, value, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, optional: bool = False,
                example: str | None = None) -> float | None:
    """`value` as a float if it is a finite number in the range (open ends excluded).

    NaN and infinity are always refused: they pass every `<`/`>` comparison written the wrong
    way round and then run forever or silently do nothing.

    Raises:
        BertfastError: naming `flag`, the allowed range and, if given, an example value.
    """
    if value is None and optional:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)
        if (low is None or (v > low if low_open else v >= low)) and (high is None or (v < high if high_open else v <= high)):
            return v
    where = "a finite number" if low is None and high is None else _range(low, high, low_open, high_open)
    eg = f", e.g. {example}" if example else ""
    raise BertfastError(f"{flag} must be {where}{eg} (NaN and infinity are refused); got {_show(value)}.")
