"""What Trainer gets besides the data: TrainingArguments built from the flags (with the names
that differ between transformers 4.x and 5.x read off the installed signature, not a version),
the head-LR optimizer, and what each task (`bertfast.tasks`) hands Trainer: label tensors,
loss, compute_metrics."""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path

import numpy as np

from ..families import family_of


def head_lr_optimizer(model, cfg, torch):
    """AdamW with the classification head (new, randomly initialized) at `head_lr`.

    The pretrained encoder needs small steps; the fresh head (and the pooler, which encoders
    trained with mean pooling never used) can move much faster, so a short run converges.
    Trainer still builds the warm-up/decay schedule around this optimizer.
    """
    family = family_of(model.config)
    head, body = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if family.is_head(name) else body).append((name, p))

    def groups(params, lr):
        no_decay = [p for n, p in params if n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n]
        decay = [p for n, p in params if not (n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n)]
        return [{"params": decay, "lr": lr, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "lr": lr, "weight_decay": 0.0}]

    return torch.optim.AdamW(groups(body, cfg.lr) + groups(head, cfg.head_lr), lr=cfg.lr)


def _compat_args(transformers, warmup_ratio: float) -> dict:
    """TrainingArguments that transformers 5 renamed: warmup as a ratio, length-grouped batches
    (batches of similar length waste less compute on padding; dynamic padding below)."""
    params = inspect.signature(transformers.TrainingArguments.__init__).parameters
    if "warmup_ratio" in params:  # 4.x
        return {"warmup_ratio": warmup_ratio, "group_by_length": True}
    # 5.x: a float warmup_steps below 1 is the ratio of all training steps.
    return {"warmup_steps": min(warmup_ratio, 0.999), "train_sampling_strategy": "group_by_length"}


def training_arguments(transformers, torch, cfg, ckpt_dir: Path, train_rows: int, best_metric: str,
                       greater_is_better: bool):
    """TrainingArguments of a run: the flags of `cfg`, plus what bertfast fixes for every run.

    Evaluated and saved once per epoch, keeping the best and the latest checkpoint (so both
    --resume and load-best-at-end work), the best chosen on `best_metric`; logged four times
    per epoch; no reporting integrations.
    """
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return transformers.TrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        weight_decay=cfg.weight_decay,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,  # the best and the latest, so resume and best-model both work
        load_best_model_at_end=True,
        metric_for_best_model=best_metric,
        greater_is_better=greater_is_better,
        **_compat_args(transformers, cfg.warmup_ratio),
        logging_strategy="steps",
        logging_steps=max(1, math.ceil(train_rows / cfg.batch_size / 4)),
        report_to=[],
        seed=cfg.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Under torchrun on a machine without CUDA, accelerate sets up gloo DDP only when told the
        # run is on CPU; without it every rank would silently train its own model (world_size 1).
        use_cpu=not torch.cuda.is_available() and several,
        ddp_find_unused_parameters=False,  # every parameter of an encoder + head gets a gradient
        disable_tqdm=False,
        save_only_model=False,
    )


# ----------------------------------------------------------------------------- per task
# What Trainer gets besides flags for one task (`bertfast.tasks`): label tensors, the loss of a
# sigmoid score model, and compute_metrics.

def same_rows(label_ids: np.ndarray, y: np.ndarray) -> bool:
    """Whether predictions came back in the split's row order (their labels equal the split's):
    only then do the split's query ids apply to them."""
    a, b = np.asarray(label_ids, np.float64), np.asarray(y, np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, atol=1e-6))


def trainer_class(transformers, torch):
    """Trainer that evaluates in dataset order in one process. With group_by_length Trainer also
    shuffles evaluation rows into length groups; ranking metrics need each row's query id, so
    they need the split's own order (several processes keep Trainer's sampler)."""

    class OrderedEvalTrainer(transformers.Trainer):
        def _get_eval_sampler(self, eval_dataset):
            if eval_dataset is not None and self.args.world_size <= 1:
                return torch.utils.data.SequentialSampler(eval_dataset)
            return super()._get_eval_sampler(eval_dataset)

    return OrderedEvalTrainer


def make_compute_metrics(task, activation: str, evaluating: dict):
    """Trainer's compute_metrics: `Task.evaluate` on activated logits.

    `evaluating` holds `y` and `groups` of the split being evaluated (the caller switches it
    before predicting on another split); ranking metrics are added when its rows line up.
    """
    from .. import tasks

    def compute_metrics(p):
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        y = np.asarray(p.label_ids)
        groups = evaluating.get("groups")
        if groups is not None and not same_rows(y, evaluating["y"]):
            groups = None
        return task.evaluate(tasks.activate(np.asarray(logits), activation), y, groups=groups,
                             positive=evaluating.get("positive"))

    return compute_metrics


def sigmoid_score_loss(torch):
    """BCE-with-logits on one logit, for a score model whose outputs pass through a sigmoid (a
    sentence-transformers CrossEncoder): MSE on the raw logit would train a different scale
    than the one the export and runtime apply. Trainer's compute_loss_func signature; a sum
    over `num_items_in_batch` when Trainer gives it (gradient accumulation, several devices)."""

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"].reshape(-1)
        total = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels.reshape(-1).to(logits.dtype), reduction="sum")
        return total / (num_items_in_batch if num_items_in_batch is not None else logits.numel())

    return loss
