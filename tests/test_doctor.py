"""`bertfast doctor`: the facts are collected, warnings fire on known traps, output is valid."""

from __future__ import annotations

import argparse
import json

from bertfast.runtime import doctor, providers


def _run(argv: list[str], capsys) -> str:
    p = argparse.ArgumentParser()
    doctor.add_arguments(p)
    assert doctor.main(p.parse_args(argv)) == 0
    return capsys.readouterr().out


def test_diagnose_has_the_facts():
    import onnxruntime

    from bertfast.utils import usable_cpus

    d = doctor.diagnose()
    assert d["onnxruntime"]["packages"].get("onnxruntime") or d["onnxruntime"]["packages"].get("onnxruntime-gpu")
    assert d["onnxruntime"]["providers"] == onnxruntime.get_available_providers()
    assert set(d["cuda"]["libraries"]) == {"cudart", "cublas", "cudnn"}
    assert d["cpu"]["usable_cpus"] == usable_cpus() and d["cpu"]["host_cores"] >= 1
    assert set(d["cpu"]["flags"]) <= set(doctor.CPU_FLAGS)
    assert "OMP_NUM_THREADS" in d["threads_env"] and "onnxruntime" in d["versions"]
    json.dumps(d)  # serializable


def test_json_and_text_output(capsys):
    out = json.loads(_run(["--json"], capsys))
    assert {"onnxruntime", "cuda", "cpu", "threads_env", "versions", "warnings"} <= set(out)
    text = _run([], capsys)
    for section in ("onnxruntime", "providers:", "CUDA", "CPU", "features:", "thread environment", "versions"):
        assert section in text


def test_warns_loudly_about_two_onnxruntime_builds(monkeypatch, capsys):
    monkeypatch.setattr(providers, "installed_onnxruntime", lambda: {"onnxruntime": "1.20", "onnxruntime-gpu": "1.20"})
    d = doctor.diagnose()
    assert any("SEVERAL onnxruntime builds" in w and "pip uninstall -y onnxruntime onnxruntime-gpu" in w for w in d["warnings"])
    assert "WARNINGS" in doctor.format_report(d)


def test_warns_on_oversubscribing_env(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "999")
    assert any("OMP_NUM_THREADS=999 exceeds" in w for w in doctor.diagnose()["warnings"])


def test_missing_cuda_libraries_warn_when_provider_present(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(doctor, "_cuda_libraries", lambda: {"cudart": None, "cublas": None, "cudnn": None})
    assert any("could not be loaded" in w for w in doctor.diagnose()["warnings"])
