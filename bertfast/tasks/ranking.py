"""Reranking: pair data evaluated per query, orthogonal to the task row.

Pair data whose first texts repeat, with >= `MIN_GROUP` candidates per query on average, is a
reranking list: MRR and NDCG@10 over queries are added to the task's metrics, and NDCG@10
becomes the primary. A model grades a candidate with one score, or with two classes of which
one means "relevant": which one is the export's `positive_label`, inferred only where the names
leave no doubt (`positive_class`), else set with `--positive-label`. Taking "the last class"
would silently invert match/other, duplicate/not_duplicate, entailment/not_entailment.
"""

from __future__ import annotations

import numpy as np

from ..errors import BertfastError
from ..metrics import ranking_metrics

PRIMARY = "ndcg@10"
# A headline with its own article and one negative is a pair classification; five graded
# candidates are a reranking list.
MIN_GROUP = 3
TABLE_COLUMNS = (("ndcg@10", 8, "ndcg@10", "num"), ("mrr", 7, "mrr", "num"), ("top1", 8, "top1_agreement", "pct"))
REFERENCE_COLUMNS = (("NDCG@10", "ndcg@10", "num"), ("MRR", "mrr", "num"))

# (irrelevant, relevant) name pairs, compared case-insensitively: the only two-class label sets
# whose relevant class is not a guess.
_POSITIVE_PAIRS = (("0", "1"), ("label_0", "label_1"), ("irrelevant", "relevant"), ("not_relevant", "relevant"), ("no", "yes"),
                   ("false", "true"), ("negative", "positive"), ("neg", "pos"))


def groups_for(groups, can_rerank: bool) -> np.ndarray | None:
    """Query ids when pair data is evaluated as reranking, else None: `groups` (a query id per
    row) with >= MIN_GROUP candidates per query on average, for a model that grades candidates."""
    if not can_rerank or groups is None or len(groups) < MIN_GROUP * len(set(groups)):
        return None
    return np.asarray(groups)


def metrics(relevance: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
    return ranking_metrics(relevance, y, groups)


def top1_agreement(a: np.ndarray, b: np.ndarray, groups: np.ndarray) -> float:
    """The share of queries whose best candidate is the same by `a` as by `b`."""
    return float(np.mean([int(np.argmax(a[groups == g])) == int(np.argmax(b[groups == g]))
                          for g in np.unique(groups)]))


def positive_class(labels: list[str], given: str | None = None, flag: str = "--positive-label") -> int | None:
    """The index of the class that means "relevant" in a two-class label list.

    `given` (the flag's value) must be one of `labels`; else it is inferred where unambiguous
    (`_POSITIVE_PAIRS`, in either order); else None (the caller refuses ranking).
    """
    if given is not None:
        if given not in labels:
            raise BertfastError(f"{flag} {given!r} is not one of the model's labels ({', '.join(labels)}).")
        return labels.index(given)
    if len(labels) != 2:
        return None
    low = [str(x).strip().lower() for x in labels]
    for neg, pos in _POSITIVE_PAIRS:
        if set(low) == {neg, pos}:
            return low.index(pos)
    return None


def unknown_positive(labels: list[str], where: str) -> BertfastError:
    """The refusal when a two-class model's relevant class cannot be inferred."""
    return BertfastError(
        f"{where} has two classes ({', '.join(map(repr, labels))}) and it is not clear which one means relevant; "
        f"pass --positive-label {labels[0]!r} or {labels[1]!r} (at train or export) to rank by it."
    )


def margins(ref: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: how far the reference's best candidate leads its runner-up (m), and how much
    of that lead the variant kept minus the lead (d; the top document changes where d <= -m)."""
    m, d = [], []
    for g in np.unique(groups):
        r, s = ref[groups == g], scores[groups == g]
        order = np.argsort(-r, kind="stable")
        top, second = order[0], order[1] if len(order) > 1 else order[0]
        lead = float(r[top] - r[second])
        m.append(lead)
        d.append(float(s[top] - s[second]) - lead)
    return np.asarray(m)[:, None], np.asarray(d)[:, None]


def rerank_rule(labels: list[str], pair: bool, task, positive_label: str | None, where: str
                ) -> tuple[int | None, str | None]:
    """Decided once when an export loads (as TEI decides Reranker vs Classifier): (the relevant
    class id or None, why this export cannot rerank or None)."""
    if not pair:
        return None, (f"rerank needs an export of a text-pair model; {where} classifies single texts "
                      "(export a cross-encoder trained with --text-pair-column).")
    if not task.can_rerank(len(labels)):
        return None, (f"rerank needs a one-score or two-class pair model; this export is {task.name} with "
                      f"{len(labels)} labels ({', '.join(labels[:5])}); use predict for it.")
    if not task.has_classes:
        return None, None
    try:
        positive = positive_class(labels, positive_label, "task.positive_label")
    except BertfastError as e:
        return None, f"{where}/bertfast.json: {e}"
    if positive is None:
        return None, str(unknown_positive(labels, f"the export {where}"))
    return positive, None
