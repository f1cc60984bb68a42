"""How closely each backend's answers follow the reference (`torch`), and accuracy against labels.

Computed on the throughput sample at the largest batch size, outside every timing.
"""

from __future__ import annotations

import numpy as np

from ..metrics import agreement, softmax

REFERENCES = ("torch", "torch-seed")  # first one measured is the reference


def quality(results: dict[str, dict], outputs: dict[str, np.ndarray], sample_idx: list[int],
            labels: list[str] | None, id2label: dict[int, str], warnings: list[str]) -> None:
    """Add a `quality` entry to each backend in `results` that produced `outputs`.

    Args:
        results: backend name -> result entry (its `outputs` says "logits" or "probs").
        outputs: backend name -> [n, labels] scores on the sample.
        sample_idx: the sample's indices into `labels`.
        labels: the data's labels (strings), or None.
        id2label: the model's labels; accuracy is reported only when the data's labels are among them.
        warnings: the report's warnings, appended to.
    """
    ref_name = next((n for n in REFERENCES if n in outputs), None)
    probs = {name: out if results[name].get("outputs") == "probs" else softmax(out)
             for name, out in outputs.items()}
    y = None
    if labels is not None and id2label:
        label2id = {v: k for k, v in id2label.items()}
        sample_labels = [labels[i] for i in sample_idx]
        missing = sorted({lb for lb in sample_labels if lb not in label2id})
        if missing:
            warnings.append(f"data labels {missing[:5]} are not the model's labels; accuracy not reported.")
        else:
            y = np.array([label2id[lb] for lb in sample_labels])
    for name, p in probs.items():
        q: dict = {"n": int(p.shape[0]), "reference": ref_name}
        if y is not None:
            q["accuracy"] = float((p.argmax(axis=1) == y).mean())
        if ref_name is not None:
            ref = probs[ref_name]
            q.update(agreement(p, ref))
            if y is not None:
                q["accuracy_delta_points"] = 100 * (q["accuracy"] - float((ref.argmax(axis=1) == y).mean()))
        results[name]["quality"] = q
