"""Stratified, seeded splits and subsamples, and the checks that make an evaluation split mean
something (more than one class, no label the training data never saw).
"""

from __future__ import annotations

import logging
import random

from .. import tasks
from ..errors import DataError
from .texts import LabeledTexts

log = logging.getLogger(__name__)

# A class with fewer than this share of the largest class gets a warning on evaluation splits.


def stratified_split(data: LabeledTexts, fractions: tuple[float, ...], seed: int) -> list[LabeledTexts]:
    """Split into len(fractions)+1 parts, each with the class proportions of `data`.

    Every class (label set; score quintile) with at least len(fractions)+1 examples appears in
    every part. Reranking data (pairs whose first texts repeat) is split by query, so one
    query's candidates never straddle train and evaluation.
    """
    rng = random.Random(seed)
    groups = data.groups()
    keys = tasks.get(data.task).stratum(data.labels)
    by_class: dict = {}
    if groups is None:
        for i, y in enumerate(keys):
            by_class.setdefault(y, []).append(i)
    else:
        members: dict[int, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        by_class = {0: sorted(members)}
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for y in sorted(by_class, key=str):
        idx = by_class[y]
        rng.shuffle(idx)
        n = len(idx)
        start = 0
        for k, f in enumerate(fractions):
            take = max(1, round(n * f)) if n > len(fractions) else 0
            parts[k + 1].extend(idx[start:start + take])
            start += take
        parts[0].extend(idx[start:])
    out = []
    for p in parts:
        rng.shuffle(p)
        if groups is not None:  # p holds query ids: their rows, each query's together
            p = [i for g in p for i in members[g]]
        out.append(data.take(p))
    return out


def subsample(data: LabeledTexts, n: int | None, seed: int) -> LabeledTexts:
    """A stratified subsample of at most `n` rows (None: everything)."""
    if n is None or n >= len(data):
        return data
    part = stratified_split(data, (n / len(data),), seed)[1]
    if len(part) <= n:
        return part
    # Every class (label set, query) keeps at least one row, so many small strata overshoot n:
    # trim at random, keeping a query's rows together.
    groups = part.groups() or list(range(len(part)))
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    keep: list[int] = []
    for g in order:
        if len(keep) + len(members[g]) <= n:
            keep += members[g]
    return part.take(sorted(keep))


def check_eval_split(name: str, data: LabeledTexts, train_labels: set[str], where: str | None = None) -> None:
    """Refuse evaluation data that cannot measure anything; warn on heavy imbalance.

    `where`: the file (or hub split) the rows came from in their order, so an unseen label is
    reported by its data row there; None for splits carved out of the training data.
    """
    if len(data) == 0:
        raise DataError(f"the {name} split is empty; provide more data or a {name} file.")
    task = tasks.get(data.task)
    if task.has_classes:
        unseen = sorted(set(task.flat(data.labels)) - train_labels)
        if unseen:
            at = ""
            if where is not None:
                row = next(i for i, y in enumerate(data.labels) if set(task.flat([y])) & set(unseen))
                at = f" (first in data row {row + 1} of {where})"
            raise DataError(
                f"the {name} split has label(s) {', '.join(map(repr, unseen[:5]))} that never occur in the "
                f"training data{at} (training labels: {', '.join(sorted(train_labels))}); fix the labels or the split."
            )
    task.check_split(name, data.labels)
    counts = task.imbalance(data.labels, len(train_labels))
    if counts is not None:
        log.warning("%s split is imbalanced (%s): prefer macro-F1 over accuracy.", name, counts)
