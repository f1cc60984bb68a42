"""Trainer arguments that are not plain flags: the head-LR optimizer and the TrainingArguments
that differ between transformers 4.x and 5.x (read off the installed signature, not a version)."""

from __future__ import annotations

import inspect

from .families import family_of


def _optimizer(model, cfg, torch):
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
