"""The export manifest (`bertfast.json`): what an export folder holds and how it was made.

Written by `bertfast.export`, read by the runtime and the benchmark. Reading it needs only the
standard library, so the inference path stays free of torch/transformers.

Schema (format 1)::

    {
      "format": "bertfast-export", "format_version": 1,
      "bertfast_version": "0.1.0", "created": "2026-11-25T10:00:00Z",
      "source": {"model_dir": "<as given, never resolved>", "sha256": "<weights hash>", "model_type": "bert",
                 "family": "bert" | "generic", "architecture": "BertForSequenceClassification"},
      "id2label": {"0": "business", ...},          # str(int) -> label, same as config.json
      "max_length": 128,                           # tokens per window (incl. [CLS]/[SEP])
      "model_max_length": 512,                     # hard limit (max_position_embeddings)
      "inputs": ["input_ids", "attention_mask", "token_type_ids"],  # exact graph input names
      "output": "logits",
      "task": {"name": "single_label" | "multi_label" | "regression", "pair": false,   # null/absent: single_label
               "activation": "softmax" | "sigmoid" | "identity", "thresholds": [0.5, ...] | null,
               "pair_truncation": "longest_first", "primary_metric": "accuracy" | "micro_f1" | "pearson" | "ndcg@10",
               "min_agreement": 99.5, "label_mapping": "..."},   # label_mapping: only when integers were mapped
      "opset": 17,
      "tokenizer": {"file": "tokenizer.json", "pad_token_id": 0, "lowercase": true},
      "quantization_preset": "avx512_vnni",
      "variants": {
        "<name>": {"status": "ok", "file": "model_int8.onnx", "precision": "fp32|int8|fp16",
                   "devices": ["cpu"] | ["cuda", "tensorrt"] | ...,  # provider names
                   "description": "...", "fused_ops": {"Attention": 6, ...},
                   "validation": {"accuracy": .., "macro_f1": .., "label_agreement": ..,
                                  "max_abs_prob_diff": .., "accuracy_drop_points": .., "n": ..},
                   "speed": {"seq_per_s": .., "batch_size": .., "threads": ..},
                   "eligible": true, "reason": "..."},
        "<failed>": {"status": "failed", "reason": "<one line>", "precision": .., "devices": [..]}
      },                                           # a failed variant has no file and is never loaded
      "default": {"cpu": "<variant>", "cuda": "<variant or null>", "tensorrt": ...},  # one key per provider
      "max_accuracy_drop": 0.5,
      "eval_data": {"source": "<as given>", "rows": .., "file": "eval.jsonl"},
      "training": {"data": .., "metrics": .., "max_length": ..} | null,
      "versions": {"onnxruntime": "...", ...},
      "reference": {"accuracy": .., "macro_f1": .., "n": .., "backend": .., "seq_per_s": ..},  # PyTorch fp32
      "batching": {"cpu": {"batch_tokens": 2048, "variant": .., "seq_per_s": {"1024": .., ...}}} | null,
                                                   # token budget the export measured fastest, per provider
      "window": {"cpu": {"variant": .., "max_length": 96, "long_text": "truncate"}} | null,
                                                   # the window the export's search chose with the default
      "export_seconds": 12.3
    }

Exports written before the tensorrt provider existed have only cpu/cuda defaults; they load as is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import BertfastError
from .manifest_schema import FAILED, FIX, ManifestError, is_int, validate
from .utils import write_json

__all__ = ["FORMAT_VERSION", "MANIFEST_NAME", "Manifest", "ManifestError", "load_manifest", "validate"]

MANIFEST_NAME = "bertfast.json"
FORMAT_VERSION = 1


@dataclass(kw_only=True)
class Manifest:
    """A `bertfast.json`: the export writes one through `write`, the runtime reads one with `load_manifest`.

    Field order is the order written. `path` is where it was read from (None before `write`);
    `extra` keeps fields this version does not know, so rewriting an export loses nothing.
    """

    format: str = "bertfast-export"
    format_version: int = FORMAT_VERSION
    bertfast_version: str = "0"
    created: str | None = None
    source: dict = field(default_factory=dict)
    id2label: dict[int, str]
    max_length: int
    model_max_length: int | None = None
    inputs: list[str]
    output: str = "logits"
    task: dict | None = None
    opset: int | None = None
    tokenizer: dict = field(default_factory=lambda: {"file": "tokenizer.json", "pad_token_id": 0})
    quantization_preset: str | None = None
    variants: dict[str, dict] = field(default_factory=dict)
    default: dict[str, str | None] = field(default_factory=dict)
    max_accuracy_drop: float | None = None
    eval_data: dict | None = None
    training: dict | None = None
    versions: dict = field(default_factory=dict)
    reference: dict | None = None
    batching: dict | None = None
    window: dict | None = None
    export_seconds: float | None = None
    path: Path | None = field(default=None, repr=False, compare=False)
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.model_max_length is None:
            self.model_max_length = self.max_length

    # -- what the runtime reads

    @property
    def folder(self) -> Path:
        """The export folder (where `bertfast.json` lives)."""
        if self.path is None:
            raise BertfastError("this manifest was not read from or written to a folder yet.")
        return self.path.parent

    @property
    def labels(self) -> list[str]:
        """Label names in class-id order."""
        return [self.id2label[i] for i in range(len(self.id2label))]

    @property
    def task_name(self) -> str:
        """`single_label`, `multi_label` or `regression` (exports before tasks: single_label)."""
        return (self.task or {}).get("name", "single_label")

    @property
    def pair(self) -> bool:
        """Whether the model classifies text pairs (`[a, b]`) instead of single texts."""
        return bool((self.task or {}).get("pair", False))

    @property
    def activation(self) -> str:
        """Logits -> scores: the task's own unless the export recorded another."""
        from .tasks import get

        return (self.task or {}).get("activation") or get(self.task_name).activation

    @property
    def thresholds(self) -> list[float] | None:
        """Per-label decision thresholds of a multi-label export (None: 0.5 each)."""
        return (self.task or {}).get("thresholds")

    @property
    def pair_truncation(self) -> str:
        return (self.task or {}).get("pair_truncation", "longest_first")

    @property
    def tokenizer_file(self) -> Path:
        return self.inside(self.tokenizer["file"], "tokenizer.file")

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.get("pad_token_id", 0))

    @property
    def raw(self) -> dict:
        """The manifest as the JSON dict it is written as (a fresh copy: edit the fields, not this)."""
        return self.to_dict()

    def usable(self, name: str) -> bool:
        """Whether variant `name` was built (a failed one is recorded but has no file)."""
        return self.variants[name].get("status") != FAILED

    def variant_file(self, name: str) -> Path:
        """Path of variant `name`'s ONNX file."""
        if not self.usable(name):
            raise BertfastError(self._failed_message(name))
        return self.inside(self.variants[name]["file"], f"variants.{name}.file")

    def inside(self, name: str, where: str) -> Path:
        """`folder / name`, refused unless it stays inside the export folder.

        The manifest is data anyone can edit: `"file": "../../x.onnx"`, an absolute path or a
        symbolic link leaving the folder would make bertfast load a model or tokenizer from
        anywhere. Links that stay inside the folder are fine.

        Raises:
            ManifestError: naming the field (`where`).
        """
        root = self.folder.resolve()
        rel = Path(name)
        try:
            target = (root / rel).resolve()
        except (OSError, RuntimeError, ValueError) as e:  # a symlink loop, a NUL byte
            raise ManifestError(f"manifest {self.path}: `{where}` {name!r} cannot be resolved ({e}); {FIX}.") from None
        if rel.is_absolute() or target == root or not target.is_relative_to(root):
            how = ("an absolute path" if rel.is_absolute() else "goes up with '..'" if ".." in rel.parts
                   else "is or goes through a symbolic link")
            raise ManifestError(
                f"manifest {self.path}: `{where}` {name!r} is outside the export folder ({how}); bertfast loads "
                f"only files inside {self.folder}: {FIX}."
            )
        return self.folder / rel

    def pick_variant(self, device: str, variant: str | None = None) -> str:
        """The variant to load on `device`: the one asked for, else the export's default.

        A variant that failed to build is never returned; asking for one by name is an error
        that gives the reason it failed.
        """
        if variant is not None:
            if variant not in self.variants:
                raise BertfastError(
                    f"variant {variant!r} is not in export {self.folder}; available: "
                    f"{', '.join(sorted(n for n in self.variants if self.usable(n)))}."
                )
            if not self.usable(variant):
                raise BertfastError(self._failed_message(variant))
            return variant
        name = self.default.get(device)
        if name is None or name not in self.variants or not self.usable(name):
            usable = [n for n, v in self.variants.items() if device in v.get("devices", []) and self.usable(n)]
            if not usable:
                listed = ", ".join(f"{n} ({'/'.join(v.get('devices', []))})" for n, v in self.variants.items()
                                   if self.usable(n))
                raise BertfastError(
                    f"export {self.folder} has no variant for device {device!r}; variants: {listed}. "
                    f"Re-export with `bertfast export --device {device}`."
                )
            name = usable[0]
        return name

    def _failed_message(self, name: str) -> str:
        ok = ", ".join(sorted(n for n in self.variants if self.usable(n)))
        return (f"variant {name!r} of export {self.path.parent if self.path else '?'} failed to build "
                f"({self.variants[name].get('reason', 'no reason recorded')}); choose another: {ok}.")

    # -- writing

    def to_dict(self) -> dict:
        """The JSON form, in field order (what `bertfast.json` holds)."""
        out = {}
        for f in fields(self):
            if f.name in ("path", "extra"):
                continue
            value = getattr(self, f.name)
            out[f.name] = {str(k): v for k, v in value.items()} if f.name == "id2label" else value
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    def write(self, folder: str | Path) -> Path:
        """Write `folder/bertfast.json` atomically; returns its path (also kept in `self.path`)."""
        self.path = Path(folder) / MANIFEST_NAME
        write_json(self.path, self.to_dict())
        return self.path

    @classmethod
    def from_dict(cls, raw: dict, path: Path | None = None) -> Manifest:
        """Parse a manifest dict, checked against the schema (`validate`).

        Raises:
            ManifestError: a missing or badly typed field, named in the message.
        """
        validate(raw, path)
        names = {f.name for f in fields(cls)} - {"path", "extra", "id2label"}
        known = {k: v for k, v in raw.items() if k in names}
        m = cls(**known, id2label={int(k): v for k, v in raw["id2label"].items()}, path=path,
                extra={k: v for k, v in raw.items() if k not in names and k != "id2label"})
        # Copies, so editing the manifest never edits the caller's dict.
        m.inputs, m.variants = list(m.inputs), {n: dict(v) for n, v in m.variants.items()}
        m.tokenizer, m.default = dict(m.tokenizer), dict(m.default or {})
        m.task = dict(m.task) if m.task else None
        return m


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
        raise BertfastError(f"manifest {path} is unreadable or corrupt ({e}); {FIX}.") from None
    except RecursionError:  # "[[[[...": deeper than the JSON parser goes
        raise BertfastError(f"manifest {path} is corrupt (nested too deeply); {FIX}.") from None
    if not isinstance(raw, dict) or raw.get("format") != "bertfast-export":
        raise BertfastError(f"{path} is not a bertfast export manifest; {FIX}.")
    version = raw.get("format_version", 0)
    if is_int(version) and version > FORMAT_VERSION:
        raise BertfastError(
            f"{path} has format_version {version}, newer than this bertfast understands ({FORMAT_VERSION}); "
            "upgrade bertfast."
        )
    m = Manifest.from_dict(raw, path)
    if not any(m.usable(n) for n in m.variants):
        raise BertfastError(f"manifest {path} lists no usable variants; {FIX}.")
    for name in m.variants:
        if not m.usable(name):
            continue  # recorded with its reason, no file
        f = m.variant_file(name)
        if not f.is_file():
            raise BertfastError(f"export {folder} is incomplete: variant {name!r} file {f.name} is missing; {FIX}.")
    if not m.tokenizer_file.is_file():
        raise BertfastError(f"export {folder} is incomplete: {m.tokenizer_file.name} is missing; {FIX}.")
    if m.eval_data and "file" in m.eval_data:
        m.inside(m.eval_data["file"], "eval_data.file")  # read by the benchmark
    return m
