"""Classification metrics shared by training, export validation and the quickstart (numpy only)."""

from __future__ import annotations

import numpy as np


def _counts(pred: np.ndarray, labels: np.ndarray, c: int) -> tuple[int, int, int]:
    tp = int(((pred == c) & (labels == c)).sum())
    fp = int(((pred == c) & (labels != c)).sum())
    fn = int(((pred != c) & (labels == c)).sum())
    return tp, fp, fn


def accuracy_f1(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """Accuracy and macro-F1 of predicted class ids vs true ids.

    A class absent from both predictions and labels does not enter the macro average.
    """
    pred, labels = np.asarray(pred), np.asarray(labels)
    f1s = []
    for c in range(n_classes):
        tp, fp, fn = _counts(pred, labels, c)
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float((pred == labels).mean()) if len(labels) else 0.0,
            "macro_f1": float(np.mean(f1s)) if f1s else 0.0}


def classification_report(pred: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """Per-class precision / recall / F1 / support."""
    out = {}
    for c, name in enumerate(names):
        tp, fp, fn = _counts(pred, labels, c)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out[name] = {"precision": round(p, 4), "recall": round(r, 4),
                     "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0, "support": tp + fn}
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (rows: texts, columns: classes), numerically stable."""
    z = np.asarray(logits, dtype=np.float32)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the `k` best scores per row, best first (ties: lower index first)."""
    if k == 1:
        return scores.argmax(axis=1)[:, None]
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def agreement(probs: np.ndarray, ref: np.ndarray) -> dict:
    """How closely one model's class probabilities follow a reference's on the same texts."""
    diff = np.abs(np.asarray(probs, dtype=np.float64) - np.asarray(ref, dtype=np.float64))
    return {
        "label_agreement": float((probs.argmax(-1) == ref.argmax(-1)).mean()) if len(probs) else 1.0,
        "max_abs_prob_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_prob_diff": float(diff.mean()) if diff.size else 0.0,
    }


def multilabel_f1(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Micro-F1, macro-F1 (over labels that occur in truth or predictions) and exact-match ratio
    of 0/1 matrices [n, n_labels]."""
    p, t = np.asarray(pred).astype(bool), np.asarray(truth).astype(bool)
    tp, fp, fn = (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)
    denom = 2 * tp.sum() + fp.sum() + fn.sum()
    seen = (tp + fp + fn) > 0
    per = 2 * tp[seen] / (2 * tp[seen] + fp[seen] + fn[seen])
    return {"micro_f1": float(2 * tp.sum() / denom) if denom else 1.0,
            "macro_f1": float(per.mean()) if per.size else 1.0,
            "exact_match": float((p == t).all(axis=1).mean()) if len(p) else 0.0}


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's rho needs."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0


def regression_metrics(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Pearson and Spearman correlation and mean absolute error of predicted vs true scores."""
    p, t = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if len(p) < 2:
        return {"pearson": 0.0, "spearman": 0.0, "mae": float(np.abs(p - t).mean()) if len(p) else 0.0}
    return {"pearson": _pearson(p, t), "spearman": _pearson(_ranks(p), _ranks(t)), "mae": float(np.abs(p - t).mean())}


def ranking_metrics(scores: np.ndarray, relevance: np.ndarray, groups: np.ndarray, k: int = 10) -> dict:
    """MRR (first relevant document, relevance > 0) and NDCG@k (graded gains) over queries.

    `groups` holds a query id per row; a query without any relevant document counts 0 in MRR
    and is left out of NDCG (it has no ideal ranking), as TREC tools do.
    """
    scores, rel, groups = np.asarray(scores), np.asarray(relevance, np.float64), np.asarray(groups)
    rr, ndcg = [], []
    disc = 1 / np.log2(np.arange(2, k + 2))
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        order = idx[np.argsort(-scores[idx], kind="stable")]
        r = rel[order]
        hits = np.flatnonzero(r > 0)
        rr.append(1 / (hits[0] + 1) if hits.size else 0.0)
        ideal = np.sort(rel[idx])[::-1][:k]
        idcg = float((ideal * disc[: len(ideal)]).sum())
        if idcg > 0:
            top = r[:k]
            ndcg.append(float((top * disc[: len(top)]).sum()) / idcg)
    return {"mrr": float(np.mean(rr)) if rr else 0.0, f"ndcg@{k}": float(np.mean(ndcg)) if ndcg else 0.0,
            "queries": len(rr)}
