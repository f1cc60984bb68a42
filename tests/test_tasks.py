"""Tasks at the runtime: metrics, pair encoding vs the Rust tokenizer and transformers, and
`Classifier` outputs per task (multi-label, regression, pairs, rerank) against PyTorch."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bertfast import tasks
from bertfast.errors import BertfastError
from bertfast.metrics import multilabel_f1, ranking_metrics, regression_metrics
from bertfast.runtime.pairs import check_pairs, truncate_pair

# -- metrics -----------------------------------------------------------------------------------


def test_regression_metrics_known_values():
    m = regression_metrics(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 5]))
    assert m["pearson"] == pytest.approx(0.8315218406)
    assert m["spearman"] == pytest.approx(0.8)
    assert m["mae"] == pytest.approx(0.75)
    # ties share their mean rank: a constant prediction has no rank correlation
    assert regression_metrics(np.ones(4), np.arange(4.0))["spearman"] == 0.0


def test_ranking_metrics_mrr_and_graded_ndcg():
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.8])
    rel = np.array([0, 1, 1, 1, 0])
    groups = np.array([0, 0, 0, 1, 1])
    m = ranking_metrics(scores, rel, groups)
    assert m["mrr"] == pytest.approx(0.5) and m["queries"] == 2
    # query 0: gains (0, 1, 1) ranked; ideal (1, 1, 0)
    d = 1 / np.log2(np.arange(2, 5))
    q0 = (d[1] + d[2]) / (d[0] + d[1])
    q1 = d[1] / d[0]
    assert m["ndcg@10"] == pytest.approx((q0 + q1) / 2)
    perfect = ranking_metrics(np.array([3.0, 2, 1]), np.array([1.0, 0.5, 0]), np.zeros(3))
    assert perfect["ndcg@10"] == pytest.approx(1.0) and perfect["mrr"] == 1.0


def test_multilabel_f1_micro_macro_exact():
    m = multilabel_f1(np.array([[1, 0], [1, 1]]), np.array([[1, 0], [0, 1]]))
    assert m == {"micro_f1": pytest.approx(0.8), "macro_f1": pytest.approx((1.0 + 2 / 3) / 2), "exact_match": 0.5}


def test_tune_thresholds_finds_the_separating_cut():
    scores = np.array([[0.1, 0.9], [0.3, 0.8], [0.35, 0.2], [0.6, 0.1]])
    y = np.array([[0, 1], [0, 1], [1, 0], [1, 0]])
    ml = tasks.TASKS["multi_label"]
    th = ml.calibrate(scores, y)
    assert (ml.decide(scores, th) == y).all()
    assert th[0] == pytest.approx(0.35) and 0.2 < th[1] <= 0.8


def test_sigmoid_is_stable_for_large_logits():
    with np.errstate(over="raise", invalid="raise"):
        s = tasks.activate(np.array([[-1000.0, 0.0, 1000.0]]), "sigmoid")
    assert s.tolist() == [[0.0, 0.5, 1.0]]


def test_agreement_in_task_terms():
    ml = tasks.TASKS["multi_label"]
    ref = np.array([[0.9, 0.1], [0.6, 0.7]])
    var = np.array([[0.8, 0.2], [0.4, 0.7]])  # second row loses label 0
    assert ml.agreement(var, ref)["label_agreement"] == 0.5
    reg = tasks.TASKS["regression"]
    a = reg.agreement(np.array([[0.0], [1.02], [2.5]]), np.array([[0.0], [1.0], [2.0]]))
    assert a["label_agreement"] == pytest.approx(2 / 3) and a["max_abs_prob_diff"] == pytest.approx(0.5)


def test_task_of_config():
    from types import SimpleNamespace as C

    assert tasks.task_of_config(C(problem_type="multi_label_classification", num_labels=4)).name == "multi_label"
    assert tasks.task_of_config(C(problem_type=None, num_labels=1)).name == "regression"
    assert tasks.task_of_config(C(problem_type=None, num_labels=3)) is None
    ce = C(problem_type=None, num_labels=1, sentence_transformers={"activation_fn": "torch.nn.modules.activation.Sigmoid"})
    assert tasks.TASKS["regression"].activation_for(ce) == "sigmoid"
    with pytest.raises(BertfastError, match="--task multi_label"):
        tasks.check_config_task(tasks.TASKS["single_label"], C(problem_type="multi_label_classification", num_labels=3))


# -- pairs: encoding identical to the Rust tokenizer ----------------------------------------------


@pytest.mark.parametrize("strategy", ["longest_first", "only_second", "only_first"])
def test_pair_truncation_matches_the_rust_tokenizer(_tiny_model_session, strategy):
    from conftest import COMMON, TOPIC_WORDS
    from tokenizers import Tokenizer

    from bertfast.runtime.batching import Batcher

    path = _tiny_model_session / "tokenizer.json"
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    words = " ".join(TOPIC_WORDS.values()).split() + COMMON.split()
    rng = random.Random(0)
    dt = {"input_ids": np.int64, "attention_mask": np.int64, "token_type_ids": np.int64}
    checked = 0
    for _ in range(150):
        a = " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))
        b = " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))
        mx = rng.randint(5, 40)
        bt = Batcher(path, list(dt), dt, 0, mx, pair_truncation=strategy)
        tok.enable_truncation(mx, strategy=strategy)
        try:
            want = tok.encode(a, b)
        except BaseException:  # the Rust tokenizer cannot cut this pair this way (it panics)
            with pytest.raises(BertfastError, match="pair_truncation"):
                bt.pair_windows([(a, b)])
            continue
        ids, types, starts = bt.pair_windows([(a, b)])
        assert ids[0] == want.ids and types[0] == want.type_ids and starts is None
        checked += 1
    assert checked > 50


def test_pair_batches_carry_segment_ids(_tiny_model_session):
    from bertfast.runtime.batching import Batcher

    dt = {"input_ids": np.int64, "attention_mask": np.int64, "token_type_ids": np.int64}
    bt = Batcher(_tiny_model_session / "tokenizer.json", list(dt), dt, 0, 64)
    enc = bt.encode_pairs([("match goal", "vote tax law party"), ("the phone", "chip")])
    (idx, feeds), = enc.batches
    for row in range(len(idx)):
        ids, types = feeds["input_ids"][row], feeds["token_type_ids"][row]
        n = int(feeds["attention_mask"][row].sum())
        sep = [k for k in range(n) if ids[k] == 3]  # [SEP] id in the tiny vocab
        assert len(sep) == 2
        assert (types[: sep[0] + 1] == 0).all() and (types[sep[0] + 1 : n] == 1).all() and (types[n:] == 0).all()


def test_pair_sliding_windows_keep_the_first_text(_tiny_model_session):
    from _export_helpers import long_text

    from bertfast.runtime.batching import Batcher

    dt = {"input_ids": np.int64, "attention_mask": np.int64, "token_type_ids": np.int64}
    bt = Batcher(_tiny_model_session / "tokenizer.json", list(dt), dt, 0, 24, long_text="sliding-window", stride=4)
    doc = long_text(100)
    ids, types, starts = bt.pair_windows([("match goal", doc), ("vote", "tax")])
    assert starts is not None and starts[1] == len(ids) - 1 and starts[1] > 3
    for w in ids[: starts[1]]:
        assert len(w) <= 24 and w[1:3] == ids[0][1:3]  # every window starts with the query


def test_check_pairs_errors_name_the_item():
    assert check_pairs(["a", "b"]) == ([("a", "b")], True)
    with pytest.raises(BertfastError, match=r"pairs\[1\] has 3 elements"):
        check_pairs([["a", "b"], ["a", "b", "c"]])
    with pytest.raises(BertfastError, match=r"pairs\[0\]\[1\] is None"):
        check_pairs([["a", None]])
    assert truncate_pair(10, 6, 11, "longest_first") == (6, 5)
    assert truncate_pair(6, 10, 11, "longest_first") == (5, 6)


# -- Classifier per task, against PyTorch ----------------------------------------------------------


def _torch_scores(model_dir, inputs, pair: bool, activation: str) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    if pair:
        enc = tok([a for a, _ in inputs], [b for _, b in inputs], truncation=True, max_length=64, padding=True,
                  return_tensors="pt")
    else:
        enc = tok(inputs, truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits.numpy()
    return tasks.activate(logits, activation)


PAIRS = [("match goal team", "the phone software chip"), ("vote election party", "vote tax law minister"),
         ("data network", "coach league cup season win"), ("a", "the new year said it was")]


@pytest.mark.parametrize("task,pair", [("multi_label", False), ("regression", True), ("single_label", True),
                                       ("multi_label", True)])
def test_classifier_task_outputs_match_pytorch(_tiny_model_session, tmp_path, task, pair):
    from _export_helpers import make_task_export

    from bertfast import Classifier

    out = make_task_export(_tiny_model_session, tmp_path / "export", task, pair)
    inputs = PAIRS if pair else [a + " " + b for a, b in PAIRS]
    with Classifier.load(out, device="cpu") as clf:
        assert clf.task.name == task and clf.pair is pair
        got = clf.predict_proba(inputs)
        ref = _torch_scores(tmp_path / "export-model", inputs, pair, tasks.TASKS[task].activation)
        np.testing.assert_allclose(got, ref, atol=1e-4)
        preds = clf.predict(inputs)
        single = clf.predict(inputs[2])
    if task == "multi_label":
        for p, row in zip(preds, ref):
            assert p["labels"] == [lab for lab, s in zip(clf.labels, row) if s >= 0.5]
            assert list(p["scores"]) == clf.labels
    elif task == "regression":
        assert [p["score"] for p in preds] == pytest.approx(ref[:, 0].tolist(), abs=1e-4)
    else:
        assert [p["label"] for p in preds] == [clf.labels[i] for i in ref.argmax(1)]
    assert single == preds[2]


def test_multilabel_thresholds_from_the_manifest(_tiny_model_session, tmp_path):
    from _export_helpers import make_task_export

    from bertfast import Classifier

    # The tiny model scores every label 0.4-0.6: these thresholds force sport and politics on, the rest off.
    out = make_task_export(_tiny_model_session, tmp_path / "export", "multi_label", False, thresholds=[0.001, 0.999, 0.001, 0.999])
    with Classifier.load(out, device="cpu") as clf:
        assert [p["labels"] for p in clf.predict(["match goal", "vote tax"])] == [["sport", "politics"]] * 2
        with pytest.raises(BertfastError, match="top_k is for single-label"):
            clf.predict("match", top_k=2)


def test_rerank_orders_by_relevance_and_checks_input(_tiny_model_session, tmp_path):
    from _export_helpers import make_task_export

    from bertfast import Classifier

    docs = [b for _, b in PAIRS]
    for task in ("single_label", "regression"):
        out = make_task_export(_tiny_model_session, tmp_path / task, task, True)
        with Classifier.load(out, device="cpu") as clf:
            rel = clf.task.relevance(clf.predict_proba([("match goal", d) for d in docs]), clf.positive)
            ranked = clf.rerank("match goal", docs)
            assert [r["index"] for r in ranked] == list(np.argsort(-rel, kind="stable"))
            assert [r["document"] for r in ranked] == [docs[r["index"]] for r in ranked]
            assert len(clf.rerank("match goal", docs, top_k=2, return_documents=False)) == 2
            with pytest.raises(BertfastError, match="documents is empty"):
                clf.rerank("q", [])
            with pytest.raises(BertfastError, match=r"documents\[1\] is int"):
                clf.rerank("q", ["a", 3])
            with pytest.raises(BertfastError, match="not one string"):
                clf.predict("just one string")
    single = make_task_export(_tiny_model_session, tmp_path / "single", "multi_label", False)
    with Classifier.load(single, device="cpu") as clf:
        with pytest.raises(BertfastError, match="rerank needs an export of a text-pair model"):
            clf.rerank("q", ["a"])
        with pytest.raises(BertfastError, match="classifies single texts"):
            clf.predict([["a", "b"]])
