"""The kinds of problem a sequence classifier solves: one module per task, one row each in `TASKS`.

- `single_label`: one class per input; softmax; accuracy + macro-F1 (the classic notebook).
- `multi_label`: any set of classes per input; sigmoid per label with tuned thresholds.
- `regression`: one number per input; Pearson, Spearman, MAE.

Orthogonal to the row: the input is a single text or a text *pair* (`pair` in the manifest),
and pair data evaluated per query is reranking (`ranking`: MRR, NDCG@10, which then becomes the
primary metric). The task is decided once, where a model or its data is loaded, and every stage
asks its `Task` (see `base.Task`); an unknown task name raises.

Adding a task is one module (a `Task` subclass) plus one row below.

Needs only numpy (the runtime imports it).
"""

from __future__ import annotations

from ..errors import BertfastError
from . import ranking
from .base import ACTIVATIONS, Task, activate
from .multi_label import MultiLabel
from .regression import Regression
from .single_label import SingleLabel

__all__ = ["ACTIVATIONS", "TASKS", "TASK_NAMES", "Task", "activate", "check_config_task", "get", "ranking",
           "task_of_config"]

TASKS: dict[str, Task] = {t.name: t for t in (SingleLabel(), MultiLabel(), Regression())}
TASK_NAMES = tuple(TASKS)
_BY_PROBLEM = {t.problem_type: t for t in TASKS.values()}


def get(name: str | None, flag: str = "--task") -> Task:
    """The task named `name` (None: single_label, what exports before tasks existed are)."""
    if name is None:
        return TASKS["single_label"]
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise BertfastError(f"{flag} must be one of {', '.join(TASK_NAMES)}; got {name!r}.") from None


def task_of_config(config) -> Task | None:
    """The task a transformers config declares (`problem_type`), None when it does not say.

    A one-output model without `problem_type` is a regression/score model (transformers
    itself trains `num_labels == 1` with MSE).
    """
    pt = getattr(config, "problem_type", None)
    if pt in _BY_PROBLEM:
        return _BY_PROBLEM[pt]
    if getattr(config, "num_labels", 2) == 1:
        return TASKS["regression"]
    return None


def check_config_task(task: Task, config, flag: str = "--task") -> None:
    """Refuse data of one task for a checkpoint declaring another (e.g. list labels for a
    softmax classifier): training it would silently swap the loss, exporting it would gate the
    wrong metric."""
    declared = task_of_config(config)
    if declared is not None and declared != task and getattr(config, "problem_type", None):
        raise BertfastError(
            f"the data is a {task.name} task but the checkpoint declares problem_type "
            f"{config.problem_type!r} ({declared.name}); use data of that kind, or pass {flag} {declared.name}."
        )
