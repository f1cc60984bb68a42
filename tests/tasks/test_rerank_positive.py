"""A two-class pair export ranks by the class that means relevant (#23): `match/other` in either
order is refused until `positive_label` names it, then ranks by P(that class), never by "the
last class"."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertfast import Classifier
from bertfast.errors import BertfastError

DOCS = ["the phone software chip", "vote tax law minister", "coach league cup season win", "the new year said it was"]


def _export(base, tmp_path, names, positive=None):
    from _export_helpers import make_task_export

    out = make_task_export(base, tmp_path / "-".join(names), "single_label", True)
    m = json.loads((out / "bertfast.json").read_text())
    m["id2label"] = {str(i): n for i, n in enumerate(names)}
    if positive is not None:
        m["task"]["positive_label"] = positive
    (out / "bertfast.json").write_text(json.dumps(m))
    return out


@pytest.mark.parametrize("names", [["match", "other"], ["other", "match"]])
def test_rerank_needs_the_relevant_class_then_ranks_by_it(_tiny_model_session, tmp_path, names):
    with Classifier.load(_export(_tiny_model_session, tmp_path, names), device="cpu") as clf:
        with pytest.raises(BertfastError, match="pass --positive-label 'match' or 'other'|pass --positive-label 'other' or 'match'"):
            clf.rerank("match goal", DOCS)
    with Classifier.load(_export(_tiny_model_session, tmp_path / "p", names, positive="match"), device="cpu") as clf:
        p_match = clf.predict_proba([("match goal", d) for d in DOCS])[:, names.index("match")]
        ranked = clf.rerank("match goal", DOCS)
        assert [r["index"] for r in ranked] == np.argsort(-p_match, kind="stable").tolist()
        assert [r["score"] for r in ranked] == pytest.approx(np.sort(p_match)[::-1].tolist())


def test_unambiguous_names_need_no_flag(_tiny_model_session, tmp_path):
    with Classifier.load(_export(_tiny_model_session, tmp_path, ["relevant", "irrelevant"]), device="cpu") as clf:
        p = clf.predict_proba([("match goal", d) for d in DOCS])[:, 0]
        assert [r["index"] for r in clf.rerank("match goal", DOCS)] == np.argsort(-p, kind="stable").tolist()


def test_a_positive_label_that_is_not_a_label_is_refused_at_load(_tiny_model_session, tmp_path):
    from bertfast.manifest import ManifestError

    with pytest.raises((ManifestError, BertfastError), match="positive_label"):
        Classifier.load(_export(_tiny_model_session, tmp_path, ["match", "other"], positive="yes"), device="cpu")
