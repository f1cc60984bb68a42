"""What the benchmark scripts share: running a bertfast command, and PyTorch's reference logits."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_traffic(path: Path, seed: int, n: int = 2000, val_fraction: float = 0.1) -> Path:
    """Unlabeled "production traffic" of the BBC task: a fixed sample of the training split's
    headlines and articles (`gate_bench.py`'s --agreement-data, `compress_bench.py`'s --distill-data).
    `seed` and `val_fraction` must be the teacher's, so no validation or test article leaks in."""
    import json

    from bertfast.training.data import load_splits

    arts, heads = (load_splits(name, seed=seed, val_fraction=val_fraction) for name in ("bbc-news", "bbc-news-headlines"))
    rows = heads.train.texts + arts.train.texts
    # A teacher holding out half its articles has fewer than n training texts: take them all.
    rows = [rows[i] for i in sorted(np.random.default_rng(0).choice(len(rows), min(n, len(rows)), replace=False))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    return path


def write_results(out: Path, report: dict, markdown) -> None:
    """`results.json` and `results.md` (rendered by `markdown(report)`) into `out`; the page printed."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str))
    page = markdown(report)
    (out / "results.md").write_text(page)
    print(page)


def run(cmd: list[str], **kw) -> float:
    """Run a command from the repository root (its output shown); its wall time in seconds."""
    t0 = time.time()
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kw)
    return round(time.time() - t0, 1)


def torch_logits(model_dir: Path, texts: list[str], max_length: int, batch: int = 32) -> np.ndarray:
    """The fine-tuned model's fp32 logits on single texts, truncated at `max_length`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            enc = tok(texts[i:i + batch], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            out.append(model(**enc).logits.float().numpy())
    return np.concatenate(out)
