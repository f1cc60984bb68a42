"""The export manifest (`bertfast.json`): what an export folder holds and how it was made.

Written by `bertfast.export`, read by the runtime and the benchmark. Reading it needs no torch or
transformers, so the inference path stays free of both.

Its layout (format 1) is declared once, field by field with what each must be: the top level in
`Manifest` below, the blocks in bertfast/manifest_schema.py (`TaskBlock` for `task`,
`WindowBlock` / `BatchingBlock` per provider for `window` / `batching`, `MixedBlock` for a
variant's `mixed`). The checks on load are derived from those declarations; a variant entry
(`variants.<name>`) is an object checked against `manifest_schema.VARIANT`. Lengths are checked
against the positions the exported model has (its own config.json, see `position_limit`).

Exports written before a field existed load as is (it takes its default); fields this version
does not know are kept (`extra`) and written back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import BertfastError
from .families import FAMILIES, GENERIC
from .manifest_schema import (
    FAILED,
    FIX,
    BatchingBlock,
    ManifestError,
    TaskBlock,
    WindowBlock,
    at_least,
    bad,
    is_dict,
    is_int,
    is_name,
    is_names,
    is_number,
    is_str,
    optional,
    per_provider,
    schema_of,
    spec,
    to_json,
)
from .manifest_schema import validate as _validate
from .tasks import TASKS
from .utils import write_json

__all__ = ["FORMAT_VERSION", "MANIFEST_NAME", "Manifest", "ManifestError", "load_manifest", "validate"]

MANIFEST_NAME = "bertfast.json"
FORMAT_VERSION = 1
OBJECT, OPT_OBJECT = ("an object", is_dict), ("an object or null", optional(is_dict))


@dataclass(kw_only=True)
class Manifest:
    """A `bertfast.json`: the export writes one through `write`, the runtime reads one with `load_manifest`.

    Field order is the order written. `path` is where it was read from (None before `write`);
    `extra` keeps fields this version does not know, so rewriting an export loses nothing.
    `task`, `window` and `batching` hold typed blocks whoever sets them (a plain dict is parsed
    and checked on assignment).
    """

    format: str = spec('"bertfast-export"', lambda v: v == "bertfast-export", "bertfast-export", required=True)
    format_version: int = spec("an integer >= 1", at_least(1), FORMAT_VERSION)
    bertfast_version: str = spec("a string", is_str, "0")
    created: str | None = spec("a string or null", optional(is_str), None)  # ISO 8601, UTC
    # model_dir as given (never resolved), sha256 of the weights, model_type, family, architecture
    source: dict = spec(*OBJECT, factory=dict)
    id2label: dict[int, str] = spec('an object {"0": "label", "1": ...}', is_dict)  # as config.json's
    max_length: int = spec("an integer >= 3", at_least(3))  # tokens per window, [CLS]/[SEP] included
    model_max_length: int | None = spec("an integer >= 3 or null", optional(at_least(3)), None)  # positions
    inputs: list[str] = spec("a non-empty list of input names", lambda v: is_names(v) and 0 < len(v) == len(set(v)))
    output: str = spec("an output name (string)", is_name, "logits")
    task: TaskBlock | None = spec(*OPT_OBJECT, None)  # None: single_label (exports before tasks)
    opset: int | None = spec("an integer or null", optional(at_least(1)), None)
    tokenizer: dict = spec(*OBJECT, factory=lambda: {"file": "tokenizer.json", "pad_token_id": 0})
    quantization_preset: str | None = spec("a string or null", optional(is_str), None)
    # name -> {status, file, precision, devices, description, fused_ops, validation, speed,
    # eligible, reason[, mixed]}; a failed one has status "failed", its reason and no file.
    variants: dict[str, dict] = spec("an object {name: {...}} with at least one variant",
                                     lambda v: is_dict(v) and len(v) > 0, factory=dict)
    default: dict[str, str | None] = spec("an object {device: variant name or null}", optional(is_dict),
                                          factory=dict)  # one key per provider
    max_accuracy_drop: float | None = spec("a finite number or null", optional(is_number), None)
    eval_data: dict | None = spec(*OPT_OBJECT, None)  # {source, rows, file}
    training: dict | None = spec(*OPT_OBJECT, None)  # {data, metrics, max_length} of bertfast train
    versions: dict = spec(*OBJECT, factory=dict)
    reference: dict | None = spec(*OPT_OBJECT, None)  # PyTorch fp32's figures and speed
    batching: dict[str, BatchingBlock] | None = spec(*OPT_OBJECT, None)
    window: dict[str, WindowBlock] | None = spec(*OPT_OBJECT, None)
    export_seconds: float | None = spec("a finite number or null", optional(is_number), None)
    path: Path | None = field(default=None, repr=False, compare=False)
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.model_max_length is None:
            self.model_max_length = self.max_length

    def __setattr__(self, name: str, value):
        # The exporter assigns blocks as the plain dicts it builds: parsed (and checked) here, so
        # every reader gets the typed block and a bad one fails where it is made.
        if name == "task":
            value = TaskBlock.from_dict(value) if value else None
        elif name in ("window", "batching"):
            value = per_provider(WindowBlock if name == "window" else BatchingBlock, value, name)
        super().__setattr__(name, value)

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
    def task_block(self) -> TaskBlock:
        """`task`, or what an export written before tasks existed is: single_label, single texts."""
        return self.task if self.task is not None else TaskBlock(name="single_label")

    @property
    def task_name(self) -> str:
        """A name in `bertfast.tasks.TASKS` (exports before tasks: single_label)."""
        return self.task_block.name

    @property
    def pair(self) -> bool:
        """Whether the model classifies text pairs (`[a, b]`) instead of single texts."""
        return self.task_block.pair

    @property
    def activation(self) -> str:
        """Logits -> scores: the task's own unless the export recorded another."""
        return self.task_block.activation or TASKS[self.task_name].activation

    @property
    def thresholds(self) -> list[float] | None:
        """Per-label decision thresholds of a multi-label export (None: 0.5 each)."""
        return self.task_block.thresholds

    @property
    def positive_label(self) -> str | None:
        """The class that means relevant for a two-class reranker (None: not recorded)."""
        return self.task_block.positive_label

    @property
    def pair_truncation(self) -> str:
        return self.task_block.pair_truncation

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
            out[f.name] = {str(k): v for k, v in value.items()} if f.name == "id2label" else to_json(value)
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    def write(self, folder: str | Path) -> Path:
        """Write `folder/bertfast.json` atomically; returns its path (also kept in `self.path`)."""
        self.path = Path(folder) / MANIFEST_NAME
        write_json(self.path, self.to_dict())
        return self.path

    @classmethod
    def from_dict(cls, raw: dict, path: Path | None = None) -> Manifest:
        """Parse a manifest dict, checked against the schema (`validate`), blocks typed.

        Raises:
            ManifestError: a missing or badly typed field, named in the message.
        """
        blocks = _validate(raw, path, schema_of(cls))
        names = {f.name for f in fields(cls)} - {"path", "extra", "id2label"}
        known = {k: v for k, v in raw.items() if k in names}
        # Copies, so editing the manifest never edits the caller's dict.
        known["variants"] = {n: {**v, **({"mixed": blocks.mixed[n]} if n in blocks.mixed else {})}
                             for n, v in raw["variants"].items()}
        known.update(inputs=list(raw["inputs"]), default=dict(raw.get("default") or {}), task=blocks.task,
                     window=blocks.window, batching=blocks.batching)
        if "tokenizer" in raw:
            known["tokenizer"] = dict(raw["tokenizer"])
        return cls(**known, id2label={int(k): v for k, v in raw["id2label"].items()}, path=path,
                   extra={k: v for k, v in raw.items() if k not in names and k != "id2label"})


def validate(raw, path=None) -> None:
    """Check a parsed `bertfast.json` against `Manifest`'s fields, its blocks' and the rules across them.

    Raises:
        ManifestError: naming the first bad field, what it must be and what it holds.
    """
    _validate(raw, path, schema_of(Manifest))


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
    _check_positions(m, raw)
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


def position_limit(folder: Path) -> tuple[int, str] | None:
    """Token positions the exported model can encode, from the export's own config.json, and
    where the number comes from; None where there is nothing to go by (no config.json, no
    `max_position_embeddings`).

    The rule of training's `model_length_limit` (`Family.position_limit`: RoBERTa-style models
    reserve padding_idx + 1 positions), read from the JSON so the runtime needs no transformers.
    """
    try:
        config = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BertfastError(f"export {folder}: config.json is unreadable or corrupt ({e}); {FIX}.") from None
    if not isinstance(config, dict) or not is_int(config.get("max_position_embeddings")):
        return None
    family = FAMILIES.get(str(config.get("model_type") or ""), GENERIC)  # no log: the export logged it
    try:
        limit = family.position_limit(config)
    except (TypeError, ValueError):  # a pad_token_id that is no number: nothing to go by
        return None
    n = config["max_position_embeddings"]
    reserved = f", {n - limit} reserved by {family.model_type}" if n != limit else ""
    return limit, f"max_position_embeddings {n} in config.json{reserved}"


def _check_positions(m: Manifest, raw: dict) -> None:
    """Refuse lengths over the model's positions: a longer text would otherwise fail inside ONNX
    Runtime, with a message that names neither the field nor the limit."""
    found = position_limit(m.folder)
    if found is None:
        return
    limit, why = found
    # A window is at most max_length: one over the limit is named first, it is what long texts get.
    lengths = [(f"window.{device}.max_length", w.max_length) for device, w in (m.window or {}).items()]
    lengths.append(("max_length", m.max_length))
    if raw.get("model_max_length") is not None:
        lengths.append(("model_max_length", m.model_max_length))
    for where, n in lengths:
        if n > limit:
            raise bad(m.path, where, f"at most {limit}, the positions the model has ({why})", n)
    if raw.get("model_max_length") is None:
        m.model_max_length = limit  # an export before the field: the model's limit, not its window
