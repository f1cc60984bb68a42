"""What a benchmark runs on: TARGET (export or model folder), the inputs to replay, the device.

Inputs are texts, or `(text, text_pair)` tuples for a text-pair model: an export says which in
its manifest (`task.pair`); a model folder is benchmarked on pairs when `--text-pair-column`
is given (or the data is a built-in pair set).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .. import tasks
from ..errors import BertfastError, DataError, ProviderError
from .backends.base import split_inputs
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
    task: str = "single_label"  # bertfast.tasks name
    pair: bool | None = False  # None: a model folder, which does not say (the data decides)
    activation: str = "softmax"  # logits -> scores, as the export (or the model's config) says
    thresholds: list[float] | None = None  # multi_label decision thresholds (None: 0.5 each)
    task_declared: bool = True  # False: a model folder whose config names no task


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
        return Target(t, mdir, m, m.id2label, cfg.max_length or m.max_length, m.model_max_length, shape,
                      task=m.task_name, pair=m.pair, activation=m.activation, thresholds=m.thresholds)
    if (t / "config.json").is_file():
        from ..families import family_of

        conf = json.loads((t / "config.json").read_text())
        id2label = {int(k): str(v) for k, v in (conf.get("id2label") or {}).items()}
        mml = family_of(conf).position_limit(conf)  # RoBERTa-style families reserve positions
        view = SimpleNamespace(**conf)
        declared = tasks.task_of_config(view)
        task = declared or tasks.TASKS["single_label"]
        return Target(None, t, None, id2label, cfg.max_length or min(128, mml), mml, ModelShape.from_config(conf),
                      task=task.name, pair=None, activation=task.activation_for(view),
                      task_declared=declared is not None)
    raise BertfastError(
        f"TARGET {display_path(t)} is neither an export folder (bertfast.json) nor a model folder (config.json)."
    )


def load_data(cfg: BenchConfig, target: Target, warnings: list[str] | None = None) -> tuple[list, list | None, str]:
    """The inputs (texts, or `(text, text_pair)` tuples) and labels to replay, and the source as
    reports show it.

    Default: the export's held-out `eval.jsonl` (pairs in its `text_pair` column), else the
    `bbc-news` test split; built-in datasets give their held-out test split. Labels are read
    as the target's task (`training.labels.coerce`: class names, label lists, floats); labels
    that do not fit it are dropped with a warning (the speed numbers stand without them), and
    a file without the label column gives labels None.

    A model-folder TARGET learns here what its config does not say: `target.pair` (whether the
    data holds pairs) and, for label lists, its task (the labels' one, e.g. multi_label: sigmoid).

    Raises:
        BertfastError: a pair model on data without a pair column, single-text data for a pair
            model or pairs for a single-text one (one line, naming --text-pair-column).
    """
    from ..training.builtin_data import BUILTIN

    warnings = [] if warnings is None else warnings
    where = f"TARGET {display_path(target.export_dir or target.model_dir)}"
    _check_flags(cfg, target, where)
    source, text_column, label_column, pair_column = _source(cfg, target)
    shown, s = display_path(source), str(source)
    task = target.task if target.task_declared else None  # None: the labels decide (model folder)
    if s in BUILTIN:
        d, labels, why = _read_builtin(s, pair_column, task)
    else:
        d, labels, why = _read_file(cfg, source, (text_column, label_column, pair_column), task)
    _check_pairs(d, target, where, shown)
    if target.pair is None:
        target.pair = d.pairs is not None
    if labels is not None and task is None and d.task != target.task:
        labels, why = _labels_decide(target, d.task, labels, why)
    if why is not None:
        metric = tasks.get(target.task).primary
        warnings.append(f"labels of --data {shown} do not fit the {target.task} task ({why}); {metric} not reported.")
    return list(d.inputs()), labels, shown


def _check_flags(cfg: BenchConfig, target: Target, where: str) -> None:
    """Refuse flags the target cannot use, before any data is read."""
    if target.pair is False and cfg.text_pair_column is not None:
        raise BertfastError(
            f"--text-pair-column is for exports of text-pair models, but {where} classifies single texts; "
            "drop --text-pair-column."
        )
    if cfg.label_separator is not None and target.task_declared and not tasks.get(target.task).label_lists:
        raise BertfastError(f"--label-separator splits labels into multi-label lists, but {where} is {target.task}; "
                            "drop --label-separator.")


def _source(cfg: BenchConfig, target: Target) -> tuple:
    """(source, text column, label column, pair column): the export's eval.jsonl unless --data."""
    eval_split = target.export_dir / "eval.jsonl" if target.export_dir is not None else None
    if cfg.data is None and eval_split is not None and eval_split.is_file():
        return eval_split, "text", "label", "text_pair" if target.pair else None
    return cfg.data or "bbc-news", cfg.text_column, cfg.label_column, cfg.text_pair_column


def _read_builtin(name: str, pair_column: str | None, task: str | None) -> tuple:
    """(data, labels, why labels are None) of a built-in dataset's held-out test split."""
    from ..training.data import load_splits
    from ..training.labels import coerce

    if pair_column is not None:
        raise BertfastError(f"--text-pair-column does not apply to the built-in dataset {name}; drop it.")
    d = load_splits(name).test  # its held-out rows, never the training ones
    if task is None or d.task == task:
        return d, d.labels, None
    try:  # e.g. 0/1 pair labels for a regression model: 0.0/1.0
        return d, coerce(d.labels, name, task)[1], None
    except DataError as e:
        return d, None, str(e)


def _read_file(cfg: BenchConfig, source, columns: tuple, task: str | None) -> tuple:
    """(data, labels, why labels are None) of a file: labeled when its labels fit the task,
    else its texts alone."""
    from ..formats import holds_columns
    from ..training.data import _MissingColumn, read_labeled

    text_column, label_column, pair_column = columns
    if not holds_columns(str(source)) and pair_column is not None:
        raise BertfastError(f"--data {display_path(source)}: a .txt file holds single texts (one per line); text "
                            "pairs need a CSV/TSV/JSONL/Parquet file with --text-pair-column.")

    def read(with_labels: bool):
        return read_labeled(source, text_column, label_column if with_labels else None, split="test",
                            text_pair_column=pair_column, label_separator=cfg.label_separator,
                            task=task if with_labels else None)

    if holds_columns(str(source)):  # a .txt file is one text per line, never labeled
        try:
            d = read(True)
            return d, d.labels, None
        except _MissingColumn as e:  # no label column: speed without quality
            if not label_column or e.column != label_column:
                raise
            why = None
        except DataError as e:  # labels of another kind than the task's; a text error recurs below
            why = str(e)
    else:
        why = None
    return read(False), None, why


def _check_pairs(d, target: Target, where: str, shown: str) -> None:
    """Pairs for a pair model, single texts for a single-text one; something to replay."""
    pairs = d.pairs is not None
    if target.pair and not pairs:
        raise BertfastError(
            f"{where} classifies text pairs, but --data {shown} holds single texts; pass --text-pair-column COLUMN "
            "(the column holding the second text of each pair)."
        )
    if target.pair is False and pairs:
        raise BertfastError(f"--data {shown} holds text pairs, but {where} classifies single texts; "
                            "use single-text data.")
    if not len(d):
        raise DataError(f"--data {shown} holds no texts.")


def _labels_decide(target: Target, found_name: str, labels: list, why: str | None) -> tuple:
    """A model folder whose config names no task: label lists make it multi-label (sigmoid per
    label); labels of another kind are not its (labels None, and why)."""
    found = tasks.get(found_name)
    if found.label_lists:
        target.task, target.activation = found.name, found.activation
        return labels, why
    return None, f"the labels are {found.name} scores, the model a {target.task} classifier"


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


def token_counts(target: Target, inputs: list, max_length: int) -> np.ndarray:
    """Real tokens per input after truncation, [CLS]/[SEP] included (both texts of a pair,
    truncated longest-first as `tokenizer(a, b, truncation=True)` and the runtime do)."""
    if target.model_dir is not None and (target.model_dir / "config.json").is_file():
        from ..errors import require

        tok = require("transformers", "train").AutoTokenizer.from_pretrained(target.model_dir, use_fast=True)
        a, b = split_inputs(inputs)
        ids = tok(a, b, truncation=True, max_length=max_length)["input_ids"]
        return np.array([len(x) for x in ids])
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(target.manifest.tokenizer_file))
    tok.enable_truncation(max_length)
    tok.no_padding()
    return np.array([len(e.ids) for e in tok.encode_batch([tuple(x) if isinstance(x, (tuple, list)) else x
                                                           for x in inputs])])
