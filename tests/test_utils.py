"""Outputs: `--force` replaces only what bertfast wrote; temp files never outlive their run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertfast.errors import BertfastError
from bertfast.utils import MARKER, atomic_dir, atomic_file, check_output_dir, is_bertfast_output


def _published(folder: Path, files: dict[str, str]) -> Path:
    with atomic_dir(folder) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)
    return folder


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".bertfast-tmp-"))


def test_published_folder_carries_the_marker_and_force_may_replace_it(tmp_path):
    out = _published(tmp_path / "out", {"a.txt": "1"})
    assert (out / MARKER).is_file() and is_bertfast_output(out)
    assert check_output_dir(out, force=True) == out
    _published(out, {"b.txt": "2"})
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "b.txt"])
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("what", ["foreign", "data"])
def test_force_refuses_folders_bertfast_did_not_write(tmp_path, what):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    inputs = (folder / "notes.txt",) if what == "data" else ()
    message = "contains the input" if what == "data" else "bertfast did not write.*notes.txt"
    with pytest.raises(BertfastError, match=message):
        check_output_dir(folder, force=True, inputs=inputs)
    assert (folder / "notes.txt").read_text() == "mine"


def test_force_refuses_a_symlink_even_to_a_bertfast_output(tmp_path):
    real = _published(tmp_path / "real", {"a.txt": "1"})
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(BertfastError, match="symbolic link"):
        check_output_dir(link, force=True)
    with pytest.raises(BertfastError, match="symbolic link"), atomic_dir(link):
        pass
    assert (real / "a.txt").read_text() == "1"


def test_force_refuses_the_working_directory_and_its_parents(tmp_path, monkeypatch):
    work = _published(tmp_path / "work", {"a.txt": "1"})
    monkeypatch.chdir(work)
    for target in (".", str(tmp_path)):
        with pytest.raises(BertfastError, match="working directory"):
            check_output_dir(target, force=True)


def test_legacy_outputs_are_recognised(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "bertfast.json").write_text(json.dumps({"format": "bertfast-export"}))
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "bertfast.json").write_text(json.dumps({"format": "something-else"}))
    assert is_bertfast_output(export) and not is_bertfast_output(fake)


def test_a_folder_another_process_created_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(BertfastError, match="created by another process"), atomic_dir(out) as tmp:
        (tmp / "mine.txt").write_text("mine")
        out.mkdir()  # the other writer finished first
        (out / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]
    assert _leftovers(tmp_path) == []


def test_atomic_file_is_exclusive_and_refuses_a_file_that_appeared(tmp_path):
    path = tmp_path / "preds.csv"
    with atomic_file(path) as tmp:
        assert tmp.exists() and tmp.name != f".{path.name}.partial-{os.getpid()}"  # not predictable
        tmp.write_text("x\n")
    assert path.read_text() == "x\n"
    other = tmp_path / "other.csv"
    with pytest.raises(BertfastError, match="created by another process"), atomic_file(other) as tmp:
        tmp.write_text("mine\n")
        other.write_text("theirs\n")
    assert other.read_text() == "theirs\n" and _leftovers(tmp_path) == []


def test_stale_temps_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".bertfast-tmp-out-{dead.pid}-abc123"
    stale.mkdir()
    (stale / "half.onnx").write_text("...")
    live = tmp_path / f".bertfast-tmp-out-{os.getppid()}-def456"  # a live process's temp stays
    live.mkdir()
    _published(tmp_path / "out", {"a.txt": "1"})
    assert not stale.exists() and live.exists()


SIGTERM_SCRIPT = """
import signal, sys, time
from pathlib import Path
from bertfast.cli import _terminated, Terminated
from bertfast.utils import atomic_dir, atomic_file
signal.signal(signal.SIGTERM, _terminated)
out = Path(sys.argv[1])
try:
    with atomic_dir(out / "export") as tmp, atomic_file(out / "preds.csv") as f:
        (tmp / "model.onnx").write_text("half")
        f.write_text("half")
        print("ready", flush=True)
        time.sleep(60)
except Terminated:
    sys.exit(143)
"""


def test_sigterm_mid_run_leaves_only_the_previous_output(tmp_path):
    prev = _published(tmp_path / "export", {"model.onnx": "good"})
    (tmp_path / "preds.csv").write_text("good\n")
    p = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 143
    assert (prev / "model.onnx").read_text() == "good" and (tmp_path / "preds.csv").read_text() == "good\n"
    assert _leftovers(tmp_path) == []


def test_force_never_removes_a_foreign_checkpoints_folder(tiny_model, tiny_csv, tmp_path):
    from bertfast.training import TrainConfig, train

    ckpt = tmp_path / "out.checkpoints"
    ckpt.mkdir()
    (ckpt / "notes.txt").write_text("mine")
    with pytest.raises(BertfastError, match="did not write.*notes.txt"):
        train(TrainConfig(model=str(tiny_model), data=str(tiny_csv), out=str(tmp_path / "out"), force=True,
                          epochs=1, max_length=32))
    assert (ckpt / "notes.txt").read_text() == "mine"


SIGTERM_PREDICT = """
import json, sys
from bertfast.cli import main
sys.exit(main(["predict", sys.argv[1], "--input", sys.argv[2], "--output", sys.argv[3], "--force",
               "--no-progress", "--chunk-size", "64", "--threads", "1"]))
"""


def test_sigterm_mid_predict_keeps_the_previous_output(tiny_export, tmp_path):
    src = tmp_path / "in.jsonl"
    with open(src, "w") as f:  # enough rows to still be running when the signal comes
        for i in range(200_000):
            f.write(json.dumps({"text": f"the match goal team number {i} and a vote"}) + "\n")
    out = tmp_path / "preds.csv"
    out.write_text("previous\n")
    p = subprocess.Popen([sys.executable, "-c", SIGTERM_PREDICT, str(tiny_export), str(src), str(out)],
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not _leftovers(tmp_path):  # wait until the run writes its temp
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=60)
    assert rc == 143, p.stderr.read()
    assert out.read_text() == "previous\n" and _leftovers(tmp_path) == []
