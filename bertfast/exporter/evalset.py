"""The held-out data `bertfast export` validates every variant on, read as the model's task.

Where it comes from: `--eval-data FILE` (with `--text-pair-column` for pair models), else the
validation split `bertfast train` saved (`splits/validation.jsonl`, whose `text_pair` column,
when present, makes it pair data).

What it is read as:
- the task: `--task`, else the checkpoint's (`config.problem_type`, or one output ->
  regression), else inferred from the labels; data of another kind than the checkpoint
  declares is an error, not a guess;
- pair or not: the data has a second text <=> the export is a pair export; a model whose
  training.json records `pair` must be validated on pairs (and a single-text one on texts);
- ranking: pair data whose first texts repeat, with >= `tasks.ranking.MIN_GROUP` candidates
  per query on average (one score or two classes), is validated per query too (MRR, NDCG@10; NDCG@10 becomes the primary);
- labels: class names of id2label (single- and multi-label), numbers (regression). Integer
  labels are class ids only when that cannot be wrong: every id2label name is transformers'
  default `LABEL_<k>` (a checkpoint trained elsewhere on IMDB's 0/1), or `--label-names`
  names the classes in id order. The mapping used is logged and recorded in the manifest.
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import tasks as _tasks
from ..errors import BertfastError, DataError

if TYPE_CHECKING:
    from ..training.texts import LabeledTexts

log = logging.getLogger(__name__)

_DEFAULT_NAME = re.compile(r"LABEL_(\d+)")
SAVED_SPLIT = Path("splits") / "validation.jsonl"
SAVED_PAIR_COLUMN = "text_pair"  # what `LabeledTexts.to_jsonl` writes


@dataclass
class EvalSet:
    """Validation inputs and their truth in the task's terms.

    Attributes:
        source: where the rows came from (as given).
        data: the rows (texts, pairs, labels as read).
        task: the task the export validates and gates.
        y: class ids [n] (single_label), a 0/1 matrix [n, n_labels] (multi_label), floats [n]
            (regression).
        id2label: the export's class names (renamed by --label-names when given).
        groups: a query id per row for reranking data, else None.
        label_mapping: how data labels were matched to class ids, when not by name (None).
        positive: for a two-class reranker, the id of the class that means relevant.
        extra: unlabeled inputs (`--agreement-data`) that count for agreement, score error and
            batch invariance, after the labeled ones.
        extra_source: where they came from, and how many were used of how many.
    """

    source: str | None
    data: LabeledTexts
    task: _tasks.Task
    y: np.ndarray | None
    id2label: dict[int, str]
    groups: np.ndarray | None = None
    label_mapping: str | None = None
    positive: int | None = None
    extra: list = field(default_factory=list)
    extra_source: str | None = None

    @property
    def pair(self) -> bool:
        return self.data.pairs is not None

    @property
    def primary(self) -> str:
        """The metric the gate bounds (NDCG@10 when the rows are reranking lists)."""
        return self.task.primary_metric(self.groups is not None)

    def __len__(self) -> int:
        """Labeled rows."""
        return len(self.data)

    @property
    def n_inputs(self) -> int:
        return len(self.data) + len(self.extra)

    def inputs(self) -> list:
        """What a Classifier takes (texts, or (text, text_pair) tuples): the labeled rows, then
        the unlabeled agreement rows."""
        return list(self.data.inputs()) + list(self.extra)

    def take(self, keep: list[int]) -> EvalSet:
        """The eval set with labeled rows `keep` only (their order)."""
        idx = np.asarray(keep, dtype=int)
        groups = None if self.groups is None else self.groups[idx]
        return replace(self, data=self.data.take(list(keep)), y=None if self.y is None else self.y[idx], groups=groups)

    def rows(self) -> list[dict]:
        """eval.jsonl rows: text (+ text_pair) and the label as the export names it."""
        d, out = self.data, []
        for i, t in enumerate(d.texts):
            row = {"text": t, "text_pair": d.pairs[i]} if d.pairs is not None else {"text": t}
            out.append(row if self.y is None else {**row, "label": self.task.label_of(self.y[i], self.id2label)})
        if not out:  # an export gated on unlabeled data alone keeps those rows for reproducing it
            out = [{"text": x[0], "text_pair": x[1]} if isinstance(x, tuple) else {"text": x} for x in self.extra]
        return out


def parse_label_names(spec: str | None) -> list[str] | None:
    """`--label-names neg,pos` -> ["neg", "pos"]; empty or repeated names are an error."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        raise BertfastError(f"--label-names must be a comma list of class names (e.g. neg,pos); got {spec!r}.")
    names = [n.strip() for n in spec.split(",")]
    if not all(names):
        raise BertfastError(f"--label-names {spec!r} has an empty name; give one non-empty name per class, e.g. neg,pos.")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise BertfastError(f"--label-names {spec!r} repeats {', '.join(map(repr, dup))}; class names must be distinct.")
    return names


def load(cfg, model_dir: Path, config, training: dict) -> EvalSet:
    """The eval set of an export (see the module docstring); every refusal is one line.

    Args:
        cfg: the ExportConfig (eval_data, text/label/pair columns, label_separator, task,
            label_names, max_eval_samples).
        model_dir: the model folder (for the saved split).
        config: the model's transformers config (id2label, problem_type, num_labels).
        training: its training.json ({} for checkpoints not trained by bertfast).
    """

    src, pair_column = _source(cfg, model_dir, training)
    ev = _unlabeled(cfg, config, training) if src is None else _labeled(cfg, config, training, src, pair_column)
    if cfg.agreement_data:
        ev.extra, ev.extra_source = _agreement_rows(cfg, ev.pair)
    return ev


def _labeled(cfg, config, training: dict, src: str, pair_column: str | None) -> EvalSet:
    """The labeled eval rows, read as the model's task."""
    from ..training.data import read_labeled
    from ..training.splits import subsample

    task = _tasks.get(cfg.task) if cfg.task else None
    if task is not None:
        _tasks.check_config_task(task, config)

    def read(task_name):
        return read_labeled(src, cfg.text_column, cfg.label_column, "validation", pair_column,
                            cfg.label_separator, task_name)

    data = read(task.name if task else None)
    declared = _tasks.task_of_config(config)
    if task is None and declared is not None and data.task != declared.name:
        if not declared.has_classes and _tasks.get(data.task).has_classes and not _tasks.get(data.task).label_lists:
            data = read(declared.name)  # integer scores (0..5 similarity, 0/1 relevance) of a score model
        else:
            _tasks.check_config_task(_tasks.get(data.task), config)
            raise DataError(
                f"eval data {src} is a {data.task} task but the model has {config.num_labels} output "
                f"({declared.name}); use data of that kind, or pass --task."
            )
    task = _tasks.get(data.task)
    n_out = int(getattr(config, "num_labels", 0) or len(config.id2label))
    task.check_outputs(n_out, [str(v) for v in config.id2label.values()])

    id2label = {int(k): v for k, v in config.id2label.items()}
    names = parse_label_names(cfg.label_names)
    if names is not None and len(names) != len(id2label):
        raise BertfastError(
            f"--label-names gives {len(names)} name(s) ({', '.join(names)}) but the model has {len(id2label)} "
            f"class(es) ({', '.join(id2label[i] for i in range(len(id2label)))}); give one name per class, in id order."
        )
    lookup, mapping = _lookup(data, src, id2label, names) if task.has_classes else ({}, None)
    if names is not None:
        renamed = f"class names from --label-names (was {_short([id2label[i] for i in range(len(names))])})"
        mapping = f"{mapping}; {renamed}" if mapping else renamed
        id2label = dict(enumerate(names))
    if mapping:
        log.info("eval labels: %s", mapping)

    data = subsample(data, cfg.max_eval_samples, 0)
    n = len(id2label)
    y = task.encode(data.labels, lookup)
    groups = _tasks.ranking.groups_for(data.groups(), task.can_rerank(n))  # the rule training uses too
    positive = None
    if groups is not None:
        log.info("eval data is reranking data (%d queries, %.1f candidates each): primary metric %s",
                 len(set(groups.tolist())), len(groups) / len(set(groups.tolist())), _tasks.ranking.PRIMARY)
        positive = _positive(task, id2label, cfg.positive_label, training)
    return EvalSet(src, data, task, y, id2label, groups, mapping, positive)


def _positive(task: _tasks.Task, id2label: dict[int, str], given: str | None, training: dict) -> int | None:
    """The relevant class of a two-class reranker: --positive-label, else what training
    recorded, else inferred where the names leave no doubt; otherwise a one-line refusal."""
    if not task.has_classes:
        return None
    labels = [id2label[i] for i in range(len(id2label))]
    recorded = training.get("positive_label")  # training.json of a model bertfast trained
    pos = _tasks.ranking.positive_class(labels, given if given is not None else recorded)
    if pos is None:
        raise _tasks.ranking.unknown_positive(labels, "the model")
    return pos


def _source(cfg, model_dir: Path, training: dict) -> tuple[str, str | None]:
    """(eval file, pair column or None), checked against what the model was trained on; file None
    when only unlabeled `--agreement-data` is given."""
    if cfg.eval_data:
        src, pair_column = str(cfg.eval_data), cfg.text_pair_column
    elif (model_dir / SAVED_SPLIT).exists():
        src = str(model_dir / SAVED_SPLIT)
        pair_column = SAVED_PAIR_COLUMN if SAVED_PAIR_COLUMN in first_row(model_dir / SAVED_SPLIT) else None
        if cfg.text_pair_column and pair_column is None:
            raise DataError(
                f"--text-pair-column {cfg.text_pair_column!r} is for --eval-data; the saved split {src} holds single "
                "texts (no text_pair column). Pass the pair data with --eval-data FILE."
            )
    elif cfg.agreement_data:
        src, pair_column = None, cfg.text_pair_column
    else:
        raise DataError(
            f"{model_dir} has no saved validation split ({SAVED_SPLIT}, written by `bertfast train`); "
            "pass labeled held-out data with --eval-data FILE, or texts alone with --agreement-data FILE: "
            "every variant is validated on real data."
        )
    if src is None and cfg.max_metric_drop is not None:
        raise DataError(
            f"--max-metric-drop needs labeled data (--eval-data FILE); --agreement-data {cfg.agreement_data} holds "
            "texts only, so the gate bounds agreement with PyTorch (--min-agreement) instead."
        )
    trained_pair = training.get("pair")
    if trained_pair is None and isinstance(training.get("task"), dict):
        trained_pair = training["task"].get("pair")
    if trained_pair is True and pair_column is None:
        raise DataError(
            f"{model_dir} was trained on text pairs (training.json: pair) but the eval data {src or cfg.agreement_data} "
            "has no second text; pass --text-pair-column COLUMN with the data."
        )
    if trained_pair is False and pair_column is not None:
        raise DataError(
            f"{model_dir} was trained on single texts (training.json), but the eval data has text pairs "
            f"(column {pair_column!r}); drop --text-pair-column or export a pair model."
        )
    return src, pair_column


def _unlabeled(cfg, config, training: dict) -> EvalSet:
    """An eval set with no labeled rows (only `--agreement-data`): the checkpoint's task."""
    from ..training.texts import LabeledTexts

    task = _tasks.get(cfg.task) if cfg.task else _tasks.task_of_config(config) or _tasks.get(training.get("task"))
    _tasks.check_config_task(task, config)
    id2label = {int(k): v for k, v in config.id2label.items()}
    task.check_outputs(len(id2label), list(id2label.values()))
    names = parse_label_names(cfg.label_names)
    if names is not None:
        id2label = dict(enumerate(names))
    pair = cfg.text_pair_column is not None
    return EvalSet(None, LabeledTexts([], [], [] if pair else None, task.name), task, None, id2label)


def _agreement_rows(cfg, pair: bool) -> tuple[list, str]:
    """The unlabeled inputs of `--agreement-data` (a seeded sample of at most
    `--max-agreement-samples`), and how many were used of how many."""
    import random

    from ..training.data import read_labeled

    path = cfg.agreement_data
    try:
        d = read_labeled(path, cfg.text_column, None, "agreement", cfg.text_pair_column if pair else None)
    except DataError as e:
        raise DataError(f"--agreement-data {path}: {str(e).removeprefix(str(path)).lstrip(': ')}") from None
    if pair and d.pairs is None:
        raise DataError(f"--agreement-data {path}: the model classifies text pairs; pass --text-pair-column COLUMN.")
    rows = d.inputs()
    n, k = len(rows), min(len(rows), cfg.max_agreement_samples)
    if k < n:  # bounded time: a seeded sample, the same on every run
        rows = [rows[i] for i in sorted(random.Random(0).sample(range(n), k))]
    log.info("agreement data %s: %d of %d rows (texts only: agreement, score error and batch invariance)", path, k, n)
    return list(rows), f"{path} ({k} of {n} rows)"


def calibration(ev: EvalSet, model_dir: Path, n: int) -> tuple[EvalSet, list, str]:
    """(eval set, int8-static calibration inputs, where they came from), never rows that are
    validated on: the training split bertfast saved, else up to `n` agreement rows (a quarter
    at most) held out of validation, else up to `n` labeled rows (a quarter at most, whole
    queries for reranking) held out of validation."""
    if n == 0:
        return ev, [], ""  # no variant calibrates: every row validates
    train = training_inputs(model_dir, ev.pair)
    if train:
        return ev, train, f"training split ({len(train)} texts)"
    if ev.extra:
        k = min(n, len(ev.extra) // 4)
        return replace(ev, extra=ev.extra[k:]), ev.extra[:k], f"{k} rows of --agreement-data, held out of validation"
    k = min(n, len(ev) // 4)
    if k == 0:
        return ev, [], "none: no training split and too few eval rows to hold some out"
    rng = random.Random(0)
    groups = ev.groups if ev.groups is not None else np.arange(len(ev))
    order = list(np.unique(groups))
    rng.shuffle(order)
    held: list[int] = []
    for g in order:
        if len(held) >= k:
            break
        held += np.flatnonzero(groups == g).tolist()
    inputs = ev.data.inputs()
    keep = [i for i in range(len(ev)) if i not in set(held)]
    return ev.take(keep), [inputs[i] for i in sorted(held)], f"{len(held)} eval rows, held out of validation"


def training_inputs(model_dir: Path, pair: bool) -> list:
    """Training inputs (texts, or pairs for a pair model) bertfast saved; [] if none."""
    from ..training.data import read_labeled

    path = model_dir / "splits" / "train.jsonl"
    if not path.exists() or pair != (SAVED_PAIR_COLUMN in first_row(path)):
        return []
    return list(read_labeled(path, label_column=None, text_pair_column=SAVED_PAIR_COLUMN if pair else None).inputs())


def first_row(path: Path) -> dict:
    """The first JSON object of a JSONL file ({} if there is none or it is unreadable: the
    reader then reports the problem properly)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    return row if isinstance(row, dict) else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    return {}


def _lookup(data: LabeledTexts, src: str, id2label: dict[int, str], names: list[str] | None) -> tuple[dict[str, int], str | None]:
    """Data label -> class id, and how it was matched when not by name; unknown labels are an error."""
    n = len(id2label)
    current = names if names is not None else [id2label[i] for i in range(n)]
    lookup = {name: i for i, name in enumerate(current)}
    seen = set(_tasks.get(data.task).flat(data.labels))
    unknown = seen - set(lookup)
    defaults = all((m := _DEFAULT_NAME.fullmatch(id2label[i])) and int(m.group(1)) == i for i in range(n))
    ids = {x for x in unknown if x.isdigit() and x.isascii() and str(int(x)) == x and int(x) < n}
    mapping = None
    if unknown and ids == unknown and (defaults or names is not None):
        lookup.update({x: int(x) for x in ids})
        mapping = "integer labels are class ids" + (" (id2label LABEL_k)" if defaults else "")
        unknown = set()
    if unknown and (defaults or names is not None) and all(x.isdigit() for x in unknown):
        out = sorted(unknown - ids, key=lambda s: (len(s), s))
        raise DataError(
            f"eval data {src} has integer label(s) {', '.join(map(repr, out[:5]))} outside the model's class ids "
            f"0..{n - 1} ({', '.join(current[:5])}{', ...' if n > 5 else ''}); use data labeled with those classes."
        )
    if unknown:
        # No other guessing: a wrong mapping would silently corrupt every figure in the manifest.
        shown = sorted(unknown, key=lambda s: (len(s), s))
        ints = all(x.isdigit() for x in unknown)
        hint = (" (integer labels are read as class ids only when id2label is LABEL_0..LABEL_n, or with --label-names)"
                if ints and not defaults and names is None else "")
        raise DataError(
            f"eval data {src} has label(s) {', '.join(map(repr, shown[:5]))} that the model does not know; "
            f"its labels (id2label) are: {', '.join(current)}{hint}. Use data labeled with the same classes"
            + (", or name the classes in id order with --label-names." if names is None else ".")
        )
    return lookup, mapping


def _short(names: list[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (", ..." if len(names) > k else "")
