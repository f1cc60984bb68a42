"""Paths as reports show them: relative to where the run started, never the machine's layout.

Committed reports are read on other machines; an absolute path such as `/home/alice/proj/exports/x`
says nothing useful there and leaks the author's folders. Every path a report records goes through
`display_path`, and free text (error messages, warnings) through `scrub_paths`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def _relative(path: Path, root: Path) -> str | None:
    """`path` relative to `root` ("." for root itself), or None when it lies outside."""
    for p, r in ((path, root), (path.resolve(), root.resolve())):  # resolved too: symlinked cwd or /tmp
        try:
            return p.relative_to(r).as_posix() or "."
        except ValueError:
            continue
    return None


def display_path(path: str | os.PathLike | None, root: str | os.PathLike | None = None) -> str | None:
    """How a report records `path`.

    A relative path is kept as given (it is already relative to the working directory). An
    absolute one becomes relative to the working directory when inside it, `~/...` when under
    the home folder, else only its last component (a folder's name).

    Args:
        path: the path to show (None gives None).
        root: a folder `path` is known to lie in (e.g. a cache): the path is then shown as the
            display of `root` joined with the rest, so the part below `root` is never lost.

    Returns:
        The string to record, or None.
    """
    if path is None:
        return None
    if not Path(path).expanduser().is_absolute():
        return str(path)
    p = Path(os.path.normpath(Path(path).expanduser()))
    if root is not None:
        below = _relative(p, Path(os.path.abspath(Path(root).expanduser())))
        if below is not None:
            shown = display_path(root)
            return shown if below == "." else f"{shown}/{below}"
    inside = _relative(p, Path.cwd())
    if inside is not None:
        return inside
    in_home = _relative(p, Path.home())
    if in_home is not None:
        return "~" if in_home == "." else f"~/{in_home}"
    return p.name or str(p)


def scrub_paths(value):
    """`value` (str, or a dict/list of them, nested) with the working-directory and home prefixes
    rewritten as in `display_path`: for free text such as error messages that quote a path."""
    if isinstance(value, str):
        # cwd first: it may lie under home. Only at the start of a path (not inside a longer one).
        for prefix, repl in ((os.getcwd(), ""), (str(Path.home()), "~/")):
            if len(prefix) > 1:  # never rewrite a bare "/" (cwd or home at the root)
                value = re.sub(r"(?<![\w.~/-])" + re.escape(prefix.rstrip(os.sep) + os.sep), repl, value)
        return value
    if isinstance(value, dict):
        return {k: scrub_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_paths(v) for v in value]
    return value
