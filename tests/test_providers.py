"""The execution-provider table and `create_session`: what ONNX Runtime is asked for, the
no-silent-fallback check, the `auto` order; real CUDA/TensorRT runs when a GPU is here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from bertfast.errors import ModelError, ProviderError
from bertfast.runtime import providers
from bertfast.runtime.options import RuntimeOptions
from bertfast.runtime.providers import CPU_EP, CUDA_EP, DEVICES, PROVIDERS, TRT_EP, Provider

GPU_EPS = {"cuda": CUDA_EP, "tensorrt": TRT_EP}


def _compiled_in(ep: str) -> bool:
    return ep in onnxruntime.get_available_providers()


# -- the table -----------------------------------------------------------------------------


def test_table_rows():
    assert list(PROVIDERS) == ["cpu", "cuda", "tensorrt"]
    cpu, cuda, trt = PROVIDERS["cpu"], PROVIDERS["cuda"], PROVIDERS["tensorrt"]
    assert [p.ort_name for p in (cpu, cuda, trt)] == [CPU_EP, CUDA_EP, TRT_EP]
    assert (cpu.gpu, cuda.gpu, trt.gpu) == (False, True, True)
    assert (cpu.io_binding, cuda.io_binding, trt.io_binding) == (False, True, True)
    assert (cpu.memory, cuda.memory, trt.memory) == ("cpu", "cuda", "cuda")
    assert "int8" in cpu.precisions and "int8" not in cuda.precisions and "fp16" in trt.precisions
    # TensorRT hands the ops it rejects to CUDA, then the CPU; CUDA to the CPU.
    assert (cpu.chain, cuda.chain, trt.chain) == ((), (CPU_EP,), (CUDA_EP, CPU_EP))
    # TensorRT's first engine build takes minutes: "auto" never picks it.
    assert (cpu.auto, cuda.auto, trt.auto) == (True, True, False)
    assert cuda.options() == {"device_id": 0} and cpu.options("/x") == {}
    assert trt.options() == {"device_id": 0, "trt_fp16_enable": False}
    assert trt.options("/c") == {"device_id": 0, "trt_fp16_enable": False,
                                 "trt_engine_cache_enable": True, "trt_engine_cache_path": "/c"}


def test_devices_derive_from_the_table():
    assert DEVICES == ("auto", *PROVIDERS)
    for name, row in PROVIDERS.items():
        assert providers.provider(name) is row
        assert RuntimeOptions(device=name).device == name
    with pytest.raises(ProviderError, match="is a policy"):
        providers.provider("auto")
    with pytest.raises(ProviderError, match="device must be one of auto, cpu, cuda, tensorrt; got 'npu'"):
        providers.provider("npu")


# -- auto_order ----------------------------------------------------------------------------


def test_auto_order_gpu_first_and_only_compiled_in(monkeypatch):
    monkeypatch.setattr(providers, "available_providers", lambda: [TRT_EP, CUDA_EP, CPU_EP])
    assert [p.name for p in providers.auto_order()] == ["cuda", "cpu"]  # tensorrt: not an auto row
    monkeypatch.setattr(providers, "available_providers", lambda: [CPU_EP])
    assert [p.name for p in providers.auto_order()] == ["cpu"]


def test_auto_order_sorts_gpu_rows_before_the_cpu(monkeypatch):
    # Table order puts the CPU first; auto still tries every compiled-in GPU row before it.
    npu = Provider("npu", "NpuExecutionProvider", "NPU", gpu=True, io_binding=True, precisions=("fp16",), auto=True)
    table = {"cpu": PROVIDERS["cpu"], "npu": npu, "cuda": PROVIDERS["cuda"]}
    monkeypatch.setattr(providers, "PROVIDERS", table)
    monkeypatch.setattr(providers, "available_providers", lambda: ["NpuExecutionProvider", CUDA_EP, CPU_EP])
    assert [p.name for p in providers.auto_order()] == ["npu", "cuda", "cpu"]
    monkeypatch.setattr(providers, "available_providers", lambda: [CUDA_EP, CPU_EP])
    assert [p.name for p in providers.auto_order()] == ["cuda", "cpu"]


# -- create_session with a mocked onnxruntime ----------------------------------------------


class _FakeSession:
    """Records what ONNX Runtime was asked for; reports the providers it was told to use."""

    calls: list[dict] = []
    used: list[str] | None = None  # None: the providers asked for, in order

    def __init__(self, path, sess_options=None, providers=()):
        _FakeSession.calls.append({"path": path, "sess_options": sess_options, "providers": list(providers)})
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        self._used = names if _FakeSession.used is None else _FakeSession.used

    def get_providers(self):
        return list(self._used)


@pytest.fixture
def fake_ort(monkeypatch):
    """onnxruntime with every provider compiled in and a session class that only records."""
    _FakeSession.calls, _FakeSession.used = [], None
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [TRT_EP, CUDA_EP, CPU_EP])
    monkeypatch.setattr(onnxruntime, "InferenceSession", _FakeSession)
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda: None, raising=False)
    monkeypatch.setattr(providers, "installed_onnxruntime", lambda: {"onnxruntime-gpu": "1.0"})
    return _FakeSession


def test_cuda_session_asks_for_cuda_then_cpu(fake_ort, tmp_path):
    sess = providers.create_session(tmp_path / "m.onnx", "cuda", threads=3, allow_spinning=False)
    (call,) = fake_ort.calls
    assert call["providers"] == [(CUDA_EP, {"device_id": 0}), CPU_EP]
    assert call["path"] == str(tmp_path / "m.onnx")
    assert call["sess_options"].intra_op_num_threads == 3
    assert call["sess_options"].get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert sess.get_providers()[0] == CUDA_EP


def test_tensorrt_session_gets_an_engine_cache(fake_ort, tmp_path):
    providers.create_session(tmp_path / "m.onnx", "tensorrt", threads=1)
    (call,) = fake_ort.calls
    (ep, opts), *chain = call["providers"]
    assert ep == TRT_EP and chain == [CUDA_EP, CPU_EP]
    assert opts["trt_engine_cache_enable"] is True
    assert opts["trt_engine_cache_path"] == str(tmp_path / ".trt-cache")
    assert (tmp_path / ".trt-cache").is_dir()


def test_tensorrt_read_only_folder_runs_without_cache(fake_ort, tmp_path, monkeypatch, caplog):
    def refuse(self, *a, **k):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(Path, "mkdir", refuse)
    providers.create_session(tmp_path / "m.onnx", "tensorrt", threads=1)
    (ep, opts), *_ = fake_ort.calls[0]["providers"]
    assert "trt_engine_cache_path" not in opts and "engines will not be cached" in caplog.text


def test_cpu_session_asks_for_the_cpu_only(fake_ort, tmp_path):
    providers.create_session(tmp_path / "m.onnx", "cpu", threads=2)
    assert fake_ort.calls[0]["providers"] == [(CPU_EP, {})]
    assert not (tmp_path / ".trt-cache").exists()


@pytest.mark.parametrize(("device", "title"), [("cuda", "CUDA"), ("tensorrt", "TensorRT")])
def test_fallback_to_cpu_is_an_error_naming_the_provider(fake_ort, tmp_path, device, title):
    fake_ort.used = [CPU_EP]  # what ONNX Runtime does when the provider's libraries do not load
    with pytest.raises(ProviderError) as e:
        providers.create_session(tmp_path / "m.onnx", device, threads=1)
    msg = str(e.value)
    assert msg.startswith(f"{title} is not usable (the session fell back to {CPU_EP})")
    assert f"the {title} provider is built in but could not start" in msg and "\n" not in msg


def test_tensorrt_falling_back_to_cuda_is_an_error_too(fake_ort, tmp_path):
    fake_ort.used = [CUDA_EP, CPU_EP]
    with pytest.raises(ProviderError, match="^TensorRT is not usable .*fell back to CUDAExecutionProvider"):
        providers.create_session(tmp_path / "m.onnx", "tensorrt", threads=1)


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_provider_not_compiled_in(fake_ort, monkeypatch, tmp_path, device):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU_EP])
    monkeypatch.setattr(providers, "installed_onnxruntime", lambda: {"onnxruntime": "1.0"})
    with pytest.raises(ProviderError, match=f"{GPU_EPS[device]} is not compiled in.*CPU-only onnxruntime"):
        providers.create_session(tmp_path / "m.onnx", device, threads=1)
    assert fake_ort.calls == []  # never tried: no silent CPU session


def test_session_that_cannot_start(fake_ort, monkeypatch, tmp_path):
    def broken(*a, **k):
        raise RuntimeError("libnvinfer.so.10: cannot open shared object file\nmore detail")

    monkeypatch.setattr(onnxruntime, "InferenceSession", broken)
    with pytest.raises(ProviderError, match=r"^TensorRT is not usable \(libnvinfer.so.10: cannot open"):
        providers.create_session(tmp_path / "m.onnx", "tensorrt", threads=1)
    with pytest.raises(ModelError, match="ONNX Runtime cannot load .*bertfast export --force"):
        providers.create_session(tmp_path / "m.onnx", "cpu", threads=1)


# -- real GPU runs -------------------------------------------------------------------------


def _tiny_graph(path: Path) -> Path:
    """logits = x @ W + b, a graph every provider can run (TensorRT included)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.gpu
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_real_gpu_session(device, tmp_path):
    if not _compiled_in(GPU_EPS[device]):
        pytest.skip(f"needs {GPU_EPS[device]}")
    model = _tiny_graph(tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    cpu = providers.create_session(model, "cpu", threads=1)
    gpu = providers.create_session(model, device, threads=1)
    assert gpu.get_providers()[0] == GPU_EPS[device]
    np.testing.assert_allclose(gpu.run(["logits"], {"x": x})[0], cpu.run(["logits"], {"x": x})[0], atol=1e-3)
    if device == "tensorrt":
        assert any((tmp_path / ".trt-cache").iterdir())  # the built engine is cached next to the model
