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
