"""`bertfast train` as one DDP run of two CPU processes under torchrun (marker `torchrun`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# -- DDP training --------------------------------------------------------------------------


@pytest.mark.torchrun
@pytest.mark.timeout(300)
def test_train_under_torchrun_two_cpu_processes(tiny_model, tiny_csv, tmp_path):
    # `python -m torch.distributed.run` is `torchrun`, from this interpreter's environment.
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "bertfast.cli", "train", str(tiny_model), str(tiny_csv), "--out", str(out),
           "--epochs", "1", "--max-length", "32", "--batch-size", "8"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "training.json", "splits"} <= names
    summary = json.loads((out / "training.json").read_text())
    assert summary["world_size"] == 2  # one DDP run over 2 ranks, not two single-process runs
    assert sum(summary["data"]["rows"].values()) == 90
    assert {"accuracy", "macro_f1"} <= set(summary["metrics"]["test"])
    # 72 training rows / (8 per rank x 2 ranks) = 5 optimizer steps for the one epoch
    assert max(h.get("step", 0) for h in summary["log_history"]) == 5
    assert not (tmp_path / "ddp.checkpoints").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bertfast-")]
