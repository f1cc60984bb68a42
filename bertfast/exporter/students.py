"""Smaller students of the user's fine-tuned model, built from its own weights (`RECIPES`).

A student keeps a subset of the teacher's encoder layers (every other one first, as DistilBERT
initialises from BERT), and may keep only the most important feed-forward neurons and attention
heads of each layer (FastFormers' structured pruning: importance is the first-order Taylor
estimate |activation x gradient| of the distillation loss, per FFN neuron and per head mask).
Heads are pruned only where transformers can record it in the config (`prune_heads`, gone in
transformers 5): a student must load in transformers and Optimum like any checkpoint, and a
uniform FFN width is what `intermediate_size` can say.
Students are then distilled on the teacher's scores (`exporter/distill.py`) and go through the
same variants and the same gate as the teacher (`exporter/compress.py`).

Which layers a family stores where is the family table's (`families.Family.encoder_layers`,
`ffn`); a family without them (ALBERT shares one layer's weights) gets no students.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np

from ..errors import BertfastError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """One kind of student.

    Attributes:
        name: the variant prefix (`L3-int8-dynamic-pc` for a 3-layer student).
        layers: share of the teacher's encoder layers kept.
        ffn: share of each layer's feed-forward neurons kept (by importance).
        heads: share of each layer's attention heads kept (by importance).
    """

    name: str
    layers: float
    ffn: float = 1.0
    heads: float = 1.0

    def dims(self, teacher: dict) -> dict:
        """The student's layers, heads and FFN width for the teacher's `dims`."""
        return {"layers": max(1, round(teacher["layers"] * self.layers)),
                "heads": max(1, round(teacher["heads"] * self.heads)),
                "hidden": teacher["hidden"],
                "intermediate": max(8, round(teacher["intermediate"] * self.ffn))}


# Ordered from the least to the most compressed: the search stops once the budget is spent.
RECIPES = (
    Recipe("L2of3", 2 / 3),
    Recipe("L1of2", 1 / 2),
    Recipe("L1of2-ffn1of2", 1 / 2, ffn=1 / 2),
    Recipe("L1of3", 1 / 3),
    Recipe("L1of4", 1 / 4),  # 3 of 12 layers; rounds to L1of3's student on a 6-layer teacher
)


def pick(names: str | None, flag: str = "--students") -> tuple[Recipe, ...]:
    """The recipes named in `names` (comma-separated), in the table's order; all when None."""
    if names is None:
        return RECIPES
    by_name = {r.name: r for r in RECIPES}
    asked = [n.strip() for n in str(names).split(",") if n.strip()]
    unknown = [n for n in asked if n not in by_name]
    if not asked or unknown:
        raise BertfastError(f"{flag} takes recipe names from {', '.join(by_name)} (comma-separated); "
                            f"unknown: {', '.join(unknown) or repr(names)}.")
    return tuple(r for r in RECIPES if r.name in asked)


def layer_choice(n: int, k: int) -> list[int]:
    """Which of `n` teacher layers a `k`-layer student starts from: evenly spread from the first."""
    return sorted({min(n - 1, round(i * n / k)) for i in range(k)})


def layer_targets(n: int, k: int) -> list[int]:
    """Which of the teacher's hidden states (0 = embeddings, n = last layer) each of a `k`-layer
    student's layer outputs learns: evenly spaced, the last on the teacher's last, so the
    student's final representation is the one the classifier head was trained on."""
    return [round((j + 1) * n / k) for j in range(k)]


def _path(model, dotted: str):
    obj = model
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _set_path(model, dotted: str, value) -> None:
    parent, _, last = dotted.rpartition(".")
    setattr(_path(model, parent) if parent else model, last, value)


def supports(family) -> str | None:
    """Why this family gets no students (None: it does)."""
    if family.encoder_layers is None:
        return f"the {family.model_type} family's layers cannot be dropped or pruned (shared or unknown layout)"
    return None


def drop_layers(teacher, family, recipe: Recipe):
    """A copy of `teacher` with `recipe`'s share of its layers (the config says so too)."""
    import torch

    student = copy.deepcopy(teacher)
    layers = _path(student, family.encoder_layers)
    keep = layer_choice(len(layers), recipe.dims({"layers": len(layers), "heads": 1, "hidden": 1,
                                                  "intermediate": 8})["layers"])
    _set_path(student, family.encoder_layers, torch.nn.ModuleList([layers[i] for i in keep]))
    setattr(student.config, family.layers[0], len(keep))
    return student, keep


def prune(student, family, recipe: Recipe, ffn_importance: list, head_importance: np.ndarray | None) -> dict:
    """Keep the most important FFN neurons and heads of every layer (same count per layer, so
    the config can say it and transformers loads the student like any checkpoint)."""
    layers = _path(student, family.encoder_layers)
    dims = {"heads_pruned": {}, "intermediate": None}
    if recipe.ffn < 1:
        k = max(8, round(len(ffn_importance[0]) * recipe.ffn))
        for layer, imp in zip(layers, ffn_importance):
            _prune_ffn(layer, family, np.sort(np.argsort(-imp, kind="stable")[:k]))
        setattr(student.config, family.intermediate[0], k)
        dims["intermediate"] = k
    # Heads only where the model can prune itself and record it (config.pruned_heads, which
    # transformers 5 dropped): a student must load in transformers like any checkpoint.
    if recipe.heads < 1 and head_importance is not None and hasattr(student, "prune_heads"):
        n_heads = head_importance.shape[1]
        k = max(1, round(n_heads * recipe.heads))
        drop = {i: sorted(np.argsort(head_importance[i], kind="stable")[: n_heads - k].tolist())
                for i in range(len(layers))}
        student.prune_heads(drop)
        dims["heads_pruned"] = drop
    return dims


def _prune_ffn(layer, family, keep: np.ndarray) -> None:
    import torch

    idx = torch.as_tensor(keep, dtype=torch.long)
    up_name, down_name = family.ffn
    up, down = _path(layer, up_name), _path(layer, down_name)
    new_up = torch.nn.Linear(up.in_features, len(keep), bias=up.bias is not None)
    new_down = torch.nn.Linear(len(keep), down.out_features, bias=down.bias is not None)
    with torch.no_grad():
        new_up.weight.copy_(up.weight[idx])
        if up.bias is not None:
            new_up.bias.copy_(up.bias[idx])
        new_down.weight.copy_(down.weight[:, idx])
        if down.bias is not None:
            new_down.bias.copy_(down.bias)
    _set_path(layer, up_name, new_up)
    _set_path(layer, down_name, new_down)


def importance(student, family, batches, loss_fn) -> tuple[list, np.ndarray | None]:
    """First-order Taylor importance on the distillation loss: per FFN neuron |a x dL/da| of the
    intermediate activations, per head |dL/d mask| (Michel et al. 2019; FastFormers' rule)."""
    import torch

    layers = _path(student, family.encoder_layers)
    acts, ffn_imp = {}, [None] * len(layers)
    hooks = []
    for i, layer in enumerate(layers):
        def keep(mod, inp, out, i=i):
            out.retain_grad()
            acts[i] = out
        hooks.append(_path(layer, family.ffn[0]).register_forward_hook(keep))
    n_heads = student.config.num_attention_heads if hasattr(student.config, "num_attention_heads") else None
    mask = torch.ones(len(layers), n_heads, requires_grad=True) if n_heads else None
    head_imp = np.zeros((len(layers), n_heads)) if n_heads else None
    student.train()
    # Dropout masks from a seeded generator (the caller's left as it was): the same student
    # prunes the same neurons on every run.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            for feeds, target in batches:
                kw = {"head_mask": mask} if mask is not None else {}
                loss = loss_fn(student(**feeds, **kw).logits, target)
                loss.backward()
                for i, a in acts.items():
                    g = (a * a.grad).abs().sum(dim=(0, 1)).detach().numpy()
                    ffn_imp[i] = g if ffn_imp[i] is None else ffn_imp[i] + g
                if mask is not None and mask.grad is not None:
                    head_imp += mask.grad.abs().numpy()
                    mask.grad = None
                student.zero_grad()
        finally:
            for h in hooks:
                h.remove()
            student.eval()
    return ffn_imp, head_imp


def size(model) -> dict:
    """Parameters of a model (the table's column)."""
    return {"params": int(sum(p.numel() for p in model.parameters()))}
