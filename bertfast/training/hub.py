"""Which names are Hugging Face hub datasets, and loading them without running remote code.

A name is sent to the hub only when it cannot be a local path (see `is_hub_name`): a typo of a
local file (`reviews` for `reviews.csv`) must not fetch whatever the hub holds under that name.
`hub:NAME` forces the hub.
"""

from __future__ import annotations

import difflib
import logging
import re
from pathlib import Path

from ..errors import DataError, MissingDependencyError
from ..formats import format_of

log = logging.getLogger(__name__)

HUB_PREFIX = "hub:"
# `name`, `user/name`, each optionally `:config`: what the hub accepts and a local path rarely is.
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?(:[\w.-]+)?")


def is_hub_name(source: str | Path) -> bool:
    """True when `source` names a hub dataset: `hub:NAME`, or a name that cannot be a local path."""
    s = str(source)
    if s.startswith(HUB_PREFIX):
        return True
    if Path(s).expanduser().exists():
        return False
    try:
        refuse_local_typo(s)
    except DataError:
        return False
    return True


def refuse_local_typo(s: str) -> None:
    """DataError unless `s` (which does not exist here) can only be a hub dataset name."""
    first = s.split("/", 1)[0]
    if (format_of(s) is not None or not _HUB_NAME.fullmatch(s)
            or ("/" in s and Path(first).expanduser().is_dir())):
        near = _close_local_names(s)
        hint = f"did you mean {' or '.join(near)}?" if near else "check the path."
        raise DataError(f"{s}: no such file or folder here; {hint}")
    near = _close_local_names(s.partition(":")[0])
    if near:
        raise DataError(
            f"no local file named {s!r}; did you mean {' or '.join(near)}? (To load the Hugging Face hub "
            f"dataset of that name instead, write {HUB_PREFIX}{s}.)"
        )


def _close_local_names(s: str, limit: int = 3) -> list[str]:
    """Local files/folders next to where `s` would be whose name is `s` plus an extension, or close to it."""
    p = Path(s).expanduser()
    parent = p.parent
    try:
        names = [c.name for _, c in zip(range(10_000), parent.iterdir())] if parent.is_dir() else []
    except OSError:
        return []
    key = p.name.lower()
    same_stem = [n for n in names if n.lower().split(".", 1)[0] == key and n.lower() != key]
    close = difflib.get_close_matches(p.name, names, n=limit, cutoff=0.8)
    return [str(parent / n) if str(parent) != "." else n for n in dict.fromkeys(same_stem + close)][:limit]


def open_hub(name: str, split: str, builtin: tuple[str, ...] = ()):
    """`datasets.load_dataset` of `name` (`repo` or `repo:config`), never running a dataset script."""
    try:
        import datasets
    except ImportError:
        raise MissingDependencyError("hub datasets need the `datasets` package; run: pip install 'bertfast[train]'") from None
    repo, _, config = name.partition(":")
    log.info("reading hub dataset %r split %r (no local file or folder has that name)", name, split)
    try:
        # Never run a dataset script (datasets >= 4 ignores False; older versions need it explicit).
        return datasets.load_dataset(repo, config or None, split=split, trust_remote_code=False)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise DataError(
            f"{name!r} is not a local file or folder, not a built-in dataset ({', '.join(builtin)}), and could "
            f"not be loaded from the Hugging Face hub (split {split!r}): {type(e).__name__}: {first}"
        ) from None
