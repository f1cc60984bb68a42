"""Adding a task is one module plus one row: a fifth task (a binary classifier with one sigmoid
logit, as many checkpoints ship) defined here as its module would be, registered as its row in
`TASKS`, and served by every stage that asks its Task, without a line changed elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

from bertfast import tasks
from bertfast.metrics import accuracy_f1
from bertfast.tasks import values
from bertfast.tasks.base import Task


class Binary(Task):  # what bertfast/tasks/binary.py would hold
    name = "binary"
    problem_type = "binary_classification"
    activation = "sigmoid"
    primary = "accuracy"
    agreement_rule = "same side of 0.5"
    description = "one yes/no per text (one sigmoid logit)"
    table_columns = (("accuracy", 9, "accuracy", "pct"),)
    reference_columns = (("accuracy", "accuracy", "pct"),)
    writes = "`label` (the positive class or not) and its `score`"

    def parse(self, raw, where, separator=None):
        return [values.class_name(y, where, i) for i, y in enumerate(raw)]

    def label_set(self, labels):
        return ["yes"]

    def stratum(self, labels):
        return list(labels)

    def check_training(self, src, labels, outputs):
        pass

    def check_split(self, name, labels):
        pass

    def unknown(self, labels, label2id):
        return {y for y in labels if y not in ("yes", "no")}

    def encode(self, labels, label2id):
        return np.array([y == "yes" for y in labels], dtype=np.int64)

    def label_of(self, y_row, id2label):
        return "yes" if y_row else "no"

    def check_outputs(self, n_outputs, names):
        assert n_outputs == 1

    def decide(self, scores, thresholds=None):
        return (scores[:, 0] >= 0.5).astype(np.int64)

    def metrics(self, scores, y, thresholds=None):
        return accuracy_f1(self.decide(scores), y, 2)

    def same(self, scores, ref, thresholds):
        return self.decide(scores) == self.decide(ref)

    def margins(self, ref, scores, thresholds=None):
        side = np.where(ref[:, :1] >= 0.5, 1.0, -1.0)
        return np.abs(ref[:, :1] - 0.5), side * (scores[:, :1] - ref[:, :1])

    def outputs(self, scores, labels, thresholds=None, top_k=1):
        return [{"label": "yes" if s >= 0.5 else "no", "score": s} for s in scores[:, 0].tolist()]

    def columns(self, labels, top_k, all_scores, txt):
        return ["label", "score"]

    def column_values(self, proba, p64, labels, top_k, all_scores, thresholds, separator, txt):
        return [["yes" if s >= 0.5 else "no" for s in proba[:, 0]], p64[:, 0].tolist()]


@pytest.fixture
def binary(monkeypatch):
    monkeypatch.setitem(tasks.TASKS, "binary", Binary())  # the one row
    return tasks.get("binary")


def test_every_stage_serves_the_new_task(binary):
    from bertfast.exporter.validate import Gate, compare, metrics
    from bertfast.runtime.outputs import prediction_names, prediction_values

    rng = np.random.default_rng(0)
    ref = tasks.activate(rng.normal(size=(300, 1)), binary.activation)
    var = ref + rng.normal(0, 0.002, ref.shape)
    y = binary.encode(["yes" if s >= 0.5 else "no" for s in ref[:, 0]], {})
    gate = Gate(binary)
    val = compare(var, ref, y, metrics(ref, y, gate), gate)  # the export's gate, with its evidence
    assert val["accuracy"] == pytest.approx(val["label_agreement"], abs=0.02) and "agreement_bound" in val
    assert gate.judge(val)[0] == (val["agreement_bound"] >= 0.995 and val["drop_ci"][1] <= 0.5)
    assert prediction_names(["text"], ["yes"], 1, False, task="binary") == ["label", "score"]  # bertfast predict
    cols = prediction_values(ref[:3].astype(np.float32), ["yes"], 1, False, task="binary")
    assert cols[0] == [o["label"] for o in binary.outputs(ref[:3], ["yes"])] and len(cols) == 2
    with pytest.raises(Exception, match="--top-k is for single-label exports; the export is binary"):
        binary.check_top_k(2, "the export")


def test_the_name_is_known_everywhere_the_table_is_read(binary):
    from bertfast.training.labels import coerce

    assert tasks.get("binary") is binary
    assert coerce(["yes", "no"], "f.csv", "binary") == ("binary", ["yes", "no"])
