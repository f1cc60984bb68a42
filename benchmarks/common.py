"""What the benchmark scripts share: running a bertfast command, and PyTorch's reference logits."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


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
