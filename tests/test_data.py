from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import LABELS, make_texts, write_csv

from bertfast.errors import DataError
from bertfast.training.data import load_splits, load_texts, read_labeled
from bertfast.training.splits import stratified_split
from bertfast.training.texts import LabeledTexts


def test_csv_tsv_jsonl_parquet_and_folder_give_the_same_rows(tmp_path):
    rows = make_texts(30)
    write_csv(tmp_path / "d.csv", rows)
    (tmp_path / "d.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    import pandas as pd

    pd.DataFrame(rows, columns=["text", "label"]).to_parquet(tmp_path / "d.parquet")
    for i, (t, y) in enumerate(rows):
        (tmp_path / "folder" / y).mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / y / f"{i:03d}.txt").write_text(t)
    ref = sorted(rows)
    for name in ("d.csv", "d.tsv", "d.jsonl", "d.parquet", "folder"):
        d = read_labeled(tmp_path / name)
        assert sorted(zip(d.texts, d.labels)) == ref, name


def test_tab_and_json_extensions_train_like_tsv_and_jsonl(tmp_path):
    """The one extension table (`formats.EXTENSIONS`): `.tab` is TSV and `.json` is JSON Lines."""
    rows = make_texts(12)
    (tmp_path / "d.tab").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    (tmp_path / "d.json").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    for name in ("d.tab", "d.json"):
        d = read_labeled(tmp_path / name)
        assert list(zip(d.texts, d.labels)) == rows, name


def test_empty_csv_fields_are_missing_values(tmp_path):
    (tmp_path / "d.csv").write_text('text,label\n"a goal",sport\n"",tech\n')
    with pytest.raises(DataError, match="data row 2 is empty/null"):
        read_labeled(tmp_path / "d.csv")
    (tmp_path / "d.csv").write_text('text,label\n"a goal",sport\n"a chip",\n')
    with pytest.raises(DataError, match="label in data row 2 is missing"):
        read_labeled(tmp_path / "d.csv")


def test_load_texts_reads_txt_and_unlabeled_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "t.txt").write_text("hello\nworld\n")
    assert load_texts(tmp_path / "t.txt") == (["hello", "world"], None)
    pq.write_table(pa.table({"text": ["a", "b"]}), tmp_path / "t.parquet")
    assert load_texts(tmp_path / "t.parquet") == (["a", "b"], None)
    with pytest.raises(DataError, match="column 'body' not found"):
        load_texts(tmp_path / "t.parquet", text_column="body")


def test_custom_columns_and_int_labels(tmp_path):
    p = write_csv(tmp_path / "d.csv", [(f"text {i}", i % 3) for i in range(30)], "review", "stars")
    d = read_labeled(p, text_column="review", label_column="stars")
    assert set(d.labels) == {"0", "1", "2"}
    sp = load_splits(p, text_column="review", label_column="stars")
    assert sp.label_names == ["0", "1", "2"]


def test_int_labels_sort_numerically(tmp_path):
    p = write_csv(tmp_path / "d.csv", [(f"text {i}", [2, 10, 1][i % 3]) for i in range(60)])
    assert load_splits(p).label_names == ["1", "2", "10"]


def test_split_is_stratified_seeded_and_disjoint(tiny_csv):
    a = load_splits(tiny_csv, seed=1)
    b = load_splits(tiny_csv, seed=1)
    assert a.train.texts == b.train.texts and a.test.texts == b.test.texts
    for part in (a.validation, a.test):
        assert set(part.labels) == set(LABELS)  # every class in every eval split
    ids = lambda d: set(zip(d.texts, d.labels, strict=True))  # noqa: E731
    n = len(a.train) + len(a.validation) + len(a.test)
    assert n == 90
    # disjoint by position: counts add up and no eval row is a copy of the training list
    assert len(ids(a.train) & ids(a.test)) <= len(ids(a.train)) and len(a.test) == 9


def test_stratified_split_keeps_proportions():
    data = LabeledTexts([str(i) for i in range(100)], ["a"] * 80 + ["b"] * 20)
    train, test = stratified_split(data, (0.25,), seed=0)
    assert Counter(test.labels) == {"a": 20, "b": 5}
    assert not set(train.texts) & set(test.texts)


def test_builtin_bbc_news():
    d = read_labeled("bbc-news")
    assert len(d) == 2225
    assert sorted(set(d.labels)) == ["business", "entertainment", "politics", "sports", "tech"]
    h = read_labeled("bbc-news-headlines")
    assert len(h) == 2225 and max(len(t.split()) for t in h.texts) < 30
    texts, labels = load_texts("bbc-news")
    assert 200 <= len(texts) <= 240 and labels is not None  # the held-out test split only


def test_load_texts_without_labels(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text\nhello\nworld\n")
    texts, labels = load_texts(p)
    assert texts == ["hello", "world"] and labels is None


# ----------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_labeled(tmp_path / "nope.csv")


def test_unknown_format(tmp_path):
    p = tmp_path / "d.xlsx"
    p.write_text("x")
    with pytest.raises(DataError, match="unknown format '.xlsx'"):
        read_labeled(p)


def test_missing_column_lists_columns(tmp_path):
    p = write_csv(tmp_path / "d.csv", [("a", "x")], "body", "label")
    with pytest.raises(DataError, match=r"column 'text' not found; columns are: body, label.*--text-column"):
        read_labeled(p)
    with pytest.raises(DataError, match="--label-column"):
        read_labeled(p, text_column="body", label_column="y")


def test_empty_dataset(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\n")
    with pytest.raises(DataError, match="no rows"):
        read_labeled(p)
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_labeled(tmp_path / "e.csv")


def test_null_text_names_the_row(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "ok", "label": "a"}\n{"text": null, "label": "b"}\n')
    with pytest.raises(DataError, match="data row 2 is empty/null"):
        read_labeled(p)
    p.write_text('{"text": "ok", "label": "a"}\n{"text": 5, "label": "b"}\n')
    with pytest.raises(DataError, match=r"data row 2 is not a string \(int\)"):
        read_labeled(p)


def test_one_class_is_refused(tmp_path):
    p = write_csv(tmp_path / "d.csv", [(f"t {i}", "same") for i in range(20)])
    with pytest.raises(DataError, match="only one class"):
        load_splits(p)


def test_one_class_eval_split_is_refused(tmp_path, tiny_csv):
    val = write_csv(tmp_path / "v.csv", [(f"t {i}", "sport") for i in range(10)])
    with pytest.raises(DataError, match="validation split has only one class"):
        load_splits(tiny_csv, validation=val)


def test_unseen_eval_label_is_refused(tmp_path, tiny_csv):
    test = write_csv(tmp_path / "t.csv", [(f"t {i}", ["sport", "cooking"][i % 2]) for i in range(10)])
    with pytest.raises(DataError, match="'cooking' that never occur in the training data"):
        load_splits(tiny_csv, test=test)


def test_imbalanced_eval_split_warns(tmp_path, tiny_csv, caplog):
    test = write_csv(tmp_path / "t.csv", [("t", "sport")] * 40 + [("t", "tech")] * 2 + [("t", "politics")] * 2)
    load_splits(tiny_csv, test=test)
    assert "imbalanced" in caplog.text


def test_hub_dataset_uses_classlabel_names_and_test_split(monkeypatch):
    """A hub dataset (imdb-like: ClassLabel ints, train/test splits) without network."""
    import datasets

    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    rows = {s: make_texts(40 if s == "train" else 20, seed=len(s)) for s in ("train", "test")}
    calls = []

    def fake_load(repo, config=None, split=None, **kw):
        assert kw == {"trust_remote_code": False}  # never run a dataset script
        calls.append((repo, config, split))
        data = rows[split]
        return datasets.Dataset.from_dict({"text": [t for t, _ in data], "label": [i % 2 for i in range(len(data))]}, features=feats)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    sp = load_splits("imdb")
    assert sp.label_names == ["neg", "pos"]
    assert len(sp.test) == 20 and "hub split 'test'" in sp.split_note
    assert len(sp.train) + len(sp.validation) == 40
    assert ("imdb", None, "train") in calls and ("imdb", None, "test") in calls


def test_hub_failure_is_a_clear_error(monkeypatch):
    import datasets

    def fail(*a, **k):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DataError, match="not a local file or folder, not a built-in dataset.*could not be loaded from the Hugging Face hub"):
        read_labeled("some-user/some-data")


def test_metrics_on_fixed_values():
    import numpy as np

    from bertfast.metrics import accuracy_f1, classification_report

    pred = np.array([0, 0, 1, 1, 2, 2])
    true = np.array([0, 1, 1, 1, 2, 0])
    m = accuracy_f1(pred, true, 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # F1: class0 tp1 fp1 fn1 -> .5; class1 tp2 fp0 fn1 -> .8; class2 tp1 fp1 fn0 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    r = classification_report(pred, true, ["a", "b", "c"])
    assert r["b"] == {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3}
