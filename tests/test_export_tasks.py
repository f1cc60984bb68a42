"""`bertfast export` per task: pair classification, reranking, multi-label, regression, and the
notebook's checkpoint (default LABEL_k names, integer labels); the gate (metric drop and
agreement with PyTorch fp32); one-line errors that leave no output folder."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
from _export_helpers import MULTI_LABELS, make_task_model
from conftest import COMMON, TOPIC_WORDS, make_texts

from bertfast.errors import BertfastError
from bertfast.exporter import ExportConfig, export
from bertfast.manifest import load_manifest

QUICK = "fp32,int8-dynamic"
WORDS = " ".join(TOPIC_WORDS.values()).split() + COMMON.split()


def _text(rng: random.Random, lo: int = 3, hi: int = 20) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _pair_rows(n_queries: int, per_query: int, seed: int = 0) -> list[dict]:
    """Pairs; with per_query > 1 every query repeats (reranking data), relevance 0/1 per document."""
    rng = random.Random(seed)
    rows = []
    for q in range(n_queries):
        query = f"{_text(rng, 2, 5)} {q}"
        for k in range(per_query):
            rows.append({"text": query, "text_pair": _text(rng, 5, 40),
                         "label": "relevant" if (q + k) % 3 == 0 else "irrelevant"})
    return rows


def _model(tmp_path_factory, _tiny_model_session, task: str, rows: list[dict], name: str):
    d = make_task_model(_tiny_model_session, tmp_path_factory.mktemp(name) / "model", task)
    _write_jsonl(d / "splits" / "validation.jsonl", rows)
    return d


def _export(model_dir, out, **kw):
    kw.setdefault("variants", QUICK)
    # These tests compare variants at the export's max length; which shorter window the search
    # would pick depends on timing (tests/test_window.py covers it).
    kw.setdefault("window_search", False)
    # Random heads on made-up labels: at chance by design (tests/test_export_preflight.py covers the refusal).
    kw.setdefault("accept_weak_reference", True)
    return load_manifest(export(ExportConfig(model_dir=str(model_dir), out=str(out), **kw)))


@pytest.fixture(scope="module")
def pair_model(tmp_path_factory, _tiny_model_session):
    return _model(tmp_path_factory, _tiny_model_session, "single_label", _pair_rows(40, 1), "pair")


@pytest.fixture(scope="module")
def pair_export(pair_model, tmp_path_factory):
    return _export(pair_model, tmp_path_factory.mktemp("pair-export") / "e")


def _check_fp32_is_pytorch(m):
    val = m.variants["fp32"]["validation"]
    assert val["label_agreement"] == 1.0 and abs(val["metric_drop_points"]) < 1e-3
    assert m.variants["fp32"]["eligible"], m.variants["fp32"]["reason"]
    assert val["n"] == m.eval_data["rows"]


def test_pair_export(pair_export, capsys):
    m = pair_export
    assert m.task == {"name": "single_label", "pair": True, "activation": "softmax", "thresholds": None,
                      "pair_truncation": "longest_first", "primary_metric": "accuracy", "min_agreement": 99.5}
    _check_fp32_is_pytorch(m)
    assert "ndcg@10" not in m.variants["fp32"]["validation"]  # distinct first texts: no ranking
    rows = [json.loads(x) for x in (m.folder / "eval.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and set(rows[0]) == {"text", "text_pair", "label"}
    from bertfast.exporter import format_table

    table = format_table(m.raw)
    assert "held-out pairs" in table and "task single_label, text pairs: primary metric accuracy" in table


def test_pair_export_loads_in_optimum(pair_export):
    try:  # optimum-onnx is the optional [optimum] extra; it pins transformers 4.57
        from optimum.onnxruntime import ORTModelForSequenceClassification
    except ImportError:
        pytest.skip("needs pip install 'bertfast[optimum]' (transformers 4.57)")
    from transformers import AutoTokenizer

    from bertfast.runtime.classifier import Classifier

    rows = [json.loads(x) for x in (pair_export.folder / "eval.jsonl").read_text().splitlines()][:12]
    a, b = [r["text"] for r in rows], [r["text_pair"] for r in rows]
    tok = AutoTokenizer.from_pretrained(pair_export.folder)
    ort_model = ORTModelForSequenceClassification.from_pretrained(pair_export.folder, file_name="model.onnx")
    enc = tok(a, b, truncation=True, max_length=pair_export.max_length, padding=True, return_tensors="pt")
    theirs = ort_model(**enc).logits.detach().numpy()
    with Classifier.load(pair_export.folder, device="cpu", variant="fp32", max_length=pair_export.max_length) as clf:
        ours = clf.logits_from_encoded(clf.encode(list(zip(a, b))))
    np.testing.assert_allclose(theirs, ours, atol=1e-4)


def test_pair_calibration_batches(pair_model, tmp_path):
    """int8-static of a pair model is calibrated on pairs (segment ids 1 present), as training saw them."""
    from transformers import AutoTokenizer

    from bertfast.exporter.evalset import training_inputs as _calibration_inputs
    from bertfast.exporter.variants import BuildContext

    _write_jsonl(tmp_path / "m" / "splits" / "train.jsonl", _pair_rows(4, 2))
    pairs = _calibration_inputs(tmp_path / "m", pair=True)
    assert len(pairs) == 8 and all(isinstance(p, tuple) and len(p) == 2 for p in pairs)
    assert _calibration_inputs(tmp_path / "m", pair=False) == []  # texts only would mis-calibrate
    ctx = BuildContext(folder=tmp_path, scratch=tmp_path, raw=tmp_path, config={}, preset="avx2",
                       tokenizer=AutoTokenizer.from_pretrained(pair_model), calibration_texts=pairs,
                       inputs=["input_ids", "attention_mask", "token_type_ids"], max_length=32)
    (batch,) = ctx.calibration_batches()
    assert batch["input_ids"].shape == (8, 32) and batch["token_type_ids"].max() == 1


def test_ranking_export(tmp_path_factory, _tiny_model_session):
    rows = _pair_rows(6, 5, seed=1)
    model = _model(tmp_path_factory, _tiny_model_session, "single_label", rows, "rank")
    (model / "training.json").write_text(json.dumps({"pair": True, "max_length": 64}))
    m = _export(model, tmp_path_factory.mktemp("rank-export") / "e")
    assert m.task["primary_metric"] == "ndcg@10" and m.pair
    assert m.reference["queries"] == 6 and {"ndcg@10", "mrr", "accuracy"} <= set(m.reference)
    _check_fp32_is_pytorch(m)
    val = m.variants["fp32"]["validation"]
    assert val["top1_agreement"] == 1.0 and val["ndcg@10"] == m.reference["ndcg@10"]
    assert "accuracy_drop_points" in val  # old readers still find it
    from bertfast.exporter import format_table

    lines = format_table(m.raw).splitlines()
    assert "reranking: primary metric ndcg@10" in lines[1] and "top-1 agreement per query" in lines[1]
    assert lines[3].split()[:5] == ["variant", "ndcg@10", "mrr", "top1", "drop"]


def test_multi_label_export(tmp_path_factory, _tiny_model_session):
    from bertfast import tasks

    rng = random.Random(2)
    rows = [{"text": _text(rng, 3, 30), "label": sorted(rng.sample(MULTI_LABELS, rng.randint(0, 2)))}
            for _ in range(40)]
    model = _model(tmp_path_factory, _tiny_model_session, "multi_label", rows, "multi")
    m = _export(model, tmp_path_factory.mktemp("multi-export") / "e")
    assert m.task_name == "multi_label" and m.activation == "sigmoid" and not m.pair
    assert m.task["primary_metric"] == "micro_f1"
    th = m.thresholds
    assert len(th) == len(MULTI_LABELS) and all(0.05 <= t <= 0.95 for t in th)
    _check_fp32_is_pytorch(m)
    # the stored thresholds are the ones every variant was scored with
    from bertfast.runtime.classifier import Classifier

    ev = [json.loads(x) for x in (m.folder / "eval.jsonl").read_text().splitlines()]
    y = np.array([[int(lab in r["label"]) for lab in m.labels] for r in ev])
    for name in ("fp32", "int8-dynamic"):
        with Classifier.load(m.folder, device="cpu", variant=name) as clf:
            got = tasks.get("multi_label").evaluate(clf.predict_proba([r["text"] for r in ev]), y, th)
        assert got["micro_f1"] == pytest.approx(m.variants[name]["validation"]["micro_f1"], abs=1e-9), name
    from bertfast.exporter import format_table

    assert format_table(m.raw).splitlines()[3].split()[:4] == ["variant", "micro-F1", "exact", "drop"]


def test_regression_export(tmp_path_factory, _tiny_model_session):
    rng = random.Random(3)
    rows = [{"text": _text(rng), "text_pair": _text(rng), "label": round(rng.uniform(0, 5), 2)} for _ in range(30)]
    model = _model(tmp_path_factory, _tiny_model_session, "regression", rows, "reg")
    m = _export(model, tmp_path_factory.mktemp("reg-export") / "e")
    assert m.task_name == "regression" and m.pair and m.activation == "identity"
    assert m.task["primary_metric"] == "pearson" and {"pearson", "spearman", "mae"} <= set(m.reference)
    _check_fp32_is_pytorch(m)
    ev = json.loads((m.folder / "eval.jsonl").read_text().splitlines()[0])
    assert isinstance(ev["label"], float) and "text_pair" in ev
    from bertfast.exporter import format_table

    assert format_table(m.raw).splitlines()[3].split()[:7] == ["variant", "pearson", "spearman", "mae", "drop", "drop95",
                                                               "agree"]


def test_one_logit_cross_encoder_with_integer_scores(tmp_path_factory, _tiny_model_session):
    """A sentence-transformers CrossEncoder (one logit, sigmoid recorded in config.json) validated
    on 0/1 relevance: integer labels are scores for a score model, and scores are sigmoids."""
    rows = [{**r, "label": int(r["label"] == "relevant")} for r in _pair_rows(20, 1, seed=4)]
    model = _model(tmp_path_factory, _tiny_model_session, "regression", rows, "ce")
    cfg = json.loads((model / "config.json").read_text())
    cfg.pop("problem_type", None)
    cfg["sentence_transformers"] = {"activation_fn": "torch.nn.modules.activation.Sigmoid"}
    (model / "config.json").write_text(json.dumps(cfg))
    m = _export(model, tmp_path_factory.mktemp("ce-export") / "e", variants="fp32")
    assert m.task_name == "regression" and m.activation == "sigmoid" and m.pair
    _check_fp32_is_pytorch(m)
    assert "problem_type" not in json.loads((m.folder / "config.json").read_text())  # pipelines keep their sigmoid
    assert {json.loads(x)["label"] for x in (m.folder / "eval.jsonl").read_text().splitlines()} == {0.0, 1.0}


# ----------------------------------------------------------------------------- the notebook's checkpoint


@pytest.fixture(scope="module")
def default_names_model(tmp_path_factory, _tiny_model_session):
    """A checkpoint as transformers saves it when nobody names the classes: LABEL_0 / LABEL_1,
    evaluated on IMDB-style integer labels 0/1."""
    from transformers import AutoConfig, BertForSequenceClassification

    d = tmp_path_factory.mktemp("notebook") / "model"
    cfg = AutoConfig.from_pretrained(_tiny_model_session)
    cfg.num_labels = 2
    cfg.id2label, cfg.label2id = {0: "LABEL_0", 1: "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}
    BertForSequenceClassification(cfg).save_pretrained(d)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (_tiny_model_session / f).exists():
            shutil.copy(_tiny_model_session / f, d / f)
    _write_jsonl(d.parent / "imdb.jsonl", [{"text": t, "label": i % 2} for i, (t, _) in enumerate(make_texts(24))])
    return d


@pytest.mark.parametrize("label_names", [None, "neg,pos"])
def test_default_label_names_with_integer_labels(default_names_model, tmp_path, label_names, caplog):
    import logging

    from bertfast.runtime.classifier import Classifier

    with caplog.at_level(logging.INFO, logger="bertfast"):
        m = _export(default_names_model, tmp_path / "e", eval_data=str(default_names_model.parent / "imdb.jsonl"),
                    label_names=label_names)
    want = ["LABEL_0", "LABEL_1"] if label_names is None else ["neg", "pos"]
    assert m.labels == want
    from transformers import AutoConfig  # (transformers leaves default LABEL_k names out of config.json)

    assert AutoConfig.from_pretrained(m.folder).id2label == {0: want[0], 1: want[1]}
    assert m.task["label_mapping"].startswith("integer labels are class ids")
    if label_names:
        assert "--label-names (was LABEL_0, LABEL_1)" in m.task["label_mapping"]
    assert "integer labels are class ids" in caplog.text
    _check_fp32_is_pytorch(m)
    rows = [json.loads(x) for x in (m.folder / "eval.jsonl").read_text().splitlines()]
    assert {r["label"] for r in rows} == set(want)
    with Classifier.load(m.folder, device="cpu", variant="fp32") as clf:
        assert clf.predict(rows[0]["text"])["label"] in want


def test_label_names_accepts_names_in_the_data(default_names_model, tmp_path):
    ev = _write_jsonl(tmp_path / "named.jsonl", [{"text": t, "label": ["neg", "pos", "1"][i % 3]}
                                                   for i, (t, _) in enumerate(make_texts(18))])
    m = _export(default_names_model, tmp_path / "e", eval_data=str(ev), label_names="neg,pos", variants="fp32")
    assert m.labels == ["neg", "pos"] and m.eval_data["rows"] == 18


# ----------------------------------------------------------------------------- the gate


def test_gate_judges_drop_and_agreement():
    from bertfast import tasks
    from bertfast.exporter.validate import Gate, compare, metrics

    ref = np.array([[0.9, 0.1]] * 150 + [[0.2, 0.8]] * 50, dtype=np.float32)
    y = ref.argmax(-1)
    var = ref.copy()
    var[0] = [0.45, 0.55]  # one input flips: 199/200 = 99.5% agreement, accuracy -0.5 points
    ref_m = metrics(ref, y)
    strict, lax = Gate(min_agreement=100), Gate(min_agreement=0, budget=2)
    val = compare(var, ref, y, ref_m, strict)
    assert val["label_agreement"] == 0.995 and val["metric_drop_points"] == val["accuracy_drop_points"] == 0.5
    assert strict.judge(val)[1].endswith("agreement 99.50% < 100%")
    # One flip in 200 cannot show a drop within 0.5 points nor 99.5% agreement at 95%.
    lo, hi = val["agreement_ci"]
    assert lo < 0.995 <= hi and val["drop_ci"][0] <= 0.5 < val["drop_ci"][1]
    ok, why = Gate().judge(val)
    assert not ok and "accuracy drop 0.50 not shown within 0.5 points" in why and "99.5% not shown" in why
    assert lax.judge(val)[0]  # a 2-point budget and no agreement floor: the evidence suffices
    var[1] = [0.45, 0.55]
    val = compare(var, ref, y, ref_m, Gate())
    assert Gate().judge(val)[1].startswith("accuracy drop 1.00 > 0.5 points budget; agreement 99.00% < 99.5%")
    # small moves far from every boundary: agreement shown at 95% on the same 200 inputs
    calm = ref + np.random.default_rng(0).normal(0, 0.003, ref.shape).astype(np.float32)
    val = compare(calm, ref, y, ref_m, Gate())
    ok, why = Gate().judge(val)
    assert ok and val["agreement_bound"] >= 0.995 and "(95%, 200 inputs)" in why, why
    # reranking: the gate bounds NDCG@10 and the share of queries whose top document is PyTorch's
    groups = np.repeat(np.arange(10), 4)  # 10 queries x 4 documents, the first one relevant
    rel = np.tile([0.9, 0.6, 0.3, 0.1], 10)
    ref = np.stack([1 - rel, rel], 1).astype(np.float32)
    y = np.tile([1, 0, 0, 0], 10)
    var = ref.copy()
    var[1] = [0.05, 0.95]  # query 0: the second document now ranks first
    rank = Gate(groups=groups, min_agreement=99, positive=1)  # class 1 means relevant
    val = compare(var, ref, y, metrics(ref, y, rank), rank)
    assert val["top1_agreement"] == 0.9 and val["metric_drop_points"] == pytest.approx(100 * (1 - 1 / np.log2(3)) / 10, abs=1e-3)
    assert rank.judge(val) == (False, "ndcg@10 drop 3.69 > 0.5 points budget; top-1 agreement 90.00% < 99%")
    assert Gate(tasks.get("single_label"), budget=5, min_agreement=50, groups=groups, positive=1).judge(val)[0]


def test_min_agreement_end_to_end(tiny_trained, tmp_path):
    """--min-agreement 100 accepts only a variant whose evidence shows no flip at 95% (no flip seen,
    and moves too small to reach any margin), --min-agreement 0 judges by the drop only."""
    strict = _export(tiny_trained, tmp_path / "strict", min_agreement=100)
    lax = _export(tiny_trained, tmp_path / "lax", min_agreement=0, max_metric_drop=100)
    assert strict.task["min_agreement"] == 100 and lax.max_accuracy_drop == 100
    for name, v in strict.variants.items():
        val = v["validation"]
        shown = val["label_agreement"] == 1.0 and val["agreement_bound"] >= 1.0 and val["drop_ci"][1] <= 0.5
        assert v["eligible"] == shown, (name, v["reason"])
        if val["label_agreement"] < 1.0:
            assert "< 100%" in v["reason"]
    assert all(v["eligible"] for v in lax.variants.values())


def test_budget_flags():
    assert ExportConfig(model_dir="m").budget == 0.5 and ExportConfig(model_dir="m").agreement == 99.5
    assert ExportConfig(model_dir="m", max_metric_drop=1.0).budget == 1.0
    for kw, flag in (({"min_agreement": 101}, "--min-agreement"), ({"max_metric_drop": -1}, "--max-metric-drop"),
                     ({"task": "ranking"}, "--task"), ({"label_names": "a,,b"}, "--label-names"),
                     ({"label_names": "a,a"}, "--label-names"), ({"text_pair_column": ""}, "--text-pair-column")):
        with pytest.raises(BertfastError, match=f"^{flag}"):
            ExportConfig(model_dir="m", **kw)


def test_cli_flags():
    import argparse

    from bertfast.exporter import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["m", "--max-metric-drop", "1", "--min-agreement", "99", "--task", "multi_label",
                         "--label-names", "a,b", "--text-pair-column", "q", "--label-separator", "|"])
    from bertfast.flags import from_args

    cfg = from_args(ExportConfig, args)
    assert (cfg.budget, cfg.agreement, cfg.task, cfg.label_names) == (1.0, 99.0, "multi_label", "a,b")
    assert (cfg.text_pair_column, cfg.label_separator, cfg.positive_label) == ("q", "|", None)
    # every field has a flag, its default and its help from the docstring (declared once)
    for action in p._actions[1:]:
        assert action.help
        if action.option_strings:  # flags carry the dataclass default; the positional is required
            assert action.default == ExportConfig.__dataclass_fields__[action.dest].default, action.dest


# ----------------------------------------------------------------------------- bad input


def _refused(model_dir, tmp_path, match, **kw):
    out = tmp_path / "e"
    with pytest.raises(BertfastError, match=match) as e:
        export(ExportConfig(model_dir=str(model_dir), out=str(out), variants="fp32", **kw))
    assert "\n" not in str(e.value) and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bertfast-tmp")]
    return str(e.value)


def test_bad_inputs_are_one_line_errors(default_names_model, pair_model, tmp_path, tmp_path_factory,
                                        _tiny_model_session):
    imdb = str(default_names_model.parent / "imdb.jsonl")
    _refused(default_names_model, tmp_path, r"^--label-names gives 3 name\(s\).*has 2 class",
             eval_data=imdb, label_names="a,b,c")
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"text": "a b", "label": x} for x in (0, 1, 2)])
    _refused(default_names_model, tmp_path, "integer label\\(s\\) '2' outside the model's class ids 0..1", eval_data=str(bad))
    # integer labels against named classes: not guessed, and the error says why
    ints = _write_jsonl(tmp_path / "ints.jsonl", [{"text": "a b", "text_pair": "c", "label": x} for x in (0, 1)])
    msg = _refused(pair_model, tmp_path, "'0', '1' that the model does not know", eval_data=str(ints),
                   text_pair_column="text_pair")
    assert "--label-names" in msg
    # list labels for a single-label checkpoint: a task mismatch
    lists = _write_jsonl(tmp_path / "lists.jsonl", [{"text": "a b", "text_pair": "c", "label": [x]}
                                                    for x in ("relevant", "irrelevant")])
    _refused(pair_model, tmp_path, "multi_label task but the checkpoint declares problem_type 'single_label",
             eval_data=str(lists), text_pair_column="text_pair")
    _refused(pair_model, tmp_path, "regression task but the checkpoint declares", eval_data=str(lists),
             text_pair_column="text_pair", task="regression")
    # multi-label labels outside id2label are named
    multi = make_task_model(_tiny_model_session, tmp_path_factory.mktemp("multi-bad") / "m", "multi_label")
    ml = _write_jsonl(tmp_path / "ml.jsonl", [{"text": "a b", "label": x} for x in (["sport", "cooking"], ["tech"])])
    _refused(multi, tmp_path, "label\\(s\\) 'cooking' that the model does not know", eval_data=str(ml))
    # a pair model (training.json says so) validated on single texts
    trained = shutil.copytree(pair_model, tmp_path_factory.mktemp("trained-pair") / "m")
    (trained / "training.json").write_text(json.dumps({"pair": True}))
    single = _write_jsonl(tmp_path / "single.jsonl", [{"text": "a b", "label": x} for x in ("relevant", "irrelevant")])
    _refused(trained, tmp_path, "trained on text pairs.*--text-pair-column", eval_data=str(single))


# ----------------------------------------------------------------------------- the table


def test_table_of_an_export_before_tasks_is_unchanged():
    """A manifest without a task block prints exactly the table README.md shows."""
    from bertfast.exporter import format_table

    def v(acc, drop, agree, dp, speed, mb, reason):
        return {"status": "ok", "devices": ["cpu"], "size_mb": mb, "reason": reason, "speed": {"seq_per_s": speed},
                "validation": {"accuracy": acc, "accuracy_drop_points": drop, "label_agreement": agree,
                               "max_abs_prob_diff": dp}}

    m = {"source": {"architecture": "BertForSequenceClassification"},
         "eval_data": {"rows": 223, "source": "m/splits/validation.jsonl"},
         "reference": {"accuracy": 0.9731, "macro_f1": 0.9733, "seq_per_s": 22.8},
         "variants": {"fp32": v(0.9731, 0.0, 1.0, 0.0, 35.5, 86.7, "accuracy drop 0.00 <= 0.5 points"),
                      "int8-static": v(0.9552, 1.79, 0.9821, 0.4485, 45.3, 64.0, "accuracy drop 1.79 > 0.5 points budget"),
                      "int8-mixed": {"status": "failed", "reason": "boom"}},
         "default": {"cpu": "fp32", "cuda": "fp32"}}
    assert format_table(m) == "\n".join([
        "export BertForSequenceClassification -> 3 variant(s); validated on 223 held-out texts (m/splits/validation.jsonl)",
        "reference PyTorch fp32: accuracy 97.31%, macro-F1 97.33%, 22.8 seq/s",
        "variant              accuracy   drop    agree  max|dp|    seq/s     MB  verdict",
        "fp32                   97.31%   0.00  100.00%   0.0000     35.5   86.7  accuracy drop 0.00 <= 0.5 points"
        " <- default cpu/cuda",
        "int8-static            95.52%   1.79   98.21%   0.4485     45.3   64.0  accuracy drop 1.79 > 0.5 points budget",
        "int8-mixed                  -      -        -        -        -      -  failed: boom",
    ])


# -- batch invariance ---------------------------------------------------------------------------


def test_batch_invariance_counts_decisions_that_change_alone():
    import numpy as np

    from bertfast.exporter.validate import Gate, batch_invariance

    class Fake:  # alone, input 3 gets the other label; input 5 moves a little but keeps its label
        def predict_proba(self, items):
            (i,) = items
            row = batched[i].copy()
            if i == 3:
                row = row[::-1]
            if i == 5:
                row = row + np.array([0.05, -0.05], np.float32)
            return row[None, :]

    batched = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9], [0.8, 0.2]], np.float32)
    r = batch_invariance(Fake(), list(range(6)), batched, Gate())
    assert r["batch_sample"] == 6
    assert r["batch_flips"] == pytest.approx(1 / 6, abs=1e-6)
    assert r["batch_max_diff"] == pytest.approx(0.4, abs=1e-6)
    r = batch_invariance(Fake(), list(range(6)), batched, Gate(), sample=2)  # evenly spaced: inputs 0 and 5
    assert r["batch_sample"] == 2 and r["batch_flips"] == 0.0


def test_a_batch_invariant_variant_wins_a_speed_tie():
    from bertfast.exporter.report import choose_defaults

    def v(speed, flips, agree=1.0):
        return {"devices": ["cpu"], "eligible": True, "speed": {"seq_per_s": speed, "device": "cpu"},
                "validation": {"label_agreement": agree, "metric_drop_points": 0.0, "batch_flips": flips}}

    tied = {"fp32": v(50.0, 0.0), "int8-a": v(100.0, 0.02), "int8-b": v(98.0, 0.0, agree=0.99)}
    assert choose_defaults(tied)["cpu"] == "int8-b"  # within 3% of the fastest and batch-invariant
    apart = {"fp32": v(50.0, 0.0), "int8-a": v(100.0, 0.02), "int8-b": v(90.0, 0.0)}
    assert choose_defaults(apart)["cpu"] == "int8-a"  # not a tie: the faster one


def test_export_records_batch_invariance_per_variant(tiny_export):
    from bertfast.exporter import format_table
    from bertfast.manifest import load_manifest

    m = load_manifest(tiny_export)
    for name, v in m.variants.items():
        if not m.usable(name):
            continue
        val = v["validation"]
        assert 0.0 <= val["batch_flips"] <= 1.0 and val["batch_sample"] > 0, name
    assert m.variants["fp32"]["validation"]["batch_flips"] == 0.0  # fp32 decides alone as in a batch
    assert "b1-flip" in next(line for line in format_table(m.raw).splitlines() if line.startswith("variant"))


def test_export_measures_the_token_budget_and_the_runtime_uses_it(tiny_export, tmp_path):
    import json

    from bertfast import Classifier
    from bertfast.exporter.budget import CANDIDATES
    from bertfast.manifest import load_manifest
    from bertfast.runtime.options import DEFAULT_BATCH_TOKENS

    m = load_manifest(tiny_export)
    b = m.batching["cpu"]
    assert b["variant"] == m.default["cpu"] and b["batch_tokens"] in CANDIDATES
    assert set(b["seq_per_s"]) == {str(c) for c in CANDIDATES}
    with Classifier.load(tiny_export, device="cpu") as clf:
        assert clf.batcher.batch_tokens == clf.options.batch_tokens == b["batch_tokens"]
    with Classifier.load(tiny_export, device="cpu", batch_tokens=333) as clf:  # the caller wins
        assert clf.batcher.batch_tokens == 333
    other = next(n for n in m.variants if n != b["variant"] and m.usable(n))
    with Classifier.load(tiny_export, device="cpu", variant=other) as clf:  # measured for another variant
        assert clf.batcher.batch_tokens == DEFAULT_BATCH_TOKENS
    # A hand-edited budget that is not a positive integer is refused on load, naming the field.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_export, copy)
    raw = json.loads((copy / "bertfast.json").read_text())
    raw["batching"]["cpu"]["batch_tokens"] = 0
    (copy / "bertfast.json").write_text(json.dumps(raw))
    with pytest.raises(Exception, match="batching.cpu"):
        load_manifest(copy)
