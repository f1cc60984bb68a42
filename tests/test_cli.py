"""The `bertfast` command: --help documents every flag, bad input exits non-zero in one line,
and train -> export -> predict works end to end from the shell."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import make_texts, write_csv

from bertfast import cli


def _bertfast(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bertfast.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"}, timeout=600)


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_help_documents_every_flag(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        for flag in action.option_strings:
            assert flag in out, f"{command}: {flag} missing from --help"
        assert action.help, f"{command}: {action.dest} has no help text"


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for c in ("train", "export", "predict", "bench", "doctor", "quickstart"):
        assert c in out


@pytest.mark.parametrize("argv, message", [
    (["train", "{tiny}", "missing.csv", "--out", "x"], "missing.csv: no such file"),
    (["train", "./nope-model", "bbc-news", "--out", "x"], "model folder ./nope-model does not exist"),
    (["train", "m", "d", "--lr", "3"], "--lr must be between 0 and 1"),
    (["export", "nope-dir"], "model folder nope-dir does not exist"),
    (["predict", "nope-export", "--input", "a.csv", "--output", "b.csv"], "--input a.csv does not exist"),
])
def test_bad_input_is_one_line_no_traceback(argv, message, tmp_path, _tiny_model_session):
    r = _bertfast(*[a.replace("{tiny}", str(_tiny_model_session)) for a in argv], cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert message in r.stderr
    assert r.stderr.strip().startswith("error: ") and r.stderr.strip().count("\nerror") == 0


def test_train_export_predict_from_the_shell(_tiny_model_session, tmp_path):
    data = write_csv(tmp_path / "data.csv", make_texts(90, seed=5))
    r = _bertfast("train", _tiny_model_session, data, "--out", tmp_path / "model", "--epochs", 1, "--max-length", 32, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _bertfast("export", tmp_path / "model", "--out", tmp_path / "export", "--variants", "fp32,int8-dynamic",
                  "--accept-weak-reference", cwd=tmp_path)  # one epoch on 90 rows: at chance
    assert r.returncode == 0, r.stderr[-2000:]
    assert "int8-dynamic" in r.stdout and "default" in r.stdout  # the validation table
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, (t, _) in enumerate(make_texts(40, seed=9))))
    r = _bertfast("predict", tmp_path / "export", "--input", inp, "--output", tmp_path / "out.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0].split(",")[:2] == ["id", "text"] and "label" in lines[0] and "score" in lines[0]
    assert [int(x.split(",")[0]) for x in lines[1:]] == list(range(40))  # order preserved
    # the same export again without --force is refused, and the export is untouched
    before = (tmp_path / "export" / "bertfast.json").read_text()
    r = _bertfast("export", tmp_path / "model", "--out", tmp_path / "export", cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr
    assert (tmp_path / "export" / "bertfast.json").read_text() == before
