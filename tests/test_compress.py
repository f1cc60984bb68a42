"""`bertfast export --compress` on the tiny model: students built from its layers, distilled on
its scores, exported and judged by the same gate; bad input; interruption and --resume (#24).
Real speed and accuracy figures live in benchmarks/ (MiniLM on BBC News)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from bertfast import Classifier
from bertfast.errors import BertfastError
from bertfast.exporter import ExportConfig, compress, distill, evidence, export, students
from bertfast.manifest import load_manifest


@pytest.fixture
def anyspeed(monkeypatch):
    # A 2-layer toy model is all overhead: its students are not faster; the speed rule itself is
    # checked in test_a_slow_student_is_skipped_before_training.
    monkeypatch.setattr(compress, "MIN_SPEEDUP", 0.0)


def _export(model, out, **kw):
    kw.setdefault("accept_weak_reference", True)  # the tiny model scores at chance on its labels
    kw.setdefault("distill_epochs", 1.0)
    kw.setdefault("compress_budget", "10m")
    return export(ExportConfig(model_dir=str(model), out=str(out), variants="fp32,int8-dynamic-pc",
                               window_search=False, compress=True, **kw))


def test_students_join_the_search_and_load_like_any_variant(tiny_trained, tmp_path, anyspeed, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        out = _export(tiny_trained, tmp_path / "e")
    # a student's graph is checked against its own layer count, not the teacher's
    assert not [r.message for r in caplog.records if "attention blocks fused" in r.message]
    m = load_manifest(out)
    block = m.raw["compression"]
    assert block["teacher_sha256"] == m.source["sha256"] and block["texts"] > 0
    built = {n: r for n, r in block["students"].items() if r["status"].startswith("built")}
    assert built, block["students"]
    name = next(iter(built))
    assert built[name]["dims"]["layers"] == 1 and built[name]["kept_layers"] == [0]
    for v in ("fp32", "int8-dynamic-pc"):
        rec = m.variants[f"{name}-{v}"]
        assert rec["student"] == name and rec["file"].startswith(f"students/{name}/")
        assert "agreement_bound" in rec["validation"] and "eligible" in rec
        # a student is a different model: its flips are counted (Wilson), never pooled margins
        val = rec["validation"]
        flips = round((1 - val["label_agreement"]) * val["evidence_n"])
        assert val["agreement_method"] == "counted"
        assert val["agreement_bound"] == round(1 - evidence.wilson(flips, val["evidence_n"])[1], 6)
    assert m.variants["fp32"]["validation"]["agreement_method"] == "margins"
    with Classifier.load(out, device="cpu", variant=f"{name}-int8-dynamic-pc") as clf:
        assert len(clf.predict(["match goal team", "vote tax"])) == 2
    # the student's own config.json says 1 layer: transformers and Optimum read it like any checkpoint
    cfg = json.loads((out / "students" / name / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 1
    assert not compress.work_dir(out).exists()  # nothing to resume once written
    # 12 validation rows: even a student with no flips shows 12 / (12 + 1.96^2) = 75.75%, said before distilling
    n = m.variants[f"{name}-fp32"]["validation"]["evidence_n"]
    assert block["provable"] == {"units": n, "unit": "inputs", "best_bound": evidence.wilson(n, n)[0],
                                 "units_needed": 765}
    said = [r.message for r in caplog.records if "no student can become the default" in r.message]
    assert len(said) == 1 and f"on the gate's {n} inputs" in said[0] and "765 inputs" in said[0]


def test_pruned_students_keep_their_most_important_neurons(tiny_trained):
    import torch
    from transformers import AutoModelForSequenceClassification

    from bertfast.families import family_of

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_trained))
    fam = family_of(model.config)
    recipe = students.Recipe("t", 1.0, ffn=0.5, heads=0.5)
    s, kept = students.drop_layers(model, fam, recipe)
    feeds = {"input_ids": torch.tensor([[2, 5, 6, 7, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    target = model(**feeds).logits.detach()
    ffn, heads = students.importance(s, fam, [(feeds, target + 1)], distill.loss_fn)
    assert len(ffn) == len(kept) and heads.shape == (len(kept), model.config.num_attention_heads)
    dims = students.prune(s, fam, recipe, ffn, heads)
    assert s.config.intermediate_size == dims["intermediate"] == model.config.intermediate_size // 2
    if hasattr(s, "prune_heads"):  # transformers 4.x records pruned heads in the config
        assert all(len(v) == model.config.num_attention_heads // 2 for v in dims["heads_pruned"].values())
    assert s(**feeds).logits.shape == target.shape


def test_layer_choice_spreads_from_the_first():
    assert students.layer_choice(6, 3) == [0, 2, 4] and students.layer_choice(12, 6) == [0, 2, 4, 6, 8, 10]
    assert students.layer_choice(2, 1) == [0] and students.layer_choice(6, 6) == list(range(6))


def test_a_slow_student_is_skipped_before_training(tiny_trained, tmp_path, monkeypatch):
    monkeypatch.setattr(compress, "MIN_SPEEDUP", 1000.0)
    out = _export(tiny_trained, tmp_path / "e")
    recs = load_manifest(out).raw["compression"]["students"].values()
    assert all(r["status"].startswith("skipped") for r in recs)
    assert any("predicted" in r["status"] and "x the teacher's speed" in r["status"] for r in recs)


def test_a_budget_too_small_for_any_student_says_so_and_keeps_the_plain_export(tiny_trained, tmp_path, anyspeed,
                                                                               caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        out = _export(tiny_trained, tmp_path / "e", compress_budget="0.01s")
    m = load_manifest(out)
    recs = m.raw["compression"]["students"]
    skipped = [r["status"] for r in recs.values() if "min of --compress-budget left" in r["status"]]
    assert skipped and all(r["status"].startswith("skipped") for r in recs.values()), recs
    # the skip names a budget that fits the student
    assert all(re.search(r"\(--compress-budget \d+m fits it\)$", s) for s in skipped), skipped
    assert any("no student was built" in r.message for r in caplog.records)
    assert not any(v.get("student") for v in m.variants.values())
    assert m.default["cpu"] in ("fp32", "int8-dynamic-pc")


def test_bad_input(tiny_trained, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_trained, model)
    shutil.rmtree(model / "splits")
    (model / "training.json").unlink()
    ev = tiny_trained / "splits" / "validation.jsonl"
    with pytest.raises(BertfastError, match="^--compress needs texts to distill on.*--distill-data FILE"):
        _export(model, tmp_path / "e", eval_data=str(ev))
    assert not (tmp_path / "e").exists()
    with pytest.raises(BertfastError, match="^--compress-budget must be a duration"):
        ExportConfig(model_dir="m", compress=True, compress_budget="soon")
    with pytest.raises(BertfastError, match="^--distill-data is for --compress"):
        ExportConfig(model_dir="m", distill_data="x.jsonl")
    for kw, flag in (({"students": "L1of2"}, "--students"), ({"distill_windows": 2}, "--distill-windows"),
                     ({"distill_epochs": 5.0}, "--distill-epochs"), ({"distill_loss": "hidden"}, "--distill-loss"),
                     ({"distill_augment": 2}, "--distill-augment"), ({"distill_mix": 1}, "--distill-mix")):
        with pytest.raises(BertfastError, match=f"^{flag} is for --compress"):
            ExportConfig(model_dir="m", **kw)
    with pytest.raises(BertfastError, match="^--students takes recipe names from L2of3, L1of2.*unknown: L3\\.$"):
        ExportConfig(model_dir="m", compress=True, students="L1of2,L3")
    with pytest.raises(BertfastError, match="^--distill-epochs"):
        ExportConfig(model_dir="m", compress=True, distill_epochs=0)
    with pytest.raises(BertfastError, match="^--distill-augment"):
        ExportConfig(model_dir="m", compress=True, distill_augment=-1)
    with pytest.raises(BertfastError, match="^--distill-mix"):
        ExportConfig(model_dir="m", compress=True, distill_mix=-1)
    with pytest.raises(BertfastError, match="^--distill-windows"):
        ExportConfig(model_dir="m", compress=True, distill_windows=-1)
    with pytest.raises(BertfastError, match="^--distill-loss must be one of logits, hidden; got 'kl'"):
        ExportConfig(model_dir="m", compress=True, distill_loss="kl")


def test_layer_targets_end_on_the_teachers_last_layer():
    assert students.layer_targets(6, 3) == [2, 4, 6] and students.layer_targets(6, 2) == [3, 6]
    assert students.layer_targets(12, 6) == [2, 4, 6, 8, 10, 12] and students.layer_targets(2, 1) == [2]
    assert students.layer_targets(6, 6) == [1, 2, 3, 4, 5, 6]


def _feeds(tok, texts):
    enc = tok(texts, padding=True, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


def test_hidden_loss_reads_real_tokens_only_and_is_zero_for_the_teacher(tiny_trained):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertfast.families import family_of

    tok = AutoTokenizer.from_pretrained(str(tiny_trained))
    teacher = AutoModelForSequenceClassification.from_pretrained(str(tiny_trained)).eval()
    same, _ = students.drop_layers(teacher, family_of(teacher.config), students.Recipe("all", 1.0))
    small, _ = students.drop_layers(teacher, family_of(teacher.config), students.Recipe("half", 0.5))
    small.eval()
    with torch.inference_mode():
        alone = _feeds(tok, ["vote tax"])
        padded = _feeds(tok, ["vote tax", "match goal team vote tax and more words here"])
        t1, t2 = (teacher(**f, output_hidden_states=True).hidden_states for f in (alone, padded))
        s1, s2 = (small(**f, output_hidden_states=True).hidden_states for f in (alone, padded))
        same_states = same(**padded, output_hidden_states=True).hidden_states
        assert distill.hidden_loss(same_states, t2, [1, 2], padded["attention_mask"]).item() == pytest.approx(0, abs=1e-10)
        gap = distill.hidden_loss(s1, t1, [2], alone["attention_mask"]).item()
        assert gap > 1e-5
        # the short text's padding adds nothing: its rows of the padded batch give the same loss
        first = [h[:1] for h in s2], [h[:1] for h in t2]
        assert distill.hidden_loss(*first, [2], padded["attention_mask"][:1]).item() == pytest.approx(gap, rel=1e-4)


def test_hidden_distillation_brings_the_students_layers_to_the_teachers(tiny_trained, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertfast.families import family_of

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(tiny_trained))
    teacher = AutoModelForSequenceClassification.from_pretrained(str(tiny_trained)).eval()
    student, kept = students.drop_layers(teacher, family_of(teacher.config), students.Recipe("half", 0.5))
    texts = [" ".join(["match goal team vote tax"][0].split()[i % 5:] * 3) + f" {i}" for i in range(64)]
    names = ["input_ids", "attention_mask", "token_type_ids"]
    targets = distill.teacher_logits(teacher, tok, texts, 32, names, tmp_path / "t.npy")
    layer_map = students.layer_targets(2, len(kept))
    feeds = _feeds(tok, texts)

    def gap():
        with torch.inference_mode():
            s = student(**feeds, output_hidden_states=True).hidden_states
            t = teacher(**feeds, output_hidden_states=True).hidden_states
            return distill.hidden_loss(s, t, layer_map, feeds["attention_mask"]).item()

    before = gap()
    d = distill.Distiller(student, tok, texts, targets, 32, names, tmp_path / "s", 4.0, teacher=teacher,
                          layer_map=layer_map)
    assert d.run(deadline=float("inf")) and d.step == d.total
    assert gap() < 0.8 * before


def test_distillation_leaves_out_what_the_gate_judges_on(tiny_trained, tmp_path, anyspeed):
    val = tiny_trained / "splits" / "validation.jsonl"
    n_val = sum(1 for _ in val.open())
    # the user hands the eval set to the students too: those texts would be agreed on by rote
    out = _export(tiny_trained, tmp_path / "e", distill_data=str(val), students="L1of2")
    block = load_manifest(out).raw["compression"]
    assert block["gate_inputs_left_out"] == n_val
    n_train = sum(1 for _ in (tiny_trained / "splits" / "train.jsonl").open())
    assert block["texts"] == n_train
    kept, left = compress.without_gate_inputs(["a", ("b", "c"), "d"], ["d", ("b", "c")])
    assert kept == ["a"] and left == 2
    with pytest.raises(BertfastError, match="^--compress: every distillation text is also one the gate judges on"):
        compress.without_gate_inputs(["a"], ["a"])


def test_students_picks_recipes_in_the_tables_order():
    assert [r.name for r in students.pick("L1of3, L1of2")] == ["L1of2", "L1of3"]
    assert students.pick(None) == students.RECIPES


def test_recipes_keep_the_teachers_layers_they_promise():
    layers = lambda name, n: students.pick(name)[0].dims({"layers": n, "heads": 12, "hidden": 768,  # noqa: E731
                                                          "intermediate": 3072})["layers"]
    assert [layers(r.name, 12) for r in students.RECIPES] == [8, 6, 6, 4, 3]
    assert [layers(r.name, 6) for r in students.RECIPES] == [4, 3, 3, 2, 2]  # L1of4 rounds to L1of3's student
    assert students.layer_choice(12, 3) == [0, 4, 8] and students.layer_choice(6, 2) == [0, 3]


def test_later_windows_add_rows_after_every_first_window(tiny_trained):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_trained))
    long_text = " ".join(["match goal team vote tax"] * 40)  # far past 16 tokens
    texts = ["short text", long_text, "vote"]
    plain = distill._encode(tok, texts, 16)
    rows = distill._encode(tok, texts, 16, windows=2)
    assert [r["input_ids"] for r in rows[:3]] == [r["input_ids"] for r in plain]  # row i is still input i
    assert len(rows) == 5  # the long text gave two more windows, the short ones none
    assert all(len(r["input_ids"]) <= 16 for r in rows)
    assert rows[3]["input_ids"] != rows[1]["input_ids"] and rows[3]["input_ids"][0] == tok.cls_token_id
    pairs = distill._encode(tok, [("a headline", long_text)], 16, windows=1)
    assert len(pairs) == 2 and all(tok.decode(r["input_ids"]).count("headline") == 1 for r in pairs)


def test_interrupted_distillation_leaves_no_export_and_resumes(tiny_trained, tmp_path, anyspeed, monkeypatch):
    calls = {"n": 0}
    real = distill.loss_fn

    def interrupting(logits, target):
        calls["n"] += 1
        if calls["n"] == 6:  # a few steps into the first student
            raise KeyboardInterrupt
        return real(logits, target)

    monkeypatch.setattr(distill, "loss_fn", interrupting)
    with pytest.raises(KeyboardInterrupt):
        _export(tiny_trained, tmp_path / "e")
    assert not (tmp_path / "e").exists()  # no half-written export under the final name
    work = compress.work_dir(tmp_path / "e")
    assert list(work.glob("teacher-*.npy")) and list(work.glob("*/state.pt"))  # the scores and the steps taken
    monkeypatch.setattr(distill, "loss_fn", real)
    out = _export(tiny_trained, tmp_path / "e", resume=True)
    recs = load_manifest(out).raw["compression"]["students"]
    assert any(r.get("resumed") for r in recs.values()), recs
    assert np.isfinite(load_manifest(out).variants["fp32"]["validation"]["label_agreement"])


def test_a_reranker_compresses_into_students_that_rank(tiny_model, tmp_path, anyspeed):
    """A cross-encoder (pair regression, graded candidates per query) distils on its (query,
    document) pairs and its students are judged in ranking terms: the same top document per
    query, NDCG@10 (the issue's reranking case)."""
    from test_train_tasks import _cfg, _jsonl, rerank_rows

    from bertfast.training import train

    data = _jsonl(tmp_path / "rerank.jsonl", rerank_rows(40))
    teacher = train(_cfg(tiny_model, data, tmp_path / "teacher", text_column="query", text_pair_column="doc"))
    out = _export(teacher, tmp_path / "e", students="L1of2", distill_augment=1, distill_mix=1)
    m = load_manifest(out)
    block = m.raw["compression"]
    train_pairs = sum(1 for _ in (teacher / "splits" / "train.jsonl").open())
    # one perturbed copy per pair (its document; unchanged copies dropped) and one mix per pair
    # (of a document of two words or more) join the distillation texts
    assert 0.5 * train_pairs < block["augmented_copies"] <= train_pairs
    assert 0.5 * train_pairs < block["mixes"] <= train_pairs
    assert block["texts"] == train_pairs + block["augmented_copies"] + block["mixes"]
    assert block["students"]["L1of2"]["status"] == "built"
    for v in ("fp32", "int8-dynamic-pc"):
        val = m.variants[f"L1of2-{v}"]["validation"]
        assert "top1_agreement" in val and "ndcg@10" in val, val  # judged per query, like the teacher
        assert val["agreement_method"] == "counted"
    # the student's targets are the teacher's one score per pair, not class probabilities
    docs = ["match goal team win", "vote tax election", "goal team league"]
    with Classifier.load(out, device="cpu", variant="L1of2-fp32") as clf:
        ranked = clf.rerank("team goal", docs)
        assert sorted(r["index"] for r in ranked) == [0, 1, 2] and clf.predict_proba([("a", "b")]).shape == (1, 1)


def test_mixes_join_the_start_of_one_text_to_another_within_a_window():
    """`--distill-mix`: seeded; each mix is its text's first k words (1 <= k < its length, within
    the window's words) then another text's first words, never its own, up to the window's
    words; a pair keeps its query and mixes documents; a lone text has nothing to mix with."""
    texts = [" ".join(f"{c}{i}" for i in range(30)) for c in "abc"] + ["x y"]
    mixes = distill.mix(texts, 5, max_words=12, seed=1)
    assert mixes == distill.mix(texts, 5, max_words=12, seed=1) and mixes != distill.mix(texts, 5, 12, seed=2)
    assert len(mixes) == 5 * len(texts)
    owners = [t.split()[0][0] for t in texts]
    for n, mixed in enumerate(mixes):
        words, own = mixed.split(), texts[n // 5].split()
        k = next(i for i, w in enumerate(words) if i >= len(own) or w != own[i])
        assert 1 <= k < min(len(own), 12) and len(words) <= 12
        j = owners.index(words[k][0])
        assert j != n // 5 and words[k:] == texts[j].split()[:len(words) - k]
    pairs = distill.mix([("q1", "a b c"), ("q2", "d e f")], 2, 8)
    assert [q for q, _ in pairs] == ["q1", "q1", "q2", "q2"] and all(" " in d for _, d in pairs)
    assert distill.mix(["alone in the set"], 3, 8) == [] and distill.mix(texts, 0, 8) == []


def test_augmented_copies_perturb_words_and_keep_the_query():
    """`--distill-augment`: seeded copies with words masked and some cut to a span; a pair keeps
    its query; with no mask token the masked words are dropped instead."""
    texts = [" ".join(f"w{i}" for i in range(40)), "only two"]
    copies = distill.augment(texts, 20, "[MASK]", seed=3)
    assert copies == distill.augment(texts, 20, "[MASK]", seed=3)  # the teacher's cached scores stay valid
    assert copies != distill.augment(texts, 20, "[MASK]", seed=4)
    long = [c.split() for c in copies if not c.startswith(("only", "[MASK] two"))]
    words = [w for c in long for w in c]
    assert 0.05 < words.count("[MASK]") / len(words) < 0.15  # MASK_P = 0.1
    cut = [c for c in long if len(c) < 40]
    assert 0.1 < len(cut) / len(long) < 0.45 and all(len(c) >= 3 for c in cut)  # SPAN_P = 0.25
    for c in cut:  # a span keeps the words' order: consecutive indices where not masked
        idx = [int(w[1:]) for w in c if w != "[MASK]"]
        assert idx == sorted(idx) and idx[-1] - idx[0] < len(c)
    assert "only two" not in copies  # an unchanged copy adds nothing
    pairs = distill.augment([("the query", "a b c d e f")], 10, None, seed=0)
    assert pairs and all(q == "the query" for q, _ in pairs)
    assert all("[MASK]" not in d and set(d.split()) <= set("abcdef") for _, d in pairs)


def test_distill_data_for_a_pair_model_needs_its_second_text(tmp_path):
    """Single texts would teach a pair model inputs it never sees: refused, naming the flag."""
    data = tmp_path / "more.jsonl"
    data.write_text('{"q": "a headline", "doc": "an article"}\n{"q": "another", "doc": "more words"}\n')
    cfg = ExportConfig(model_dir=str(tmp_path), compress=True, distill_data=str(data), text_column="q")
    with pytest.raises(BertfastError, match="^--distill-data .*more.jsonl: the model classifies text pairs; pass "
                                            "--text-pair-column COLUMN"):
        compress.distill_inputs(cfg, tmp_path, pair=True)
    cfg = ExportConfig(model_dir=str(tmp_path), compress=True, distill_data=str(data), text_column="q",
                       text_pair_column="doc")
    inputs, what = compress.distill_inputs(cfg, tmp_path, pair=True)
    assert inputs == [("a headline", "an article"), ("another", "more words")] and "(2)" in what


def test_the_same_distillation_makes_the_same_student_whatever_ran_before(tiny_trained, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertfast.families import family_of

    tok = AutoTokenizer.from_pretrained(str(tiny_trained))
    teacher = AutoModelForSequenceClassification.from_pretrained(str(tiny_trained)).eval()
    assert teacher.config.hidden_dropout_prob > 0  # else there would be nothing random to pin
    texts = [f"match goal team {i} vote tax" * (1 + i % 3) for i in range(40)]
    names = ["input_ids", "attention_mask", "token_type_ids"]
    targets = distill.teacher_logits(teacher, tok, texts, 32, names, tmp_path / "t.npy")
    real = distill.loss_fn

    def make(work, caller_seed, interrupt_at=None):
        torch.manual_seed(caller_seed)  # whatever the caller's generator holds
        torch.rand(7)
        student, _ = students.drop_layers(teacher, family_of(teacher.config), students.Recipe("half", 0.5))
        d = distill.Distiller(student, tok, texts, targets, 32, names, work, 2.0)
        if interrupt_at is not None:  # Ctrl-C a few steps into the second epoch, then --resume
            calls = {"n": 0}

            def interrupting(logits, target):
                calls["n"] += 1
                if calls["n"] == interrupt_at:
                    raise KeyboardInterrupt
                return real(logits, target)

            monkeypatch.setattr(distill, "loss_fn", interrupting)
            with pytest.raises(KeyboardInterrupt):
                d.run(deadline=float("inf"))
            monkeypatch.setattr(distill, "loss_fn", real)
            student, _ = students.drop_layers(teacher, family_of(teacher.config), students.Recipe("half", 0.5))
            d = distill.Distiller(student, tok, texts, targets, 32, names, work, 2.0)
            assert d.resume() and d.step == interrupt_at - 1
        state = torch.get_rng_state()
        assert d.run(deadline=float("inf"))
        assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is left as it was
        return {k: v.clone() for k, v in student.state_dict().items()}

    a, b = make(tmp_path / "a", 1), make(tmp_path / "b", 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = make(tmp_path / "c", 3, interrupt_at=5)
    assert all(torch.equal(a[k], c[k]) for k in a)
    # and the weights did move: the comparison is not between two untouched copies
    start, _ = students.drop_layers(teacher, family_of(teacher.config), students.Recipe("half", 0.5))
    assert not all(torch.equal(a[k], v) for k, v in start.state_dict().items())
