"""The kinds of problem a sequence classifier solves, declared once: `TASKS`.

One row per output kind, read by training (loss, labels), export (metrics, gate, agreement),
the runtime (scores and decisions) and serving:

- `single_label`: one class per input; softmax; accuracy + macro-F1 (the classic notebook).
- `multi_label`: any set of classes per input; sigmoid per label, each with its own decision
  threshold (tuned on the validation split at export, stored in the manifest); micro/macro-F1
  and exact-match ratio. Softmax would be wrong here: it makes the labels compete.
- `regression`: one float per input (e.g. a similarity score); raw output (or sigmoid for a
  one-logit cross-encoder trained with BCE); Pearson, Spearman, MAE.

Orthogonal to the row: the input is a single text or a text *pair* (`pair` in the manifest),
and pair tasks evaluated per query (reranking) add MRR and NDCG@10, which then become the
primary metric. The score a reranker ranks by is `relevance`: the one output for one-logit
models, P(last class) for two-class models.

Needs only numpy (the runtime imports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BertfastError
from .metrics import accuracy_f1, multilabel_f1, ranking_metrics, regression_metrics, softmax

ACTIVATIONS = ("softmax", "sigmoid", "identity")
RANKING_PRIMARY = "ndcg@10"
# Pair data is evaluated as ranking (MRR, NDCG@10 per query) when queries have this many
# candidates on average: a headline with its own article and one negative is a pair
# classification, five graded candidates are a reranking list.
RANKING_MIN_GROUP = 3


@dataclass(frozen=True)
class Task:
    """One kind of problem.

    Attributes:
        name: the manifest's `task.name` and the `--task` value.
        problem_type: transformers' `config.problem_type` for it.
        activation: logits -> scores.
        primary: the metric the export's gate bounds (points = metric x 100).
        higher_is_better: for `primary`.
        agreement: what "the variant agrees with PyTorch" means for one input.
        description: one line for --help and docs.
    """

    name: str
    problem_type: str
    activation: str
    primary: str
    agreement: str
    description: str
    higher_is_better: bool = True

    def scores(self, logits: np.ndarray, activation: str | None = None) -> np.ndarray:
        """Scores from logits, float32 [n, n_outputs]."""
        return activate(logits, activation or self.activation)


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("single_label", "single_label_classification", "softmax", "accuracy",
         "same top label", "one class per text (softmax)"),
    Task("multi_label", "multi_label_classification", "sigmoid", "micro_f1",
         "same label set", "any set of classes per text (sigmoid per label, tuned thresholds)"),
    Task("regression", "regression", "identity", "pearson",
         "|score difference| <= 0.05 x the reference's score range", "one number per text or pair"),
)}
TASK_NAMES = tuple(TASKS)
_BY_PROBLEM = {t.problem_type: t for t in TASKS.values()}


def get(name: str | None) -> Task:
    """The task named `name` (None: single_label, what exports before tasks existed are)."""
    if name is None:
        return TASKS["single_label"]
    try:
        return TASKS[name]
    except KeyError:
        raise BertfastError(f"--task must be one of {', '.join(TASK_NAMES)}; got {name!r}.") from None


def activate(logits: np.ndarray, activation: str) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float32)
    if activation == "softmax":
        return softmax(z)
    if activation == "sigmoid":
        # exp of a negative number only: no overflow warning for large |logit|.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(np.float32)
    return z


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


def score_activation(config, task: Task) -> str:
    """Activation of a one-logit score model: sigmoid when trained with BCE by
    sentence-transformers' CrossEncoder (it records its activation in config.json), else the
    task's own."""
    if task.name != "regression":
        return task.activation
    st = getattr(config, "sentence_transformers", None) or {}
    act = str(st.get("activation_fn", "") if isinstance(st, dict) else "")
    legacy = str(getattr(config, "sbert_ce_default_activation_function", "") or "")
    return "sigmoid" if "Sigmoid" in act or "Sigmoid" in legacy else "identity"


def infer_from_labels(labels: list) -> str:
    """The task a column of labels implies: lists -> multi_label, non-integer numbers ->
    regression, anything else -> single_label. Mixed kinds are an error naming a row."""
    kinds = {}
    for i, y in enumerate(labels):
        if isinstance(y, (list, tuple)):
            k = "multi_label"
        elif isinstance(y, float) and not float(y).is_integer():
            k = "regression"
        else:
            k = "single_label"
        kinds.setdefault(k, i)
    if "multi_label" in kinds and len(kinds) > 1:
        other = min(i for k, i in kinds.items() if k != "multi_label")
        raise BertfastError(
            f"labels mix lists and single values (data row {kinds['multi_label'] + 1} is a list, row {other + 1} "
            "is not); a multi-label file needs a list (or --label-separator string) in every row."
        )
    if "multi_label" in kinds:
        return "multi_label"
    return "regression" if "regression" in kinds else "single_label"


def check_config_task(task: Task, config, flag: str = "--task") -> None:
    """Refuse data of one task for a checkpoint declaring another (e.g. list labels for a
    softmax classifier): training it would silently swap the loss, exporting it would gate the
    wrong metric."""
    declared = task_of_config(config)
    if declared is not None and declared.name != task.name and getattr(config, "problem_type", None):
        raise BertfastError(
            f"the data is a {task.name} task but the checkpoint declares problem_type "
            f"{config.problem_type!r} ({declared.name}); use data of that kind, or pass {flag} {declared.name}."
        )


# ----------------------------------------------------------------------------- decisions


def decide(task: Task, scores: np.ndarray, thresholds: list[float] | None = None) -> np.ndarray:
    """What the model says per input: class id (single_label), 0/1 per label (multi_label), the
    score (regression)."""
    if task.name == "single_label":
        return scores.argmax(-1)
    if task.name == "multi_label":
        th = np.full(scores.shape[1], 0.5, np.float32) if thresholds is None else np.asarray(thresholds, np.float32)
        return (scores >= th).astype(np.int8)
    return scores[:, 0]


def relevance(scores: np.ndarray) -> np.ndarray:
    """The score a reranker ranks by: the one output, or P(last class) of a classifier."""
    return scores[:, -1]


def tune_thresholds(scores: np.ndarray, y: np.ndarray, grid: int = 19) -> list[float]:
    """Per-label decision threshold maximizing that label's F1 on validation scores.

    Candidates are 0.05, 0.10, ..., 0.95; ties keep the one nearest 0.5, and a label with no
    positives keeps 0.5 (nothing to tune on).
    """
    cands = np.linspace(0.05, 0.95, grid)
    out = []
    for j in range(scores.shape[1]):
        s, t = scores[:, j], y[:, j].astype(bool)
        if not t.any():
            out.append(0.5)
            continue
        best, best_f1 = 0.5, -1.0
        for c in sorted(cands, key=lambda c: abs(c - 0.5)):
            p = s >= c
            tp = int((p & t).sum())
            f1 = 2 * tp / (int(p.sum()) + int(t.sum()))
            if f1 > best_f1 + 1e-12:
                best, best_f1 = float(c), f1
        out.append(round(best, 4))
    return out


# ----------------------------------------------------------------------------- metrics


def evaluate(task: Task, scores: np.ndarray, y: np.ndarray | None, thresholds: list[float] | None = None,
             groups: np.ndarray | None = None) -> dict:
    """The task's metrics of `scores` against truth `y` (None: no labels, no metrics).

    `y`: class ids (single_label), a 0/1 matrix (multi_label), floats (regression).
    `groups`: a query id per row; with it, ranking metrics (MRR, NDCG@10) over queries by
    `relevance(scores)`, graded by `y` (class id or float relevance) are added.
    """
    if y is None:
        return {}
    if task.name == "single_label":
        out = accuracy_f1(scores.argmax(-1), y, scores.shape[1])
    elif task.name == "multi_label":
        out = multilabel_f1(decide(task, scores, thresholds), y)
    else:
        out = regression_metrics(scores[:, 0], np.asarray(y, dtype=np.float64))
    if groups is not None:
        out.update(ranking_metrics(relevance(scores), np.asarray(y, dtype=np.float64), groups))
    return out


def ranking_groups(groups: list[int] | None, task: Task, n_outputs: int) -> np.ndarray | None:
    """Query ids when pair data is evaluated as reranking, else None: `groups` (a query id per
    row, `LabeledTexts.groups()`) with >= RANKING_MIN_GROUP candidates per query on average, for
    a model that grades a candidate (one score, or two classes); label sets do not."""
    if task.name == "multi_label" or (task.name == "single_label" and n_outputs != 2):
        return None
    if groups is None or len(groups) < RANKING_MIN_GROUP * len(set(groups)):
        return None
    return np.asarray(groups)


def primary_metric(task: Task, ranking: bool = False) -> str:
    return RANKING_PRIMARY if ranking else task.primary


def agreement(task: Task, scores: np.ndarray, ref: np.ndarray, thresholds: list[float] | None = None,
              groups: np.ndarray | None = None) -> dict:
    """How closely a variant's scores follow PyTorch's on the same inputs, in the task's terms.

    `label_agreement`: the share of inputs with the same decision (same top label; same label
    set; a score within 5% of the reference's score range), and for ranking the share of
    queries with the same top document. `max_abs_prob_diff`/`mean_abs_prob_diff`: score
    differences (probabilities, or raw scores for regression).
    """
    a, b = np.asarray(scores, np.float64), np.asarray(ref, np.float64)
    diff = np.abs(a - b)
    n = len(a)
    if task.name == "regression":
        span = float(b.max() - b.min()) if n else 0.0
        same = diff[:, 0] <= 0.05 * (span or 1.0)
    elif task.name == "multi_label":
        same = (decide(task, scores, thresholds) == decide(task, ref, thresholds)).all(axis=1)
    else:
        same = scores.argmax(-1) == ref.argmax(-1)
    out = {
        "label_agreement": float(same.mean()) if n else 1.0,
        "max_abs_prob_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_prob_diff": float(diff.mean()) if diff.size else 0.0,
    }
    if groups is not None and n:
        ra, rb = relevance(a), relevance(b)
        tops = [(int(np.argmax(ra[groups == g])) == int(np.argmax(rb[groups == g]))) for g in np.unique(groups)]
        out["top1_agreement"] = float(np.mean(tops))
    return out
