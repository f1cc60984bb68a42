"""Every row of the task table (`bertfast.tasks.TASKS`) against the `Task` contract: labels in,
truth, decisions, metrics, agreement, outputs and columns, parametrized over the table, so a new
task is checked by the same tests the moment it has a row."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from bertfast import tasks
from bertfast.errors import BertfastError, DataError
from bertfast.tasks import ranking

# Raw labels as a file holds them, per task, and the scores a 3-output (or 1-output) model gives.
RAW = {
    "single_label": ["sport", "politics", "tech", "sport", "politics", "tech"],
    "multi_label": [["sport"], ["politics", "tech"], [], ["sport", "tech"], ["politics"], ["tech"]],
    "regression": [0.1, 2.5, 4.0, 1.0, 3.5, 0.0],
}
ROWS = len(RAW["single_label"])


def _scores(task, n_out: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return tasks.activate(rng.normal(size=(ROWS, n_out)).astype(np.float32), task.activation)


@pytest.fixture(params=list(tasks.TASKS), ids=list(tasks.TASKS))
def task(request):
    return tasks.TASKS[request.param]


def _prepared(task):
    labels = task.parse(RAW[task.name], "data.jsonl")
    names = task.label_set(labels)
    label2id = {n: i for i, n in enumerate(names)}
    return labels, names, label2id


def test_labels_round_trip_through_the_truth_array(task):
    labels, names, label2id = _prepared(task)
    assert task.unknown(labels, label2id) == set()
    y = task.encode(labels, label2id)
    assert len(y) == ROWS
    id2label = dict(enumerate(names))
    back = [task.label_of(y[i], id2label) for i in range(ROWS)]
    assert back == [float(x) for x in labels] if not task.has_classes else back == labels
    assert len(task.targets(labels, label2id)) == ROWS
    assert len(task.stratum(labels)) == ROWS
    task.check_training("data.jsonl", labels, names)
    task.check_split("validation", labels)
    task.check_outputs(len(names), names)


def test_decisions_metrics_and_agreement_follow_the_scores(task):
    labels, names, label2id = _prepared(task)
    y = task.encode(labels, label2id)
    s = _scores(task, len(names))
    assert len(task.decide(s)) == ROWS
    m = task.evaluate(s, y)
    assert task.primary in m and task.evaluate(s, None) == {}
    same = task.agreement(s, s)
    assert same["label_agreement"] == 1.0 and same["max_abs_prob_diff"] == 0.0
    thresholds = task.calibrate(s, y)
    assert thresholds is None or len(thresholds) == len(names)
    assert set(task.empty_metrics()) >= {task.primary}


def test_outputs_and_columns_line_up(task):
    _, names, _ = _prepared(task)
    s = _scores(task, len(names))
    out = task.outputs(s, names)
    assert len(out) == ROWS and all(isinstance(o, dict) for o in out)
    for txt in (False, True):
        cols = task.columns(names, 1, False, txt)
        vals = task.column_values(s, np.round(s.astype(np.float64), 6), names, 1, False, None, None, txt)
        assert len(cols) == len(vals) and all(len(v) == ROWS for v in vals)


def test_report_columns_name_metrics_the_task_computes(task):
    labels, names, label2id = _prepared(task)
    m = task.evaluate(_scores(task, len(names)), task.encode(labels, label2id))
    assert all(key in m for _, _, key, _ in task.table_columns)
    assert all(key in m for _, key, _ in task.reference_columns)


def test_an_unknown_task_is_refused_naming_the_flag():
    with pytest.raises(BertfastError, match="^--task must be one of single_label, multi_label, regression; got 'ranking'"):
        tasks.get("ranking")


def test_a_bad_label_is_refused_naming_the_row(task):
    bad = {"single_label": [None], "multi_label": ["a|b"], "regression": ["n/a"]}[task.name]
    with pytest.raises(DataError, match="data row 1"):
        task.parse(bad, "f.csv")


# -- reranking: which class means relevant -------------------------------------------------------


@pytest.mark.parametrize(("labels", "want"), [
    (["0", "1"], 1), (["irrelevant", "relevant"], 1), (["relevant", "irrelevant"], 0), (["yes", "no"], 0),
    (["no", "yes"], 1), (["True", "False"], 0), (["negative", "positive"], 1), (["LABEL_0", "LABEL_1"], 1),
    (["match", "other"], None), (["other", "match"], None), (["duplicate", "not_duplicate"], None),
    (["entailment", "not_entailment"], None), (["a", "b", "c"], None),
])
def test_positive_class_is_inferred_only_where_unambiguous(labels, want):
    assert ranking.positive_class(labels) == want


@pytest.mark.parametrize("labels", [["match", "other"], ["other", "match"]])
def test_positive_label_given_in_either_order_ranks_by_it(labels):
    pos = ranking.positive_class(labels, "match")
    assert labels[pos] == "match"
    scores = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    rel = tasks.TASKS["single_label"].relevance(scores, pos)
    assert rel.tolist() == scores[:, pos].tolist()
    with pytest.raises(BertfastError, match="--positive-label 'x' is not one of the model's labels"):
        ranking.positive_class(labels, "x")
    with pytest.raises(BertfastError, match="pass --positive-label 'match' or 'other'|pass --positive-label 'other' or 'match'"):
        raise ranking.unknown_positive(labels, "the model")


# -- one home for task knowledge ---------------------------------------------------------------------

_PACKAGE = Path(__file__).resolve().parents[2] / "bertfast"


def _task_name_comparisons(root: Path) -> list[str]:
    """Comparisons against a task-name string literal (`task == "multi_label"`, `x in ("regression", ...)`)."""
    names = set(tasks.TASK_NAMES)

    def consts(n) -> set:
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            return {n.value}
        if isinstance(n, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(consts(e) for e in n.elts)) if n.elts else set()
        return set()

    hits = []
    for path in sorted(root.rglob("*.py")):
        if "tasks" in path.relative_to(root).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(consts(x) & names for x in [node.left, *node.comparators]):
                hits.append(f"{path.relative_to(root)}:{node.lineno}")
    return hits


def test_no_task_name_comparisons_outside_the_tasks_package():
    assert _task_name_comparisons(_PACKAGE) == []
