"""What a finished training run leaves: the test-set report, `training.json`, and the model
folder itself (model, tokenizer, held-out splits), written whole or not at all.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import tasks
from ..utils import atomic_dir, library_versions, write_json
from .args import same_rows
from .checkpoints import length_histogram
from .texts import Splits

_SPLITS = ("train", "validation", "test")


def test_report(trainer, test_ds, task, activation: str, y: np.ndarray, groups, label_names: list[str],
                positive: int | None = None) -> dict:
    """The test split's metrics (`Task.evaluate`), plus precision/recall/F1 per class
    (single-label) or per label (multi-label) under `test_per_class` / `test_per_label`.

    The caller points compute_metrics at the test split's truth first: Trainer calls it here.
    """
    pred = trainer.predict(test_ds, metric_key_prefix="test")
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    scores = tasks.activate(np.asarray(logits), activation)
    label_ids = np.asarray(pred.label_ids)
    # The split's query ids describe its own row order; rows that came back in another order
    # (several processes) are scored against their own labels, without ranking metrics.
    in_order = same_rows(label_ids, y)
    report = {"test": task.evaluate(scores, y if in_order else label_ids, groups=groups if in_order else None,
                                     positive=positive)}
    report.update(task.test_report(scores, label_ids, label_names))
    return report


def training_summary(cfg, src: str, config, tokenizer, splits: Splits, limit: int, trainer, *, task, activation: str,
                     ranking: bool, primary: str, metrics: dict, seconds: float, device: str,
                     positive: str | None = None) -> dict:
    """training.json: what was trained from what data, how well, where, with which libraries.

    `bertfast export` reads it back (task, pair, activation, labels, max_length), so a model
    folder says how to validate and serve it without the flags it was trained with.
    """
    return {
        "bertfast_training": 1,
        "model": cfg.model, "model_source": src, "model_type": config.model_type,
        "task": task.name, "pair": splits.pair, "problem_type": task.problem_type,
        "activation": activation, "ranking": ranking, "primary_metric": primary, "positive_label": positive,
        "data": {"source": str(cfg.data), "split_note": splits.split_note,
                 "text_column": cfg.text_column, "label_column": cfg.label_column,
                 "text_pair_column": cfg.text_pair_column, "label_separator": cfg.label_separator,
                 "rows": {k: len(getattr(splits, k)) for k in _SPLITS},
                 "label_counts": {k: getattr(splits, k).counts() for k in _SPLITS},
                 **_score_ranges(splits)},
        "labels": splits.label_names,
        "max_length": cfg.max_length, "model_max_length": limit,
        "metrics": metrics,
        "log_history": trainer.state.log_history,
        "token_lengths": length_histogram(tokenizer, splits.train.texts, cfg.max_length, limit,
                                          pairs=splits.train.pairs),
        "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
        "train_seconds": round(seconds, 1),
        "device": device,
        "world_size": trainer.args.world_size,  # processes that trained (torchrun / accelerate)
        "versions": library_versions(),
    }


def write_model_folder(out: Path, trainer, tokenizer, splits: Splits, task, max_length: int, summary: dict) -> None:
    """`out` as `bertfast export` and `Classifier` read it: the best model with its labels and
    problem_type in config.json, the tokenizer (its model_max_length = the trained length), the
    three splits as JSONL and training.json.

    Written in a hidden temporary folder moved into place when complete, so a crash never
    leaves something that looks like a model.
    """
    with atomic_dir(out) as tmp:
        config = trainer.model.config
        config.id2label = splits.id2label
        config.label2id = splits.label2id
        config.problem_type = task.problem_type
        trainer.save_model(str(tmp))
        tokenizer.model_max_length = max_length
        tokenizer.save_pretrained(str(tmp))
        (tmp / "splits").mkdir()
        for name in _SPLITS:
            getattr(splits, name).to_jsonl(tmp / "splits" / f"{name}.jsonl")
        # Trainer's pickle of TrainingArguments: training.json records the settings readably.
        (tmp / "training_args.bin").unlink(missing_ok=True)
        write_json(tmp / "training.json", summary)


def _score_ranges(splits: Splits) -> dict:
    """Regression data: min/max/mean score per split (what label counts are for classes)."""
    if tasks.get(splits.task).has_classes:  # label counts describe class data
        return {}
    return {"score_stats": {k: {"min": min(d.labels), "max": max(d.labels), "mean": float(np.mean(d.labels))}
                            for k in _SPLITS for d in [getattr(splits, k)]}}
