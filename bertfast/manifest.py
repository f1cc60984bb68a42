"""The export manifest (`bertfast.json`): what an export folder holds and how it was made.

Written by `bertfast.export`, read by the runtime and the benchmark. Reading it needs only the
standard library, so the inference path stays free of torch/transformers.

Schema (format 1)::

    {
      "format": "bertfast-export", "format_version": 1,
      "bertfast_version": "0.1.0", "created": "2026-11-25T10:00:00Z",
      "source": {"model_dir": "...", "sha256": "<weights hash>", "model_type": "bert",
                 "architecture": "BertForSequenceClassification"},
      "id2label": {"0": "business", ...},          # str(int) -> label, same as config.json
      "max_length": 128,                           # tokens per window (incl. [CLS]/[SEP])
      "model_max_length": 512,                     # hard limit (max_position_embeddings)
      "inputs": ["input_ids", "attention_mask", "token_type_ids"],  # exact graph input names
      "output": "logits",
      "opset": 17,
      "tokenizer": {"file": "tokenizer.json", "pad_token_id": 0, "lowercase": true},
      "variants": {
        "<name>": {"file": "model_int8.onnx", "precision": "fp32|int8|fp16",
                   "devices": ["cpu"] | ["cuda"] | ["cpu", "cuda"],
                   "description": "...", "fused_ops": {"Attention": 6, ...},
                   "validation": {"accuracy": .., "macro_f1": .., "label_agreement": ..,
                                  "max_abs_prob_diff": .., "accuracy_drop_points": .., "n": ..},
                   "speed": {"seq_per_s": .., "batch_size": .., "threads": ..},
                   "eligible": true, "reason": "..."}
      },
      "default": {"cpu": "<variant>", "cuda": "<variant or null>"},
      "reference": {"accuracy": .., "macro_f1": .., "n": ..},   # PyTorch fp32 on the same data
      "eval_data": {"source": "...", "rows": ..},
      "max_accuracy_drop": 0.5,
      "versions": {"onnxruntime": "...", ...}
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BertfastError

MANIFEST_NAME = "bertfast.json"
FORMAT_VERSION = 1


@dataclass
class Manifest:
    """A parsed, checked `bertfast.json`. `raw` keeps every field for reports."""

    path: Path
    id2label: dict[int, str]
    max_length: int
    model_max_length: int
    inputs: list[str]
    output: str
    tokenizer_file: Path
    pad_token_id: int
    variants: dict[str, dict]
    default: dict[str, str | None]
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    def variant_file(self, name: str) -> Path:
        return self.folder / self.variants[name]["file"]

    def pick_variant(self, device: str, variant: str | None = None) -> str:
        """The variant to load on `device`: the one asked for, else the export's default."""
        if variant is not None:
            if variant not in self.variants:
                raise BertfastError(
                    f"variant {variant!r} is not in export {self.folder}; available: "
                    f"{', '.join(sorted(self.variants))}."
                )
            return variant
        name = self.default.get(device)
        if name is None:
            usable = [n for n, v in self.variants.items() if device in v.get("devices", [])]
            if not usable:
                listed = ", ".join(f"{n} ({'/'.join(v.get('devices', []))})" for n, v in self.variants.items())
                raise BertfastError(
                    f"export {self.folder} has no variant for device {device!r}; variants: {listed}. "
                    f"Re-export with `bertfast export --device {device}`."
                )
            name = usable[0]
        return name


def load_manifest(folder: str | Path) -> Manifest:
    """Read and check `folder/bertfast.json`; errors say what is wrong and how to fix it."""
    folder = Path(folder)
    if not folder.exists():
        raise BertfastError(f"export folder {folder} does not exist; run `bertfast export MODEL_DIR` first.")
    if not folder.is_dir():
        raise BertfastError(f"{folder} is a file, not an export folder (the folder holding bertfast.json).")
    path = folder / MANIFEST_NAME
    if not path.exists():
        hint = ""
        if (folder / "config.json").exists() and not list(folder.glob("*.onnx")):
            hint = " It looks like a trained model folder: export it first with `bertfast export " f"{folder}`."
        raise BertfastError(f"{folder} is not a bertfast export: {MANIFEST_NAME} is missing.{hint}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BertfastError(f"manifest {path} is unreadable or corrupt ({e}); re-run `bertfast export --force`.") from None
    if not isinstance(raw, dict) or raw.get("format") != "bertfast-export":
        raise BertfastError(f"{path} is not a bertfast export manifest; re-run `bertfast export --force`.")
    if raw.get("format_version", 0) > FORMAT_VERSION:
        raise BertfastError(
            f"{path} has format_version {raw.get('format_version')}, newer than this bertfast "
            f"understands ({FORMAT_VERSION}); upgrade bertfast."
        )
    try:
        id2label = {int(k): str(v) for k, v in raw["id2label"].items()}
        if sorted(id2label) != list(range(len(id2label))):
            raise ValueError("id2label keys must be 0..N-1")
        tok = raw["tokenizer"]
        m = Manifest(
            path=path,
            id2label=id2label,
            max_length=int(raw["max_length"]),
            model_max_length=int(raw.get("model_max_length", raw["max_length"])),
            inputs=list(raw["inputs"]),
            output=str(raw.get("output", "logits")),
            tokenizer_file=folder / tok["file"],
            pad_token_id=int(tok.get("pad_token_id", 0)),
            variants=dict(raw["variants"]),
            default=dict(raw.get("default", {})),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise BertfastError(f"manifest {path} is missing or has a bad field ({e}); re-run `bertfast export --force`.") from None
    if not m.variants:
        raise BertfastError(f"manifest {path} lists no variants; re-run `bertfast export --force`.")
    for name, v in m.variants.items():
        f = folder / v.get("file", "")
        if not f.is_file():
            raise BertfastError(f"export {folder} is incomplete: variant {name!r} file {f.name} is missing; re-run `bertfast export --force`.")
    if not m.tokenizer_file.is_file():
        raise BertfastError(f"export {folder} is incomplete: {m.tokenizer_file.name} is missing; re-run `bertfast export --force`.")
    return m
