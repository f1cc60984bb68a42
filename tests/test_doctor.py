"""`bertfast doctor`: the facts are collected, warnings fire on known traps, output is valid."""

from __future__ import annotations

import argparse
import json

import pytest

from bertfast import hardware
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
    assert set(d["cpu"]["flags"]) <= set(hardware.INTERESTING_FLAGS)
    assert "OMP_NUM_THREADS" in d["threads_env"] and "onnxruntime" in d["versions"]
    json.dumps(d)  # serializable


def test_json_and_text_output(capsys):
    out = json.loads(_run(["--json"], capsys))
    assert {"onnxruntime", "cuda", "cpu", "threads_env", "versions", "warnings"} <= set(out)
    text = _run([], capsys)
    for section in ("onnxruntime", "providers:", "devices:", "CUDA", "CPU", "features:", "int8:",
                    "thread environment", "versions"):
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


def test_devices_come_from_the_provider_table(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    d = doctor.diagnose()
    assert list(d["providers"]) == list(providers.PROVIDERS)
    assert all(d["providers"][n]["compiled_in"] for n in ("cpu", "cuda", "tensorrt"))
    assert d["providers"]["tensorrt"]["ort_name"] == "TensorrtExecutionProvider" and d["providers"]["tensorrt"]["gpu"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    d = doctor.diagnose()
    assert {n: v["compiled_in"] for n, v in d["providers"].items()} == {"cpu": True, "cuda": False, "tensorrt": False}
    assert "cuda (not compiled in)" in doctor.format_report(d)


@pytest.mark.parametrize(
    ("flags", "arch", "preset", "warns"),
    [
        (["avx2", "fma", "avx512f", "avx512_vnni", "sse4_2"], "x86_64", "avx512_vnni", False),
        (["avx2", "fma", "sse4_2"], "x86_64", "avx2", True),
        (["asimd", "asimddp"], "aarch64", "arm64", False),
    ],
)
def test_cpu_facts_are_read_through_hardware(monkeypatch, flags, arch, preset, warns):
    """doctor reports what `bertfast.hardware` reads (no parsing of its own) and its int8 preset."""
    monkeypatch.setattr(hardware, "cpu_info", lambda: {"brand": "Test CPU 9000", "arch": arch, "flags": flags})
    d = doctor.diagnose()
    assert d["cpu"]["model"] == "Test CPU 9000" and d["cpu"]["arch"] == arch
    assert d["cpu"]["flags"] == [f for f in hardware.INTERESTING_FLAGS if f in flags]  # sse4_2 is not reported
    assert d["cpu"]["int8_preset"] == preset
    assert any("no VNNI" in w for w in d["warnings"]) is warns
    assert f"int8:       {preset}" in doctor.format_report(d)
