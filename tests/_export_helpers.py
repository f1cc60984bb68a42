"""Build a minimal, valid bertfast export from a model folder, independent of bertfast.exporter.

Used by the runtime and predict tests so they do not depend on the exporter's pipeline: a plain
`torch.onnx.export` (TorchScript exporter, eager attention, opset 17; under bertfast's trace patch
for transformers 5) of the fp32 model plus a `bertfast.json` written by hand per the schema in
`bertfast/manifest.py`.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def sharpen(model_dir: Path, out: Path, scale: float = 200.0) -> Path:
    """Copy `model_dir` with the classifier head scaled up.

    A random tiny model predicts ~1/3 for every class, which makes order and parity tests
    blind; a larger head spreads the probabilities so that mixing texts up would show.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    shutil.copytree(model_dir, out)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.classifier.weight.mul_(scale)
        # [CLS] sees the text only through attention; with tiny random weights its final state is
        # almost the same for every text (transformers 5's init shows it most), so the attention
        # values and output projections are enlarged too.
        for name, module in model.named_modules():
            if name.endswith(("attention.self.value", "attention.output.dense")):
                module.weight.mul_(10.0)
    model.save_pretrained(out)
    return out


def make_export(model_dir: Path, out: Path, max_length: int = 64) -> Path:
    """Export `model_dir` (a BertForSequenceClassification folder) to `out`; return `out`."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    out.mkdir(parents=True, exist_ok=True)
    dummy = tuple(
        torch.zeros(2, 8, dtype=torch.int64) if n == "token_type_ids" else torch.ones(2, 8, dtype=torch.int64)
        for n in INPUTS
    )
    axes = {n: {0: "batch", 1: "sequence"} for n in INPUTS}
    axes["logits"] = {0: "batch"}
    # transformers 5's mask creation cannot be traced as is; `traceable` swaps in the classic
    # additive mask for the duration of the export (a no-op on 4.x).
    from bertfast.exporter.trace import traceable

    with torch.no_grad(), traceable(model):
        torch.onnx.export(
            model, dummy, str(out / "model.onnx"), input_names=INPUTS, output_names=["logits"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )
    shutil.copy(model_dir / "tokenizer.json", out / "tokenizer.json")
    shutil.copy(model_dir / "config.json", out / "config.json")
    cfg = json.loads((model_dir / "config.json").read_text())
    manifest = {
        "format": "bertfast-export",
        "format_version": 1,
        "bertfast_version": "0.1.0",
        "source": {"model_dir": str(model_dir), "model_type": "bert", "architecture": "BertForSequenceClassification"},
        "id2label": {str(k): v for k, v in cfg["id2label"].items()},
        "max_length": max_length,
        "model_max_length": cfg["max_position_embeddings"],
        "inputs": INPUTS,
        "output": "logits",
        "opset": 17,
        "tokenizer": {"file": "tokenizer.json", "pad_token_id": 0, "lowercase": True},
        "variants": {"fp32": {"file": "model.onnx", "precision": "fp32", "devices": ["cpu", "cuda"], "eligible": True}},
        "default": {"cpu": "fp32", "cuda": "fp32"},
    }
    (out / "bertfast.json").write_text(json.dumps(manifest, indent=2))
    return out


def long_text(n_words: int, seed: int = 1) -> str:
    """A text of `n_words` words from the tiny vocab (each word is exactly one token)."""
    from conftest import COMMON, TOPIC_WORDS

    rng = random.Random(seed)
    words = " ".join(TOPIC_WORDS.values()).split() + COMMON.split()
    return " ".join(rng.choice(words) for _ in range(n_words))


def shuffled_lengths(n: int, seed: int = 3) -> list[str]:
    """`n` texts whose lengths (2..120 words) are in random order, so sorting must be undone."""
    rng = random.Random(seed)
    return [long_text(rng.randint(2, 120), seed=i) for i in range(n)]


# -- task exports: pair / multi-label / regression ---------------------------------------------
MULTI_LABELS = ["sport", "tech", "politics", "economy"]


def make_task_model(base_model: Path, out: Path, task: str) -> Path:
    """A copy of the tiny BERT folder re-headed for `task` (multi_label: 4 labels with
    problem_type multi_label_classification; regression: 1 output; single_label: 2 labels
    "irrelevant"/"relevant" for pair classification and reranking), head sharpened."""
    import torch
    from transformers import AutoConfig, BertForSequenceClassification

    cfg = AutoConfig.from_pretrained(base_model)
    if task == "multi_label":
        labels = MULTI_LABELS
        cfg.problem_type = "multi_label_classification"
    elif task == "regression":
        labels = ["score"]
        cfg.problem_type = "regression"
    else:
        labels = ["irrelevant", "relevant"]
        cfg.problem_type = "single_label_classification"
    cfg.num_labels = len(labels)
    cfg.id2label = dict(enumerate(labels))
    cfg.label2id = {n: i for i, n in enumerate(labels)}
    torch.manual_seed(1)
    model = BertForSequenceClassification(cfg).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
        for name, module in model.named_modules():
            if name.endswith(("attention.self.value", "attention.output.dense")):
                module.weight.mul_(10.0)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (base_model / f).exists():
            shutil.copy(base_model / f, out / f)
    return out


def make_task_export(base_model: Path, out: Path, task: str, pair: bool, max_length: int = 64,
                     thresholds: list[float] | None = None) -> Path:
    """A hand-made export (see `make_export`) of `make_task_model(task)` with the manifest's
    `task` block: {"name": task, "pair": pair, ...}."""
    model_dir = make_task_model(base_model, out.parent / (out.name + "-model"), task)
    make_export(model_dir, out, max_length)
    m = json.loads((out / "bertfast.json").read_text())
    m["task"] = {"name": task, "pair": pair}
    if thresholds is not None:
        m["task"]["thresholds"] = thresholds
    (out / "bertfast.json").write_text(json.dumps(m, indent=2))
    return out
