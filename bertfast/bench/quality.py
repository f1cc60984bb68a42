"""How closely each backend's answers follow the reference (`torch`), and the task's quality metric.

Computed on the throughput sample at the largest batch size, outside every timing, in the
terms of the target's task (`bertfast.tasks`):

- scores: a backend reporting logits gets the target's activation (softmax, sigmoid per label,
  identity for a score), the one the export's runtime applies, so every backend is compared on
  the same scale; a backend reporting "probs" (bertfast's `Classifier`) already applied it.
- the metric against the data's labels: `Task.evaluate` (single_label accuracy + macro-F1;
  multi_label micro/macro-F1 and exact match at the export's thresholds, 0.5 each by default;
  regression Pearson, Spearman, MAE); the task's primary metric is the report's column.
- agreement with the reference: `Task.agreement` (same top label; same label set; score within
  5% of the reference's range) and the largest / mean score difference.

Ranking metrics (MRR, NDCG@10 over queries) are not computed here: the throughput sample is a
random subset of the rows, which would cut queries' candidate lists.
"""

from __future__ import annotations

import numpy as np

from .. import tasks as _tasks

REFERENCES = ("torch", "torch-seed")  # first one measured is the reference


def truth(task: _tasks.Task, labels: list, id2label: dict[int, str]) -> tuple[np.ndarray | None, str | None]:
    """The data's labels as `Task.evaluate` takes them, the way the export's validation does.
    Returns (y, None), or (None, why) when the labels are not the model's."""
    label2id = {v: k for k, v in id2label.items()}
    missing = sorted(map(str, task.unknown(labels, label2id)))
    if missing:
        return None, f"data labels {missing[:5]} are not the model's labels ({', '.join(map(str, label2id))})"
    return task.encode(labels, label2id), None


def quality(results: dict[str, dict], outputs: dict[str, np.ndarray], sample_idx: list[int],
            labels: list | None, id2label: dict[int, str], warnings: list[str], task: str = "single_label",
            activation: str | None = None, thresholds: list[float] | None = None) -> None:
    """Add a `quality` entry to each backend in `results` that produced `outputs`.

    Args:
        results: backend name -> result entry (its `outputs` says "logits" or "probs").
        outputs: backend name -> [n, outputs] logits or scores on the sample.
        sample_idx: the sample's indices into `labels`.
        labels: the data's labels as `bertfast.labels.coerce` reads them for `task` (class names,
            label lists, floats), or None.
        id2label: the model's labels; the metric is reported only when the data's labels are among them.
        warnings: the report's warnings, appended to.
        task: the target's task name.
        activation: logits -> scores (default: the task's own).
        thresholds: multi_label decision thresholds (None: 0.5 each).

    Each entry: `n`, `reference`, `metric` (the task's primary metric's name), the task's
    metrics (e.g. `accuracy` and `macro_f1`), `<metric>_delta_points` (100 x difference from
    the reference) and the agreement figures.
    """
    t = _tasks.get(task)
    activation = activation or t.activation
    ref_name = next((n for n in REFERENCES if n in outputs), None)
    scores = {name: out if results[name].get("outputs") == "probs" else _tasks.activate(out, activation)
              for name, out in outputs.items()}
    y = None
    if labels is not None and (id2label or not t.has_classes):
        y, why = truth(t, [labels[i] for i in sample_idx], id2label)
        if why:
            warnings.append(f"{why}; {t.primary} not reported.")
    metric = t.primary
    ref_metrics = t.evaluate(scores[ref_name], y, thresholds) if ref_name is not None and y is not None else {}
    for name, p in scores.items():
        q: dict = {"n": int(p.shape[0]), "reference": ref_name, "metric": metric}
        if y is not None:
            q.update(t.evaluate(p, y, thresholds))
        if ref_name is not None:
            q.update(t.agreement(p, scores[ref_name], thresholds))
            if metric in ref_metrics and metric in q:
                q[f"{metric}_delta_points"] = 100 * (q[metric] - ref_metrics[metric])
        results[name]["quality"] = q
