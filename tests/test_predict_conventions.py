"""`bertfast predict` as a batch script expects it (issue #23): `-i -`/`-o -` in a shell pipeline,
format sniffing on standard input, `--quiet`, and `--output-prefix` when the input already holds
the prediction columns."""

from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _export_helpers import make_export, sharpen

from bertfast.errors import BertfastError, DataError
from bertfast.runtime import predict as P
from bertfast.runtime.classifier import Classifier
from bertfast.runtime.io import Stdin, prediction_names, sniff_format

TEXTS = ["a goal and a win", "the minister won the vote", "a new phone chip", "", "tax law, party and policy"]


@pytest.fixture(scope="module")
def export_dir(_tiny_model_session, tmp_path_factory) -> Path:
    model = sharpen(_tiny_model_session, tmp_path_factory.mktemp("sharp") / "model")
    return make_export(model, tmp_path_factory.mktemp("export") / "tiny", max_length=64)


@pytest.fixture(scope="module")
def expected(export_dir) -> list[dict]:
    with Classifier.load(export_dir, device="cpu") as c:
        return c.predict(TEXTS)


def bertfast_cmd() -> str:
    """The venv's `bertfast` entry point, else `python -m bertfast` (same interpreter)."""
    exe = Path(sys.executable).with_name("bertfast")
    return shlex.quote(str(exe)) if exe.exists() else f"{shlex.quote(sys.executable)} -m bertfast"


def predict_stdio(export_dir: Path, data: bytes, *flags: str) -> subprocess.CompletedProcess:
    """`bertfast predict EXPORT -i - -o - FLAGS` with `data` on standard input."""
    cmd = [*shlex.split(bertfast_cmd()), "predict", str(export_dir), "-i", "-", "-o", "-", "--device", "cpu", *flags]
    return subprocess.run(cmd, input=data, capture_output=True, timeout=300)


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def run(argv: list[str]) -> tuple[int, str]:
    """In-process, as `bertfast.cli.main` runs it: BertfastError -> exit 2 and its message."""
    parser = argparse.ArgumentParser()
    P.add_arguments(parser)
    try:
        return P.main(parser.parse_args(argv)), ""
    except BertfastError as e:
        return 2, str(e)


# -- standard input and output -----------------------------------------------------------------


def test_shell_pipeline_with_head(export_dir, expected, tmp_path):
    """`cat in.jsonl | bertfast predict E -i - -o - | head -n 3`: three rows in input order, exit 0,
    and head closing the pipe early ends bertfast quietly (exit 0, no traceback)."""
    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(300)]
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl([{"id": i, "text": t} for i, t in enumerate(texts)]))
    status, err = tmp_path / "status", tmp_path / "err"
    # Small chunks: rows stream out in many writes, so head has left before the last ones.
    inner = f"{bertfast_cmd()} predict {shlex.quote(str(export_dir))} -i - -o - --device cpu --chunk-size 10"
    pipeline = (f"cat {shlex.quote(str(src))} | ( {inner} 2>{shlex.quote(str(err))}; "
                f"echo $? > {shlex.quote(str(status))} ) | head -n 3")
    r = subprocess.run(pipeline, shell=True, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["id"] for row in rows] == [0, 1, 2] and [row["text"] for row in rows] == texts[:3]
    with Classifier.load(export_dir, device="cpu") as c:
        assert [row["label"] for row in rows] == [e["label"] for e in c.predict(texts[:3])]
    assert status.read_text().strip() == "0", err.read_text()
    log = err.read_text()
    assert "Traceback" not in log and "BrokenPipe" not in log and "Exception ignored" not in log


def test_closed_stdout_ends_the_run_with_exit_0(export_dir, tmp_path):
    """The reader closes the pipe after one line while predictions are still being written."""
    src = tmp_path / "in.txt"
    src.write_text("".join(f"{TEXTS[0]} {'and a goal ' * 20}{i}\n" for i in range(3000)))  # ~0.8 MB out
    cmd = [*shlex.split(bertfast_cmd()), "predict", str(export_dir), "-i", "-", "-o", "-", "--device", "cpu",
           "--chunk-size", "50", "--quiet"]
    with open(src, "rb") as stdin:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert json.loads(proc.stdout.readline())["text"].startswith(TEXTS[0])
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=300) == 0, err
    assert err == ""  # no traceback, no "Exception ignored", and --quiet: no progress


@pytest.mark.parametrize(("fmt", "data"), [
    ("jsonl", b"\n" + jsonl([{"id": i, "text": t} for i, t in enumerate(TEXTS)])),  # a blank line first
    ("csv", ("\ufeffid,text\r\n" + "".join(f'{i},"{t}"\r\n' for i, t in enumerate(TEXTS))).encode()),
    ("tsv", ("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(TEXTS))).encode()),
    ("txt", "".join(t + "\n" for t in TEXTS).encode()),
])
def test_stdin_format_is_sniffed(export_dir, expected, fmt, data):
    r = predict_stdio(export_dir, data)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert f"reading {fmt}" in err and "wrote 5 rows to standard output" in err  # logs on stderr only
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]  # stdout: JSONL by default
    assert [row["text"] for row in rows] == TEXTS
    assert [row["label"] for row in rows] == [e["label"] for e in expected]
    if fmt != "txt":
        assert [int(row["id"]) for row in rows] == list(range(len(TEXTS)))


def test_a_comma_line_without_the_text_column_is_plain_text(export_dir):
    lines = ["a goal, a win and a cup", "tax, party, vote"]
    r = predict_stdio(export_dir, "".join(t + "\n" for t in lines).encode(), "--quiet")
    assert r.returncode == 0, r.stderr.decode()
    assert [json.loads(line)["text"] for line in r.stdout.decode().splitlines()] == lines
    assert r.stderr == b""  # --quiet


def test_output_format_csv_to_stdout(export_dir, expected):
    r = predict_stdio(export_dir, jsonl([{"id": i, "text": t} for i, t in enumerate(TEXTS)]),
                      "--output-format", "csv", "--top-k", "2")
    assert r.returncode == 0, r.stderr.decode()
    rows = list(csv.DictReader(io.StringIO(r.stdout.decode(), newline="")))
    assert list(rows[0]) == ["id", "text", "label", "score", "label_2", "score_2"]
    assert [row["text"] for row in rows] == TEXTS
    assert [row["label"] for row in rows] == [e["label"] for e in expected]


def test_parquet_through_stdin_and_stdout(export_dir, expected):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(len(TEXTS))), "text": TEXTS}), buf)
    r = predict_stdio(export_dir, buf.getvalue(), "--output-format", "parquet", "--output-prefix", "m_")
    assert r.returncode == 0, r.stderr.decode()
    assert "reading parquet" in r.stderr.decode()  # sniffed from the magic bytes
    table = pq.read_table(io.BytesIO(r.stdout))
    assert table.column_names == ["id", "text", "m_label", "m_score"]
    assert str(table.schema.field("m_label").type) == "string" and str(table.schema.field("m_score").type) == "float"
    assert table.column("m_label").to_pylist() == [e["label"] for e in expected]


def test_stdin_to_a_file_and_a_file_to_stdout(export_dir, expected, tmp_path):
    out = tmp_path / "out.csv"
    base = [*shlex.split(bertfast_cmd()), "predict", str(export_dir), "--device", "cpu"]
    r = subprocess.run([*base, "-i", "-", "-o", str(out)], input="".join(t + "\n" for t in TEXTS).encode(),
                       capture_output=True, timeout=300)
    assert r.returncode == 0 and r.stdout == b"", r.stderr.decode()
    with open(out, newline="") as f:
        assert [row["label"] for row in csv.DictReader(f)] == [e["label"] for e in expected]
    r = subprocess.run([*base, "-i", str(out), "-o", "-", "--output-prefix", "again_"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]  # CSV in, JSONL out: the -o - default
    assert [row["again_label"] for row in rows] == [row["label"] for row in rows]
    assert not (Path.cwd() / "-").exists()  # `-o -` never writes a file named "-"


def test_stdio_errors(export_dir):
    r = predict_stdio(export_dir, b"")
    assert r.returncode == 2 and b"--input - (standard input) has no rows to classify" in r.stderr
    assert b"Traceback" not in r.stderr and r.stdout == b""
    r = predict_stdio(export_dir, b"text\n", "--input-format", "csv", "--text-column", "body")
    assert r.returncode == 2 and b"no column 'body'" in r.stderr
    for flags, message in ((["-i", "-", "-o", "o.jsonl"], "--input - (standard input) needs the single-process"),
                           (["-i", "x.csv", "-o", "-"], "--output - (standard output) needs the single-process"),
                           (["-i", "x.csv", "-o", "o", "--output-prefix", "p_"], "--output-prefix needs the single")):
        rc, err = run([str(export_dir), *flags, "--engine", "ray"])
        assert rc == 2 and message in err


def test_sniff_format_and_stdin_replay():
    assert sniff_format('{"text": "a"}', "text") == "jsonl"
    assert sniff_format('id,"text"', "text") == "csv" and sniff_format("id\ttext", "text") == "tsv"
    assert sniff_format("id,body", "text") == "txt" and sniff_format("text", "text") == "txt"
    assert sniff_format('["text"]', "text") == "txt" and sniff_format("", "text") == "txt"
    assert sniff_format("id,body", "body") == "csv" and sniff_format("PAR1\x15\x04", "text") == "parquet"
    src = Stdin(io.BufferedReader(io.BytesIO(b"\xef\xbb\xbf\n\r\nid,text\r\n1,a\r\n")))
    assert src.first_line() == "id,text"
    assert src.open_text("").read() == "\n\r\nid,text\r\n1,a\r\n"  # peeked bytes come back, BOM dropped


# -- --output-prefix --------------------------------------------------------------------------


def test_label_and_pred_label_clash_names_both_and_the_flag(export_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl([{"text": "a goal", "label": "sport", "pred_label": "tech"}]))
    out = tmp_path / "o.jsonl"
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--no-progress"])
    assert rc == 2 and "\n" not in err
    assert "'label' and 'pred_label'" in err and "--output-prefix" in err and not out.exists()
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--output-prefix", "p2_", "--top-k", "2",
                   "--all-scores", "--no-progress"])
    assert rc == 0, err
    row = json.loads(out.read_text().splitlines()[0])
    assert list(row) == ["text", "label", "pred_label", "p2_label", "p2_score", "p2_label_2", "p2_score_2",
                         "p2_prob_sport", "p2_prob_tech", "p2_prob_politics"]
    assert (row["label"], row["pred_label"]) == ("sport", "tech")  # the input columns are untouched


def test_a_prefix_that_still_clashes_is_refused(export_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("text,p2_score\na goal,1\n")
    out = tmp_path / "o.csv"
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--output-prefix", "p2_"])
    assert rc == 2 and "\n" not in err
    assert "already has the column 'p2_score'" in err and "--output-prefix 'p2_'" in err and not out.exists()
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--output-prefix", ""])
    assert rc == 2 and err.startswith("--output-prefix must be a non-empty string")


def test_prediction_names_with_a_prefix():
    assert prediction_names(["text", "label"], ["a"], 1, False, prefix="m_") == ["m_label", "m_score"]
    assert prediction_names(["m_label"], ["a"], 1, False, prefix="m_", txt=True) == ["label", "score"]
    assert prediction_names(["x"], ["a", "b"], 1, False, task="multi_label", prefix="m_") == [
        "m_labels", "m_score_a", "m_score_b"]
    with pytest.raises(DataError, match="already has the column 'm_score'"):
        prediction_names(["m_score"], ["a"], 1, False, prefix="m_")


def test_quiet_keeps_warnings(export_dir, tmp_path):
    r = predict_stdio(export_dir, jsonl([{"text": "a goal", "label": "sport"}]), "--quiet")
    assert r.returncode == 0
    err = r.stderr.decode()
    assert "`pred_` prefix" in err and "--output-prefix" in err  # the warning stays
    assert "predict:" not in err and "wrote" not in err and "reading" not in err  # no progress, no INFO
    assert "pred_label" in json.loads(r.stdout)
