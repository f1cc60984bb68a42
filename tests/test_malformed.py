"""Malformed input is refused with one line naming the file, line/row and field; nothing is written.

One test (or parametrized family) per class of bad input: unterminated quotes, colliding column
names, rows whose fields or types drift, text that looks like a line break, values JSON cannot
hold, lines without end, hub names that are typos of local files, Ray output locations. The
reader/writer tests need no model; the CLI ones share one tiny export for the module.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime
import json
import os
import resource
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from _export_helpers import make_export, sharpen

from bertfast.errors import BertfastError, DataError
from bertfast.runtime import predict as P
from bertfast.runtime import readers
from bertfast.runtime.io import check_labels_fit_format, prediction_names, read_chunks

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def export_dir(_tiny_model_session, tmp_path_factory) -> Path:
    model = sharpen(_tiny_model_session, tmp_path_factory.mktemp("sharp") / "model")
    return make_export(model, tmp_path_factory.mktemp("export") / "tiny", max_length=64)


def predict(export: Path, src: Path, out: Path, *extra: str) -> tuple[int, str]:
    """`bertfast predict` as the CLI runs it: BertfastError -> exit 2 and its one line."""
    parser = argparse.ArgumentParser()
    P.add_arguments(parser)
    try:
        return P.main(parser.parse_args([str(export), "-i", str(src), "-o", str(out), "--no-progress", *extra])), ""
    except BertfastError as e:
        return 2, str(e)


def read_all(path: Path, fmt: str, col: str | None = "text", n: int = 4) -> list:
    return [r for c in read_chunks(path, fmt, col, n) for r in c.as_dicts()]


def nothing_written(folder: Path, out: Path) -> bool:
    return not out.exists() and not [p for p in folder.iterdir() if ".partial" in p.name]


# -- 1. unterminated quotes and other malformed CSV/TSV ----------------------------------


@pytest.mark.parametrize(("fmt", "content", "line"), [
    # the quote opened on line 3 runs to the end of the file: every later row would vanish into it
    ("csv", 'id,text\n1,fine\n2,"open quote\n3,more\n4,rows\n', 3),
    ("tsv", 'id\ttext\n1\tfine\n2\t"open quote\n3\tmore\n', 3),
    # a later quote closes it, followed by text: the record starting on line 2 is malformed
    ("csv", 'id,text\n1,"open\n2,"quoted" later\n', 2),
    ("csv", 'id,text\n1,"ab"c\n', 2),
    # the header itself
    ("csv", 'id,"text\n1,a\n', 1),
])
def test_unterminated_or_stray_quote_names_the_line(tmp_path, fmt, content, line):
    src = tmp_path / f"in.{fmt}"
    src.write_text(content)
    with pytest.raises(DataError, match=rf"in\.{fmt} line {line}\b"):
        read_all(src, fmt)


def test_unterminated_quote_in_training_data(tmp_path):
    from bertfast.training.data import read_labeled

    src = tmp_path / "train.csv"
    src.write_text('text,label\na goal,sport\n"a vote,politics\na chip,tech\n')
    with pytest.raises(DataError, match=r"train\.csv line 3: .*never closed"):
        read_labeled(src)


def test_unterminated_quote_cli_exit_and_no_output(export_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,text\n" + "".join(f"{i},a goal {i}\n" for i in range(50)) + '50,"oops\n' +
                   "".join(f"{i},a vote\n" for i in range(51, 80)))
    out = tmp_path / "out.csv"
    rc, err = predict(export_dir, src, out, "--chunk-size", "8")
    assert rc == 2 and "line 52" in err and "\n" not in err
    assert nothing_written(tmp_path, out)


# -- 2. column names that collide -------------------------------------------------------


@pytest.mark.parametrize(("name", "content", "match"), [
    ("d.csv", "id,text,id\n1,a,2\n", r"repeats the column name 'id' \(columns 1 and 3\)"),
    ("d.tsv", "text\ttext\na\tb\n", r"repeats the column name 'text'"),
    ("d.jsonl", '{"text": "a", "id": 1, "id": 2}\n', r"line 1: the key 'id' appears twice"),
])
def test_duplicate_columns_are_refused(tmp_path, name, content, match):
    src = tmp_path / name
    src.write_text(content)
    with pytest.raises(DataError, match=match):
        read_all(src, name.rsplit(".", 1)[1])


def test_duplicate_parquet_columns_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table([["a"], ["b"]], names=["text", "text"]), tmp_path / "d.parquet")
    with pytest.raises(DataError, match="repeats the column name 'text'"):
        read_all(tmp_path / "d.parquet", "parquet")


def test_prediction_columns_never_overwrite_input_columns():
    assert prediction_names(["id", "text"], ["a"], 1, False) == ["label", "score"]
    assert prediction_names(["label", "text"], ["a"], 1, False) == ["pred_label", "pred_score"]
    assert prediction_names(["score_2"], ["a", "b"], 2, False)[0] == "pred_label"
    with pytest.raises(DataError, match="rename 'pred_label'"):
        prediction_names(["label", "pred_label", "text"], ["a"], 1, False)
    with pytest.raises(DataError, match="rename 'pred_prob_a'"):
        prediction_names(["prob_a", "pred_prob_a"], ["a"], 1, True)


def test_jsonl_later_row_with_prediction_field(export_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a goal"}\n{"text": "a vote", "score": 3}\n')
    out = tmp_path / "out.jsonl"
    rc, err = predict(export_dir, src, out)
    assert rc == 2 and "line 2 has the field 'score'" in err
    assert nothing_written(tmp_path, out)
    both = tmp_path / "both.csv"
    both.write_text("label,pred_label,text\nx,y,a goal\n")
    rc, err = predict(export_dir, both, tmp_path / "o.csv")
    assert rc == 2 and "rename 'pred_label'" in err


# -- 3. JSONL rows whose fields or types drift ------------------------------------------


@pytest.mark.parametrize("out_name", ["out.csv", "out.tsv", "out.parquet"])
def test_jsonl_field_missing_from_first_row_is_refused(export_dir, tmp_path, out_name):
    rows = [{"text": f"a goal {i}", "id": i} for i in range(10)]
    rows[7]["extra"] = "kept?"
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / out_name
    rc, err = predict(export_dir, src, out, "--chunk-size", "4")
    assert rc == 2 and "line 8 has the field 'extra', which the first row lacks" in err
    assert nothing_written(tmp_path, out)
    rc, err = predict(export_dir, src, tmp_path / "ok.jsonl")  # JSONL keeps every row's fields
    assert rc == 0, err
    got = [json.loads(line) for line in open(tmp_path / "ok.jsonl", encoding="utf-8")]
    assert got[7]["extra"] == "kept?" and "label" in got[7]


@pytest.mark.parametrize(("values", "line", "column"), [
    ([1, 2, 3, 4, 5, "five", 7, 8], 6, "id"),  # int -> str after the first chunk
    ([1, 2, 3, 4, 5, 6.5, 7, 8], 6, "id"),  # int -> float
    ([None, None, None, None, "x", 6, 7, 8], 5, "id"),  # null in the whole first chunk
    ([1, "two", 3, 4, 5, 6, 7, 8], 2, "id"),  # inside the first chunk
])
def test_parquet_type_drift_names_column_and_line(export_dir, tmp_path, values, line, column):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"a goal {i}", "id": v}) + "\n" for i, v in enumerate(values)))
    out = tmp_path / "out.parquet"
    rc, err = predict(export_dir, src, out, "--chunk-size", "4")
    assert rc == 2 and f"line {line}: column {column!r}" in err, err
    assert nothing_written(tmp_path, out)


# -- 4. text that contains line-break look-alikes; labels that break lines ---------------

ODD = ["a goal\u2028second part", "a vote\u2029x", "chip\x85data", "form\x0cfeed", "vt\x0bx", "fs\x1cgs\x1drs\x1e"]


@pytest.mark.parametrize("fmt", ["txt", "csv", "tsv", "jsonl"])
def test_unicode_line_separators_never_split_rows(export_dir, tmp_path, fmt):
    src = tmp_path / f"in.{fmt}"
    if fmt == "txt":
        src.write_text("".join(t + "\n" for t in ODD), encoding="utf-8")
    elif fmt == "jsonl":
        src.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in ODD), encoding="utf-8")
    else:
        with open(src, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, delimiter="," if fmt == "csv" else "\t").writerows([["text"], *([t] for t in ODD)])
    assert [r["text"] for r in read_all(src, fmt)] == ODD
    for out_name in ("o.txt", "o.jsonl", "o.csv"):
        rc, err = predict(export_dir, src, tmp_path / out_name)
        assert rc == 0, err
    with open(tmp_path / "o.txt", encoding="utf-8") as f:
        assert len(list(f)) == len(ODD)
    with open(tmp_path / "o.jsonl", encoding="utf-8") as f:
        assert [json.loads(line)["text"] for line in f] == ODD
    with open(tmp_path / "o.csv", newline="", encoding="utf-8") as f:
        assert [r["text"] for r in csv.DictReader(f)] == ODD


@pytest.mark.parametrize("label", ["a\tb", "a\nb", "a\rb", "a\u2028b", "a\x85b"])
def test_labels_with_line_breaks_are_refused_for_txt_and_training(tmp_path, label):
    with pytest.raises(BertfastError, match="tab or line break"):
        check_labels_fit_format("txt", ["ok", label])
    check_labels_fit_format("csv", ["ok", label])  # quoted by the csv module
    from bertfast.training.data import read_labeled

    src = tmp_path / "train.jsonl"
    src.write_text(json.dumps({"text": "x", "label": "ok"}) + "\n" + json.dumps({"text": "y", "label": label}) + "\n")
    with pytest.raises(DataError, match="data row 2 .*tab or line break"):
        read_labeled(src)


# -- 5. values JSON cannot hold; JSON Python cannot read --------------------------------


def test_parquet_values_json_cannot_hold_become_deterministic(export_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ts = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    pq.write_table(pa.table({
        "text": ["a goal", "a vote"],
        "ts": pa.array([ts, None], pa.timestamp("us", tz="UTC")),
        "day": [datetime.date(2024, 5, 1), datetime.date(2020, 2, 29)],
        "price": pa.array([Decimal("1.10"), Decimal("-3")], pa.decimal128(5, 2)),
        "blob": [b"\x00\xff", b""],
        "x": [float("nan"), float("inf")],
        "dur": pa.array([datetime.timedelta(seconds=90), datetime.timedelta(0)], pa.duration("s")),
        "nested": [{"k": [1.5, float("nan")]}, {"k": []}],
    }), tmp_path / "in.parquet")
    for name in ("out.jsonl", "out.csv"):
        rc, err = predict(export_dir, tmp_path / "in.parquet", tmp_path / name)
        assert rc == 0, err
    with open(tmp_path / "out.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} written")) for line in f]
    assert rows[0]["ts"] == "2024-05-01T12:30:00+00:00" and rows[1]["ts"] is None
    assert rows[0]["day"] == "2024-05-01" and rows[0]["price"] == "1.10" and rows[1]["price"] == "-3.00"
    assert base64.b64decode(rows[0]["blob"]) == b"\x00\xff" and rows[0]["x"] is None and rows[1]["x"] is None
    assert rows[0]["dur"] == "PT90S" and rows[0]["nested"] == {"k": [1.5, None]}
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f))
    assert first["nested"] == '{"k": [1.5, null]}' and first["blob"] == base64.b64encode(b"\x00\xff").decode()


@pytest.mark.parametrize(("line", "match"), [
    ('{"text": "a", "n": ' + "9" * 5000 + "}", "line 2: an integer has too many digits"),
    ('{"text": "a", "n": ' + "[" * 100_000 + "]" * 100_000 + "}", "line 2: JSON nested too deeply"),
    ('{"text": "a", "n": NaN}', "line 2: NaN is not JSON"),
    ('{"text": "a\\ud800b"}', r"line 2: field 'text' holds a lone UTF-16 surrogate"),
    ('{"text": "ok", "meta": {"k": "\\udfff"}}', r"line 2: field 'meta' holds a lone UTF-16 surrogate"),
    ('{"text": "a", }', "line 2 is not valid JSON"),
])
def test_json_python_cannot_read_names_the_line(tmp_path, line, match):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "fine \\ud83d\\ude00"}\n' + line + "\n")  # a surrogate *pair* is an emoji: fine
    with pytest.raises(DataError, match=match):
        read_all(src, "jsonl")


def test_lone_surrogate_cli_exit_and_no_output(export_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a goal"}\n{"text": "bad \\udc80"}\n')
    out = tmp_path / "out.jsonl"
    rc, err = predict(export_dir, src, out)
    assert rc == 2 and "line 2" in err and "surrogate" in err
    assert nothing_written(tmp_path, out)


# -- 6. lines without end ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv", "tsv"])
def test_line_and_field_length_is_capped(tmp_path, monkeypatch, fmt):
    monkeypatch.setattr(readers, "MAX_LINE_CHARS", 1000)
    src = tmp_path / f"in.{fmt}"
    long = "x" * 5000
    body = {"txt": f"short\n{long}\n", "jsonl": f'{{"text": "a"}}\n{{"text": "{long}"}}\n',
            "csv": f"text\nshort\n{long}\n", "tsv": f"text\nshort\n{long}\n"}[fmt]
    src.write_text(body)
    line = 3 if fmt in ("csv", "tsv") else 2  # after the header
    with pytest.raises(DataError, match=f"line {line} is longer than 1,000 characters"):
        read_all(src, fmt)
    # a quoted CSV field spanning many short lines is capped too (an unterminated quote, usually)
    if fmt == "csv":
        src.write_text('text\n"' + "word\n" * 400 + '"\n')
        with pytest.raises(DataError, match="line 2: a field is longer than 1,000 characters"):
            read_all(src, fmt)


def test_txt_without_line_break_is_not_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_LINE_CHARS", 1 << 20)
    src = tmp_path / "big.txt"
    with open(src, "w") as f:
        for _ in range(64):
            f.write("y" * (1 << 20))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="line 1 is longer than"):
        read_all(src, "txt")
    # 64 Mi characters read whole would take >= 64 MiB; the capped read takes a few.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 32 * 1024


# -- 7. hub names that are typos of local paths -----------------------------------------


def test_hub_is_used_only_when_the_name_cannot_be_local(tmp_path, monkeypatch, caplog):
    import datasets

    from bertfast.training.data import read_labeled

    calls = []

    def fake_load(repo, config=None, split=None, **kw):
        calls.append((repo, kw))
        return datasets.Dataset.from_dict({"text": ["a", "b"], "label": ["x", "y"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reviews.csv").write_text("text,label\na,x\nb,y\n")
    (tmp_path / "data").mkdir()
    for name, match in [("reviews", r"no local file named 'reviews'; did you mean reviews\.csv\?"),
                        ("Reviews", r"did you mean reviews\.csv"),
                        ("reviewz.csv", r"no such file or folder here; did you mean reviews\.csv"),
                        ("data/reviews", "no such file or folder here"),
                        ("./imdb", "no such file or folder here"),
                        ("a/b/c", "no such file or folder here")]:
        with pytest.raises(DataError, match=match):
            read_labeled(name)
    assert calls == []
    with caplog.at_level("INFO", logger="bertfast"):
        assert len(read_labeled("imdb")) == 2 and len(read_labeled("hub:reviews")) == 2
    assert [c[0] for c in calls] == ["imdb", "reviews"]
    assert all(kw.get("trust_remote_code") is False for _, kw in calls)
    assert "reading hub dataset 'imdb'" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="bertfast"):
        read_labeled("reviews.csv")
    assert "reading local CSV file reviews.csv" in caplog.text


# -- 8. Ray output locations (no Ray needed) --------------------------------------------


@pytest.mark.parametrize(("a", "b", "same"), [
    ("s3://bucket/data", "s3://bucket/data/", True),
    ("s3://bucket//data", "s3://bucket/data", True),
    ("S3://bucket/x/../data/.", "s3a://bucket/data", True),
    ("gs://b/in", "gcs://b/in//", True),
    ("s3://bucket/data", "s3://bucket/data2", False),
    ("s3://bucket/data", "s3://other/data", False),
])
def test_uri_normalisation(a, b, same):
    from bertfast.runtime.ray.fs import normalize_location

    assert (normalize_location(a) == normalize_location(b)) is same


def test_output_inside_input_or_input_inside_output_is_refused(tmp_path):
    from bertfast.runtime.ray import ClassifyConfig
    from bertfast.runtime.ray.fs import overlap

    assert overlap("s3://b/in", "s3://b/in/preds/") and overlap("s3://b/in//preds", "s3://b/in")
    assert overlap("s3://b/in/*.parquet", "s3://b/in/out") and not overlap("s3://b/in", "s3://b/input")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.parquet").write_bytes(b"")
    for inp, out in [(tmp_path / "in", f"{tmp_path}/in/"), (tmp_path / "in", tmp_path / "in" / "preds"),
                     (tmp_path / "in" / "a.parquet", tmp_path), (f"{tmp_path}/in/*.parquet", f"{tmp_path}//in/sub/../p")]:
        with pytest.raises(BertfastError, match="--output .* (is the input|is inside the input|holds the input)"):
            ClassifyConfig(export=tmp_path, input=str(inp), output=str(out), force=True)


class FakeStore:
    """An object store in a dict: path -> (bytes, mtime); records every operation in order."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects = {p: (b, 0) for p, b in objects.items()}
        self.ops: list[str] = []
        self.clock = 0

    def get_file_info(self, selector):
        import pyarrow.fs as pafs

        base = selector.base_dir.rstrip("/") + "/"
        return [pafs.FileInfo(p, pafs.FileType.File, size=len(b), mtime=datetime.datetime.fromtimestamp(t))
                for p, (b, t) in sorted(self.objects.items()) if p.startswith(base)]

    def delete_file(self, path):
        self.ops.append(f"delete {path}")
        del self.objects[path]

    def open_input_stream(self, path):
        import pyarrow as pa

        return pa.BufferReader(self.objects[path][0])

    def open_output_stream(self, path):
        store = self

        class Sink:
            def __enter__(self):
                self.data = b""
                return self

            def write(self, b):
                self.data += b

            def __exit__(self, *exc):
                store.put(path, self.data)

        return Sink()

    def put(self, path, data):
        self.clock += 1
        self.ops.append(f"write {path}")
        self.objects[path] = (data, self.clock)


def _store_output(monkeypatch, store):
    from bertfast.runtime.ray import fs

    monkeypatch.setattr(fs, "_fs_for", lambda uri: (store, uri.split("://", 1)[1].rstrip("/")))
    return fs._output_dir


def test_force_on_an_object_store_keeps_the_old_output_until_the_new_one_is_complete(monkeypatch):
    old = {"b/out/old-0.parquet": b"old0", "b/out/old-1.parquet": b"old1", "b/out/_SUCCESS": b"{old}"}
    store = FakeStore(old)
    output_dir = _store_output(monkeypatch, store)
    with pytest.raises(BertfastError, match="already exists; pass --force"):
        with output_dir("s3://b/out", force=False):
            pass
    with output_dir("s3://b/out/", force=True) as out:
        assert "b/out/old-0.parquet" in store.objects and "b/out/_SUCCESS" not in store.objects
        store.put("b/out/new-0.parquet", b"new0")
        store.put("b/out/old-1.parquet", b"new1")  # a new part that happens to share an old name is kept
        out.finish(b"{new}")
    assert store.objects.keys() == {"b/out/new-0.parquet", "b/out/old-1.parquet", "b/out/_SUCCESS"}
    assert store.objects["b/out/_SUCCESS"][0] == b"{new}"
    # order: old marker gone first, the new parts, then the stale old part, then the new marker last
    assert store.ops == ["delete b/out/_SUCCESS", "write b/out/new-0.parquet", "write b/out/old-1.parquet",
                         "delete b/out/old-0.parquet", "write b/out/_SUCCESS"]


def test_failed_run_on_an_object_store_restores_the_previous_output(monkeypatch):
    old = {"b/out/old-0.parquet": b"old0", "b/out/_SUCCESS": b"{old}"}
    store = FakeStore(old)
    output_dir = _store_output(monkeypatch, store)
    with pytest.raises(DataError):
        with output_dir("s3://b//out", force=True):
            store.put("b/out/new-0.parquet", b"half")
            raise DataError("a worker found a bad row")
    assert {p: b for p, (b, _) in store.objects.items()} == old
    fresh = FakeStore({})
    output_dir = _store_output(monkeypatch, fresh)
    with pytest.raises(DataError):
        with output_dir("s3://b/new", force=False):
            fresh.put("b/new/part-0.parquet", b"half")
            raise DataError("bad row")
    assert fresh.objects == {}


# -- 9. scale: a 1M-row CSV in bounded memory; one bad row in the middle ----------------


@pytest.mark.slow
def test_million_rows_bounded_memory_and_a_bad_row_in_the_middle(export_dir, tmp_path):
    n = 1_000_000
    src = tmp_path / "big.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for i in range(n):
            w.writerow([i, ("a goal for the team", "the vote in parliament", "a new phone chip")[i % 3]])
    cmd = [sys.executable, "-m", "bertfast.cli", "predict", str(export_dir), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r = subprocess.run([*cmd, "-i", str(src), "-o", str(tmp_path / "out.csv")], capture_output=True, text=True, env=env)
    peak_mib = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "out.csv", newline="") as f:
        assert sum(1 for _ in csv.reader(f)) == n + 1
    print(f"peak RSS of `bertfast predict` on {n:,} rows: {peak_mib:.0f} MiB")
    assert peak_mib < 1024
    # the same file with an unterminated quote on the row of id 500000 (line 500002)
    bad = tmp_path / "bad.csv"
    with open(src, newline="") as fin, open(bad, "w", newline="") as fout:
        for lineno, line in enumerate(fin, 1):
            fout.write(line.replace(",", ',"', 1) if lineno == 500_002 else line)
    r = subprocess.run([*cmd, "-i", str(bad), "-o", str(tmp_path / "bad-out.csv")], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2 and "line 500002" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "bad-out.csv").exists() and not list(tmp_path.glob(".bertfast-tmp-*"))
