"""`bertfast predict`: every format end to end, order, columns, atomic output, bad input."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _export_helpers import long_text, make_export, sharpen, shuffled_lengths

from bertfast.errors import BertfastError
from bertfast.formats import EXTENSIONS, format_of
from bertfast.formats import FORMATS as FILE_FORMATS
from bertfast.runtime import predict as P
from bertfast.runtime.classifier import Classifier
from bertfast.runtime.options import RuntimeOptions
from bertfast.training.data import read_labeled

FORMATS = ["csv", "tsv", "jsonl", "parquet", "txt"]


@pytest.fixture(scope="module")
def export_dir(_tiny_model_session, tmp_path_factory) -> Path:
    model = sharpen(_tiny_model_session, tmp_path_factory.mktemp("sharp") / "model")
    return make_export(model, tmp_path_factory.mktemp("export") / "tiny", max_length=64)


@pytest.fixture(scope="module")
def clf(export_dir):
    with Classifier.load(export_dir, device="cpu") as c:
        yield c


def run(argv: list[str], capsys=None) -> tuple[int, str]:
    """Run the predict command the way `bertfast.cli.main` does: BertfastError -> exit 2, one line."""
    parser = argparse.ArgumentParser()
    P.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return P.main(args), ""
    except BertfastError as e:
        return 2, str(e)


def write_input(path: Path, fmt: str, texts: list[str], extra: dict[str, list] | None = None) -> Path:
    extra = extra or {"id": list(range(len(texts)))}
    if fmt == "txt":
        path.write_text("".join(t + "\n" for t in texts))
    elif fmt in ("csv", "tsv"):
        with open(path, "w", newline="") as f:
            w = csv.writer(f, delimiter="," if fmt == "csv" else "\t")
            w.writerow([*extra, "text"])
            w.writerows([*(extra[k][i] for k in extra), t] for i, t in enumerate(texts))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({**{k: v[i] for k, v in extra.items()}, "text": t}) + "\n" for i, t in enumerate(texts)))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({**extra, "text": texts}), path)
    return path


def read_output(path: Path, fmt: str) -> list[dict]:
    if fmt in ("csv", "tsv"):
        with open(path, newline="") as f:
            return list(csv.DictReader(f, delimiter="," if fmt == "csv" else "\t"))
    # File iteration, not str.splitlines: texts may hold U+2028 & co., which are not line breaks.
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    if fmt == "txt":
        with open(path, encoding="utf-8") as f:
            return [dict(zip(("label", "score"), line.rstrip("\n").split("\t"))) for line in f]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".partial" in p.name]


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_end_to_end(export_dir, clf, tmp_path, fmt):
    texts = shuffled_lengths(40) + [""]  # lengths out of order, and an empty text
    src = write_input(tmp_path / f"in.{fmt}", fmt, texts)
    out = tmp_path / f"out.{fmt}"
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--chunk-size", "7", "--device", "cpu", "--no-progress"])
    assert rc == 0, err
    rows = read_output(out, fmt)
    expected = clf.predict(texts)
    assert len(rows) == len(texts)
    assert [r["label"] for r in rows] == [e["label"] for e in expected]
    assert [float(r["score"]) for r in rows] == pytest.approx([e["score"] for e in expected], abs=2e-6)
    if fmt != "txt":
        assert [int(r["id"]) for r in rows] == list(range(len(texts)))  # original columns kept, in order
        assert [r["text"] for r in rows] == texts
    assert no_leftovers(tmp_path)


def test_all_scores_and_top_k(export_dir, clf, tmp_path):
    texts = shuffled_lengths(12)
    src = write_input(tmp_path / "in.csv", "csv", texts)
    out = tmp_path / "out.csv"
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--all-scores", "--top-k", "2", "--no-progress"])
    assert rc == 0, err
    rows = read_output(out, "csv")
    assert list(rows[0]) == ["id", "text", "label", "score", "label_2", "score_2", "prob_sport", "prob_tech", "prob_politics"]
    for r, p in zip(rows, clf.predict_proba(texts)):
        assert [float(r[f"prob_{lab}"]) for lab in clf.labels] == pytest.approx(p.tolist(), abs=2e-6)
        assert r["label_2"] != r["label"] and float(r["score_2"]) <= float(r["score"])


def test_top_k_over_label_count_is_refused(export_dir, tmp_path):
    src = write_input(tmp_path / "in.csv", "csv", ["a goal"])
    out = tmp_path / "out.csv"
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--top-k", "5", "--no-progress"])
    assert rc == 2 and "--top-k 5 is more than the model's 3 labels" in err
    assert not out.exists()


def test_existing_label_column_is_not_overwritten(export_dir, tmp_path):
    src = write_input(tmp_path / "in.jsonl", "jsonl", ["a goal", "a vote"], {"label": ["sport", "politics"]})
    out = tmp_path / "out.jsonl"
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--no-progress"])
    assert rc == 0, err
    rows = read_output(out, "jsonl")
    assert [r["label"] for r in rows] == ["sport", "politics"] and {"pred_label", "pred_score"} <= set(rows[0])


@pytest.mark.parametrize(("src_fmt", "out_name"), [("csv", "o.jsonl"), ("jsonl", "o.parquet"), ("parquet", "o.tsv"), ("txt", "o.csv")])
def test_format_conversion(export_dir, clf, tmp_path, src_fmt, out_name):
    texts = shuffled_lengths(9)
    src = write_input(tmp_path / f"in.{src_fmt}", src_fmt, texts)
    out = tmp_path / out_name
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--chunk-size", "4", "--no-progress"])
    assert rc == 0, err
    rows = read_output(out, format_of(out))
    assert [r["text"] for r in rows] == texts
    assert [r["label"] for r in rows] == [e["label"] for e in clf.predict(texts)]


def test_sliding_window_flags(export_dir, tmp_path):
    texts = [long_text(300), "a goal"]
    src = write_input(tmp_path / "in.txt", "txt", texts)
    out = tmp_path / "out.txt"
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--long-text", "sliding-window",
                   "--stride", "10", "--aggregate", "max", "--no-progress"])
    assert rc == 0, err
    with Classifier.load(export_dir, device="cpu", long_text="sliding-window", stride=10, aggregate="max") as c:
        assert [r["label"] for r in read_output(out, "txt")] == [e["label"] for e in c.predict(texts)]


# -- refusals and bad input: exit 2, a message that says what to fix, nothing left behind --------


def test_refuses_to_overwrite_without_force(export_dir, tmp_path):
    src = write_input(tmp_path / "in.csv", "csv", ["a goal"])
    out = tmp_path / "out.csv"
    out.write_text("precious")
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out)])
    assert rc == 2 and "already exists; pass --force" in err
    assert out.read_text() == "precious"
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--force", "--no-progress"])
    assert rc == 0 and "label" in out.read_text()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_missing_text_column_lists_columns(export_dir, tmp_path, fmt):
    src = write_input(tmp_path / f"in.{fmt}", fmt, ["a goal"])
    out = tmp_path / f"out.{fmt}"
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--text-column", "body"])
    assert rc == 2
    assert "no column 'body'; columns found: 'id', 'text'. Pass --text-column NAME." in err
    assert not out.exists()


@pytest.mark.parametrize(("name", "content"), [("e.csv", ""), ("h.csv", "id,text\n"), ("e.jsonl", "\n\n"), ("e.txt", "")])
def test_empty_input(export_dir, tmp_path, name, content):
    src = tmp_path / name
    src.write_text(content)
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(tmp_path / "out.csv")])
    assert rc == 2 and "has no rows to classify" in err
    assert not (tmp_path / "out.csv").exists()


def test_bad_row_mid_stream_leaves_nothing(export_dir, tmp_path):
    lines = [json.dumps({"text": f"goal {i}"}) for i in range(30)]
    lines[20] = json.dumps({"text": None})
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--chunk-size", "4", "--no-progress"])
    assert rc == 2 and "line 21: 'text' is null, not a string" in err
    assert not out.exists() and no_leftovers(tmp_path)


def test_bad_files(export_dir, tmp_path):
    odd = tmp_path / "in.data"
    odd.write_text("x\n")
    rc, err = run([str(export_dir), "-i", str(odd), "-o", str(tmp_path / "o.csv")])
    assert rc == 2 and "pass --input-format" in err
    rc, err = run([str(export_dir), "-i", str(odd), "-o", str(tmp_path / "o.csv"), "--input-format", "txt", "--no-progress"])
    assert rc == 0, err
    ragged = tmp_path / "r.csv"
    ragged.write_text("id,text\n1,a goal\n2,a, vote\n")
    rc, err = run([str(export_dir), "-i", str(ragged), "-o", str(tmp_path / "r-out.csv")])
    assert rc == 2 and "line 3 has 3 fields but the header has 2" in err
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    rc, err = run([str(export_dir), "-i", str(binary), "-o", str(tmp_path / "b-out.csv")])
    assert rc == 2 and "is not UTF-8 text" in err
    rc, err = run([str(tmp_path / "no-export"), "-i", str(odd), "-o", str(tmp_path / "x.csv"), "--input-format", "txt"])
    assert rc == 2 and "does not exist" in err
    rc, err = run([str(export_dir), "-i", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "x.csv")])
    assert rc == 2 and "--input" in err and "does not exist" in err
    assert no_leftovers(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, "--top-k must be an integer >= 1"),
        ({"chunk_size": 0}, "--chunk-size must be an integer >= 1"),
        ({"options": "cpu"}, "options must be a RuntimeOptions; got str"),
        ({"output": "o.txt", "all_scores": True}, "--all-scores need a columnar output"),
    ],
)
def test_config_errors_name_the_flag(export_dir, tmp_path, kwargs, message):
    src = write_input(tmp_path / "in.csv", "csv", ["a goal"])
    base = {"export": export_dir, "input": src, "output": tmp_path / "o.csv"}
    if "output" in kwargs:
        kwargs = {**kwargs, "output": tmp_path / kwargs["output"]}
    with pytest.raises(BertfastError, match=message):
        P.PredictConfig(**{**base, **kwargs})


@pytest.mark.parametrize("ext", [e for e, f in EXTENSIONS.items() if FILE_FORMATS[f].columnar])
def test_every_training_extension_is_accepted_by_predict(export_dir, tmp_path, ext):
    """One extension table: a file `bertfast train` reads (e.g. `.json`), predict reads too."""
    src = write_input(tmp_path / f"in{ext}", EXTENSIONS[ext], ["a goal", "a vote"], {"label": ["sport", "politics"]})
    assert read_labeled(src).labels == ["sport", "politics"]
    out = tmp_path / "o.jsonl"
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(out), "--no-progress"])
    assert rc == 0, err
    assert [r["text"] for r in read_output(out, "jsonl")] == ["a goal", "a vote"]


def test_options_object_and_generated_flags(export_dir, tmp_path):
    src = write_input(tmp_path / "in.csv", "csv", ["a goal"])
    base = {"export": export_dir, "input": src, "output": tmp_path / "o.csv"}
    cfg = P.PredictConfig(**base, options=RuntimeOptions(device="cpu", threads=2, long_text="head-tail"))
    assert cfg.options.threads == 2 and not hasattr(cfg, "device")  # the settings live in `options` only
    with pytest.raises(TypeError, match="device"):  # the 0.1.0 keywords are gone: options=RuntimeOptions(...)
        P.PredictConfig(**base, device="cpu")
    parser = argparse.ArgumentParser()
    P.add_arguments(parser)
    flags = parser.format_help()
    for flag in ("--device", "--variant", "--threads", "--long-text", "--stride", "--aggregate", "--max-length",
                 "--batch-tokens", "--max-batch-size", "--streams", "--no-allow-spinning", "--text-pair-column",
                 "--query-column", "--label-separator"):
        assert flag in flags
    args = parser.parse_args([str(export_dir), "-i", str(src), "-o", str(tmp_path / "o.csv"), "--threads", "2"])
    assert RuntimeOptions.from_namespace(args) == RuntimeOptions(threads=2)


def test_missing_pyarrow_names_the_extra(export_dir, tmp_path, monkeypatch):
    src = write_input(tmp_path / "in.parquet", "parquet", ["a goal"])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    rc, err = run([str(export_dir), "-i", str(src), "-o", str(tmp_path / "o.csv")])
    assert rc == 2 and "pip install 'bertfast[io]'" in err


def test_python_api(export_dir, tmp_path):
    import bertfast

    src = write_input(tmp_path / "in.tsv", "tsv", ["a goal", "a vote"])
    opts = bertfast.RuntimeOptions(device="cpu")
    out = bertfast.predict(bertfast.PredictConfig(export_dir, src, tmp_path / "o.tsv", options=opts, progress=False))
    assert out == tmp_path / "o.tsv" and len(read_output(out, "tsv")) == 2


# -- the real CLI ------------------------------------------------------------------------------


def test_cli_main_contract(export_dir, tmp_path, monkeypatch, capsys):
    """Through `bertfast.cli.main` (other commands stubbed out): exit 0, then exit 2 on one line."""
    from bertfast import cli

    monkeypatch.setattr(cli, "COMMANDS", {k: cli.COMMANDS[k] for k in ("predict", "doctor")})
    src = write_input(tmp_path / "in.csv", "csv", ["a goal", "a vote"])
    argv = ["predict", str(export_dir), "-i", str(src), "-o", str(tmp_path / "o.csv"), "--no-progress"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --output") and "pass --force" in err and err.count("\n") == 1
    assert cli.main(["doctor", "--json"]) == 0
    assert "onnxruntime" in json.loads(capsys.readouterr().out)


def _cli_importable() -> bool:
    try:
        from bertfast.cli import build_parser

        build_parser()  # imports every command module, some written by others
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(not _cli_importable(), reason="bertfast.cli cannot import every command module yet")
def test_cli_subprocess(export_dir, tmp_path):
    src = write_input(tmp_path / "in.csv", "csv", ["a goal", "a vote"])
    cmd = [sys.executable, "-m", "bertfast.cli", "predict"]
    r = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--long-text" in r.stdout and "--text-column" in r.stdout
    r = subprocess.run([*cmd, str(export_dir), "-i", str(src), "-o", str(tmp_path / "o.csv")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cmd, str(export_dir), "-i", str(src), "-o", str(tmp_path / "o.csv")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "pass --force" in r.stderr
