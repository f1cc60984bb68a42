"""`bertfast predict` for every task: multi-label and regression columns, text pairs
(--text-pair-column, --query-column), each output format against `Classifier.predict`, the
refusals, and the Ray engine against single-process predict (marker `ray`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import test_ray
from _export_helpers import MULTI_LABELS, make_task_export, shuffled_lengths
from test_predict import no_leftovers, read_output, run, write_input

from bertfast.errors import BertfastError
from bertfast.runtime.classifier import Classifier
from bertfast.runtime.ray import ClassifyConfig

# name -> (task, pair); thresholds make the multi-label decisions differ from 0.5 per label
KINDS = {
    "multi": ("multi_label", False),
    "pair": ("single_label", True),
    "regression_pair": ("regression", True),
    "multi_pair": ("multi_label", True),
}
THRESHOLDS = [0.3, 0.5, 0.7, 0.5]
N = 23


@pytest.fixture(scope="module")
def exports(_tiny_model_session, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("task-exports")
    out = {name: make_task_export(_tiny_model_session, root / name, task, pair,
                                  thresholds=THRESHOLDS if task == "multi_label" else None)
           for name, (task, pair) in KINDS.items()}
    # A tiny random model's sigmoid scores sit in a narrow band that differs between
    # transformers versions (their inits differ); thresholds between the scores of the test
    # texts make every label go on for some texts and off for others, so label sets vary.
    texts, others = data()
    for name, pair in (("multi", False), ("multi_pair", True)):
        with Classifier.load(out[name], device="cpu") as clf:
            p = clf.predict_proba(list(zip(texts, others)) if pair else texts)
        th = [float(np.sort(col)[len(col) // 2 - 1 : len(col) // 2 + 1].mean()) for col in p.T]
        m = json.loads((out[name] / "bertfast.json").read_text())
        m["task"]["thresholds"] = th
        (out[name] / "bertfast.json").write_text(json.dumps(m))
    return out


def data(n: int = N) -> tuple[list[str], list[str]]:
    """Texts and second texts, lengths out of order, one empty of each."""
    return shuffled_lengths(n - 1) + [""], [""] + shuffled_lengths(n - 1, seed=11)


def expected(export: Path, inputs: list) -> list:
    with Classifier.load(export, device="cpu") as clf:
        return clf.predict(inputs)


def write_pairs(path: Path, fmt: str, texts: list[str], others: list, other_col: str = "text_pair") -> Path:
    return write_input(path, fmt, texts, {"id": list(range(len(texts))), other_col: others})


def check_rows(rows: list[dict], want: list, task: str, fmt: str, sep: str = "|") -> None:
    """Output rows against `Classifier.predict`'s dicts, in order."""
    assert len(rows) == len(want)
    for r, w in zip(rows, want):
        if task == "multi_label":
            got = r["labels"].split(sep) if fmt in ("csv", "tsv", "txt") and r["labels"] else r["labels"] or []
            assert got == w["labels"]
            if fmt != "txt":
                assert [float(r[f"score_{lab}"]) for lab in MULTI_LABELS] == pytest.approx(
                    [w["scores"][lab] for lab in MULTI_LABELS], abs=1e-5)
        elif task == "regression":
            assert float(r["score"]) == pytest.approx(w["score"], abs=1e-5, rel=1e-6)
        else:
            assert r["label"] == w["label"] and float(r["score"]) == pytest.approx(w["score"], abs=1e-5)


def read_txt(path: Path, task: str) -> list[dict]:
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    if task == "multi_label":
        return [{"labels": line} for line in lines]
    if task == "regression":
        return [{"score": line} for line in lines]
    return [dict(zip(("label", "score"), line.split("\t"))) for line in lines]


# -- each task x pair x format against Classifier.predict --------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "txt"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_task_outputs_match_classifier(exports, tmp_path, kind, fmt):
    task, pair = KINDS[kind]
    texts, others = data()
    in_fmt = "csv" if fmt == "txt" and pair else fmt  # TXT input holds one text per line
    if pair:
        src = write_pairs(tmp_path / f"in.{in_fmt}", in_fmt, texts, others)
        flags, inputs = ["--text-pair-column", "text_pair"], [list(p) for p in zip(texts, others)]
    else:
        src, flags, inputs = write_input(tmp_path / f"in.{in_fmt}", in_fmt, texts), [], texts
    out = tmp_path / f"out.{fmt}"
    rc, err = run([str(exports[kind]), "-i", str(src), "-o", str(out), "--chunk-size", "5", "--device", "cpu",
                   "--no-progress", *flags])
    assert rc == 0, err
    rows = read_txt(out, task) if fmt == "txt" else read_output(out, fmt)
    check_rows(rows, expected(exports[kind], inputs), task, fmt)
    if fmt != "txt":  # every input column kept, in order, then the task's columns
        assert [int(r["id"]) for r in rows] == list(range(N)) and [r["text"] for r in rows] == texts
        cols = {"multi_label": ["labels", *(f"score_{lab}" for lab in MULTI_LABELS)], "regression": ["score"],
                "single_label": ["label", "score"]}[task]
        assert list(rows[0]) == ["id", *(["text_pair"] if pair else []), "text", *cols]
        if pair:
            assert [r["text_pair"] for r in rows] == others
    assert no_leftovers(tmp_path)


def test_multilabel_lists_separator_and_thresholds(exports, tmp_path):
    texts, _ = data()
    want = expected(exports["multi"], texts)
    sets = [tuple(w["labels"]) for w in want]
    assert len(set(sets)) > 2 and any(len(s) > 1 for s in sets)  # the check below is not blind
    with Classifier.load(exports["multi"], device="cpu") as clf:
        p = clf.predict_proba(texts)
        th = np.array(clf.thresholds)
    assert ((p >= th) != (p >= 0.5)).any()  # the stored thresholds matter
    src = write_input(tmp_path / "in.jsonl", "jsonl", texts)
    rc, err = run([str(exports["multi"]), "-i", str(src), "-o", str(tmp_path / "o.csv"), "--label-separator", ";",
                   "--all-scores", "--no-progress"])
    assert rc == 0, err
    check_rows(read_output(tmp_path / "o.csv", "csv"), want, "multi_label", "csv", sep=";")
    import pyarrow.parquet as pq

    rc, err = run([str(exports["multi"]), "-i", str(src), "-o", str(tmp_path / "o.parquet"), "--no-progress"])
    assert rc == 0, err
    schema = pq.read_schema(tmp_path / "o.parquet")
    assert str(schema.field("labels").type) == "list<element: string>"
    assert str(schema.field("score_sport").type) == "float"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv"])
def test_gold_labels_column_is_kept(exports, tmp_path, fmt):
    """A multi-label test set has its own `labels`: ours become pred_labels, pred_score_<label>."""
    texts, _ = data(8)
    gold = [["sport"], [], ["tech", "economy"], ["sport"], [], ["politics"], ["tech"], ["economy"]]
    src = write_input(tmp_path / f"in.{fmt}", fmt, texts, {"labels": gold if fmt != "csv" else ["|".join(g) for g in gold]})
    rc, err = run([str(exports["multi"]), "-i", str(src), "-o", str(tmp_path / f"o.{fmt}"), "--no-progress"])
    assert rc == 0, err
    rows = read_output(tmp_path / f"o.{fmt}", fmt)
    assert list(rows[0]) == ["labels", "text", "pred_labels", *(f"pred_score_{lab}" for lab in MULTI_LABELS)]
    assert [r["labels"] for r in rows] == (gold if fmt != "csv" else ["|".join(g) for g in gold])
    want = expected(exports["multi"], texts)
    check_rows([{"labels": r["pred_labels"], **{f"score_{k}": r[f"pred_score_{k}"] for k in MULTI_LABELS}}
                for r in rows], want, "multi_label", fmt)


def test_query_column_is_the_first_text(exports, tmp_path):
    """--query-column Q --text-column D classifies (Q, D), the same as --text-column Q --text-pair-column D."""
    queries, docs = data()
    src = write_input(tmp_path / "in.parquet", "parquet", docs, {"query": queries})
    base = [str(exports["regression_pair"]), "-i", str(src), "--device", "cpu", "--no-progress", "--chunk-size", "4"]
    rc, err = run([*base, "-o", str(tmp_path / "q.jsonl"), "--query-column", "query"])
    assert rc == 0, err
    rc, err = run([*base, "-o", str(tmp_path / "p.jsonl"), "--text-column", "query", "--text-pair-column", "text"])
    assert rc == 0, err
    q, p = read_output(tmp_path / "q.jsonl", "jsonl"), read_output(tmp_path / "p.jsonl", "jsonl")
    want = expected(exports["regression_pair"], [[a, b] for a, b in zip(queries, docs)])
    check_rows(q, want, "regression", "jsonl")
    assert [r["score"] for r in q] == [r["score"] for r in p]
    assert [(r["query"], r["text"]) for r in q] == list(zip(queries, docs))  # query and document kept
    swapped = expected(exports["regression_pair"], [[b, a] for a, b in zip(queries, docs)])
    assert [round(w["score"], 4) for w in want] != [round(w["score"], 4) for w in swapped]  # order matters


# -- refusals: one line naming the flag or row, nonzero exit, nothing written -----------------


def _refused(argv: list[str], out: Path, *needles: str) -> str:
    rc, err = run([*argv, "-o", str(out), "--no-progress"])
    assert rc == 2 and "\n" not in err, err
    for n in needles:
        assert n in err, err
    assert not out.exists() and no_leftovers(out.parent)
    return err


def test_pair_export_needs_a_pair_column(exports, tmp_path):
    texts, others = data(6)
    src = write_pairs(tmp_path / "in.csv", "csv", texts, others)
    _refused([str(exports["pair"]), "-i", str(src)], tmp_path / "o.csv", "--text-pair-column", "classifies text pairs")
    txt = write_input(tmp_path / "in.txt", "txt", texts)
    _refused([str(exports["pair"]), "-i", str(txt), "--text-pair-column", "text_pair"], tmp_path / "o.csv",
             "TXT", "--text-pair-column")
    _refused([str(exports["pair"]), "-i", str(src), "--text-pair-column", "doc"], tmp_path / "o.csv",
             "no column 'doc'", "Pass --text-pair-column NAME")
    _refused([str(exports["pair"]), "-i", str(src), "--query-column", "q"], tmp_path / "o.csv",
             "no column 'q'", "Pass --query-column NAME")


def test_pair_flag_on_single_text_export(exports, tmp_path):
    texts, others = data(6)
    src = write_pairs(tmp_path / "in.csv", "csv", texts, others)
    for flag in ("--text-pair-column", "--query-column"):
        _refused([str(exports["multi"]), "-i", str(src), flag, "text_pair"], tmp_path / "o.csv",
                 f"{flag} is for exports of text-pair models", "classifies single texts")


def test_both_pair_flags_and_same_column_are_refused(exports, tmp_path):
    texts, others = data(6)
    src = write_pairs(tmp_path / "in.csv", "csv", texts, others)
    base = [str(exports["pair"]), "-i", str(src)]
    _refused([*base, "--text-pair-column", "text_pair", "--query-column", "id"], tmp_path / "o.csv",
             "--text-pair-column", "--query-column", "not both")
    _refused([*base, "--text-pair-column", "text"], tmp_path / "o.csv", "--text-pair-column 'text' is the --text-column")
    with pytest.raises(BertfastError, match="not both"):
        ClassifyConfig(export=tmp_path, input=src, output=tmp_path / "ray-out", text_pair_column="a", query_column="b")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("flag", ["--text-pair-column", "--query-column"])
def test_null_second_text_names_the_data_row(exports, tmp_path, fmt, flag):
    texts, others = data(12)
    others[8] = None  # data row 9
    src = write_pairs(tmp_path / f"in.{fmt}", fmt, texts, others)
    if fmt == "jsonl":  # a blank line before it: the data row is not the line number
        lines = src.read_text().split("\n")
        src.write_text("\n".join([*lines[:3], "", *lines[3:]]))
    err = _refused([str(exports["pair"]), "-i", str(src), "--chunk-size", "4", flag, "text_pair"], tmp_path / "o.csv",
                   "data row 9", "'text_pair'", flag)
    assert fmt == "parquet" or "(line 10)" in err


def test_missing_second_text_field_in_jsonl(exports, tmp_path):
    rows = [{"text": "a goal", "text_pair": "the match"}, {"text": "a vote"}, {"text": "x", "text_pair": "y"}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _refused([str(exports["pair"]), "-i", str(src), "--text-pair-column", "text_pair"], tmp_path / "o.jsonl",
             "data row 2", "'text_pair' (--text-pair-column) is missing")


@pytest.mark.parametrize("kind", ["regression_pair", "multi"])
def test_top_k_is_for_single_label(exports, tmp_path, kind):
    texts, others = data(4)
    src = write_pairs(tmp_path / "in.csv", "csv", texts, others)
    flags = ["--text-pair-column", "text_pair"] if KINDS[kind][1] else []
    _refused([str(exports[kind]), "-i", str(src), "--top-k", "2", *flags], tmp_path / "o.csv",
             "--top-k is for single-label exports", KINDS[kind][0])


def test_label_holding_the_separator_is_refused(exports, tmp_path):
    src = write_input(tmp_path / "in.csv", "csv", ["a goal"])
    _refused([str(exports["multi"]), "-i", str(src), "--label-separator", "o"], tmp_path / "o.csv",
             "label 'sport' holds the --label-separator 'o'")
    _refused([str(exports["multi"]), "-i", str(src), "--label-separator", ""], tmp_path / "o.csv",
             "--label-separator must be a non-empty string")
    rc, err = run([str(exports["multi"]), "-i", str(src), "-o", str(tmp_path / "o.jsonl"), "--label-separator", "o",
                   "--no-progress"])
    assert rc == 0, err  # lists: nothing is joined


def test_cli_exit_code_and_one_line(exports, tmp_path, monkeypatch, capsys):
    from bertfast import cli

    monkeypatch.setattr(cli, "COMMANDS", {k: cli.COMMANDS[k] for k in ("predict",)})
    texts, others = data(4)
    src = write_pairs(tmp_path / "in.csv", "csv", texts, others)
    assert cli.main(["predict", str(exports["pair"]), "-i", str(src), "-o", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--text-pair-column" in err and not (tmp_path / "o.csv").exists()


# -- the Ray engine: same columns and values as single-process predict --------------------------

ray_local = test_ray.ray_local  # the fixture: one local 2-CPU Ray instance for the module


def _parquet_folder(folder: Path, columns: dict[str, list], parts: int = 2) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    n = len(next(iter(columns.values())))
    step = -(-n // parts)
    for k in range(parts):
        pq.write_table(pa.table({c: v[k * step:(k + 1) * step] for c, v in columns.items()}), folder / f"p{k}.parquet")
    return folder


def _single(export: Path, folder: Path, out: Path, flags: list[str]) -> list[dict]:
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    whole = out.parent / "whole.parquet"
    pq.write_table(pads.dataset(str(folder), format="parquet").to_table(), whole)
    rc, err = run([str(export), "-i", str(whole), "-o", str(out), "--device", "cpu", "--no-progress", *flags])
    assert rc == 0, err
    return read_output(out, out.suffix[1:])


def _ray_rows(out: Path, fmt: str) -> list[dict]:
    if fmt == "parquet":
        import pyarrow.dataset as pads

        return pads.dataset(str(out), format="parquet").to_table().to_pylist()
    rows = []
    for part in sorted(out.glob("*.json" if fmt == "jsonl" else f"*.{fmt}")):
        rows += read_output(part, fmt)
    return rows


@pytest.mark.ray
@pytest.mark.timeout(240)
@pytest.mark.parametrize(("kind", "fmt", "flags"), [
    ("pair", "parquet", ["--query-column", "query"]),
    ("multi", "csv", []),
    ("multi_pair", "jsonl", ["--text-pair-column", "query"]),
])
def test_ray_engine_matches_single_process(ray_local, exports, tmp_path, kind, fmt, flags):
    texts, queries = data(120)
    cols = {"id": list(range(len(texts))), "text": texts, **({"query": queries} if KINDS[kind][1] else {})}
    folder = _parquet_folder(tmp_path / "in", cols)
    single = {int(r["id"]): r for r in _single(exports[kind], folder, tmp_path / f"single.{fmt}", flags)}
    out = tmp_path / f"preds.{fmt}"
    rc, err = run([str(exports[kind]), "--input", str(folder), "--output", str(out), "--engine", "ray",
                   "--workers", "2", "--chunk-size", "25", "--no-progress", *flags])
    assert rc == 0, err
    rows = _ray_rows(out, fmt)
    assert len(rows) == len(texts) and list(rows[0]) == list(next(iter(single.values())))
    for r in rows:
        ref = single[int(r["id"])]
        for c, v in ref.items():
            if c.startswith("score"):
                assert float(r[c]) == pytest.approx(float(v), abs=1e-5), c
            else:
                assert r[c] == v, c
    # the pairs were (query, text), or (text, query) with --text-pair-column: as Classifier.predict has them
    if KINDS[kind][1]:
        pairs = [[q, t] if flags[0] == "--query-column" else [t, q] for q, t in zip(queries, texts)]
        check_rows(sorted(rows, key=lambda r: int(r["id"])), expected(exports[kind], pairs), KINDS[kind][0], fmt)


def test_ray_actor_checks_the_task_itself(exports):
    """An export given as a URI is read by the actors only: they check the flags and plan the
    columns from the loaded Classifier (called here without Ray, on one Arrow batch)."""
    import pyarrow as pa

    from bertfast.runtime.options import RuntimeOptions
    from bertfast.runtime.ray.engine import _Predictor

    texts, others = data(6)
    batch = pa.table({"text": texts, "q": others})
    kw = dict(options=RuntimeOptions(device="cpu"), text_column="text", preds=None, text_output=False,
              plan_kw={"top_k": 1, "all_scores": False, "separator": None})
    with pytest.raises(BertfastError, match="classifies text pairs; pass --text-pair-column"):
        _Predictor(export=str(exports["multi_pair"]), pair=(None, None, False), **kw)
    actor = _Predictor(export=str(exports["multi_pair"]), pair=("q", "--query-column", True), **kw)
    out = actor(batch).to_pylist()
    want = expected(exports["multi_pair"], [[q, t] for q, t in zip(others, texts)])
    check_rows(out, want, "multi_label", "parquet")
    with pytest.raises(BertfastError, match=r"a row has no text of its pair \(null in 'q', --query-column\)"):
        actor(pa.table({"text": texts[:2], "q": ["x", None]}))
