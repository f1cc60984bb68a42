"""What a benchmark runs on: TARGET (export or model folder), the texts to replay, the device."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BertfastError, DataError, ProviderError
from .config import BenchConfig
from .paths import display_path
from .roofline import ModelShape


@dataclass
class Target:
    """What TARGET resolved to."""

    export_dir: Path | None
    model_dir: Path | None
    manifest: object | None
    id2label: dict[int, str]
    max_length: int
    model_max_length: int
    shape: ModelShape | None


def resolve_target(cfg: BenchConfig, model_dir: str | Path | None = None) -> Target:
    """An export folder (with `bertfast.json`) or a trained model folder (with `config.json`)."""
    from ..manifest import MANIFEST_NAME, load_manifest

    t = Path(cfg.target)
    if (t / MANIFEST_NAME).is_file():
        m = load_manifest(t)
        src = model_dir or (m.raw.get("source") or {}).get("model_dir")
        mdir = None
        if src:
            mdir = Path(src)
            if not mdir.is_absolute() and not mdir.exists():
                mdir = t / mdir  # a relative path may be relative to the export
        cfg_path = next((p / "config.json" for p in (mdir, t) if p is not None and (p / "config.json").is_file()), None)
        shape = ModelShape.from_config(cfg_path) if cfg_path else None
        return Target(t, mdir, m, m.id2label, cfg.max_length or m.max_length, m.model_max_length, shape)
    if (t / "config.json").is_file():
        from ..families import family_of

        conf = json.loads((t / "config.json").read_text())
        id2label = {int(k): str(v) for k, v in (conf.get("id2label") or {}).items()}
        mml = family_of(conf).position_limit(conf)  # RoBERTa-style families reserve positions
        return Target(None, t, None, id2label, cfg.max_length or min(128, mml), mml, ModelShape.from_config(conf))
    raise BertfastError(
        f"TARGET {display_path(t)} is neither an export folder (bertfast.json) nor a model folder (config.json)."
    )


def load_data(cfg: BenchConfig, target: Target) -> tuple[list[str], list[str] | None, str]:
    """The texts (and labels, when known) to replay, and the source as reports show it.

    Default: the export's held-out `eval.jsonl`, else the `bbc-news` test split.
    """
    from ..data import load_texts

    eval_split = target.export_dir / "eval.jsonl" if target.export_dir is not None else None
    if cfg.data is None and eval_split is not None and eval_split.is_file():
        source, text_column, label_column = eval_split, "text", "label"
    else:
        source, text_column, label_column = cfg.data or "bbc-news", cfg.text_column, cfg.label_column
    texts, labels = load_texts(source, text_column=text_column, label_column=label_column)
    if not texts:
        raise DataError(f"--data {display_path(source)} holds no texts.")
    return list(texts), (list(labels) if labels is not None else None), display_path(source)


def resolve_device(device: str) -> str:
    """A provider name from `--device`, read off the provider table.

    "auto" takes the first provider `providers.auto_order()` offers (GPU ones first) that the
    torch peers can follow, else cpu. A GPU provider asked for by name must be usable by both
    ONNX Runtime and torch, else ProviderError: a benchmark never silently runs on the CPU.
    """
    from ..runtime.providers import PROVIDERS, auto_order, available_providers

    try:
        import torch

        torch_cuda = torch.cuda.is_available()
    except ImportError:
        torch_cuda = False
    if device == "auto":
        return next((p.name for p in auto_order() if torch_cuda or not p.gpu), "cpu")
    row = PROVIDERS[device]
    ort_ok = row.ort_name in available_providers()
    if row.gpu and not (ort_ok and torch_cuda):
        raise ProviderError(
            f"--device {device}: not usable (onnxruntime {row.ort_name}: {ort_ok}, torch CUDA: {torch_cuda}); "
            "run `bertfast doctor`, or use --device cpu."
        )
    return device


def token_counts(target: Target, texts: list[str], max_length: int) -> np.ndarray:
    """Real tokens per text after truncation, [CLS]/[SEP] included."""
    if target.model_dir is not None and (target.model_dir / "config.json").is_file():
        from ..errors import require

        tok = require("transformers", "train").AutoTokenizer.from_pretrained(target.model_dir, use_fast=True)
        ids = tok(list(texts), truncation=True, max_length=max_length)["input_ids"]
        return np.array([len(x) for x in ids])
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(target.manifest.tokenizer_file))
    tok.enable_truncation(max_length)
    tok.no_padding()
    return np.array([len(e.ids) for e in tok.encode_batch(list(texts))])
