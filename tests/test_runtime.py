"""Classifier: order, batching, long texts, parity with PyTorch, providers, bad input, lightness."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from _export_helpers import long_text, make_export, sharpen, shuffled_lengths
from conftest import make_texts

from bertfast.errors import BertfastError, ModelError, ProviderError
from bertfast.runtime import classifier as classifier_mod
from bertfast.runtime import providers
from bertfast.runtime.classifier import Classifier
from bertfast.runtime.providers import CPU_EP, CUDA_EP, TRT_EP

MAX_LEN = 64


def _cuda_works() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def model_dir(_tiny_model_session, tmp_path_factory) -> Path:
    return sharpen(_tiny_model_session, tmp_path_factory.mktemp("sharp") / "model")


@pytest.fixture(scope="module")
def export_dir(model_dir, tmp_path_factory) -> Path:
    return make_export(model_dir, tmp_path_factory.mktemp("export") / "tiny", max_length=MAX_LEN)


@pytest.fixture(scope="module")
def clf(export_dir):
    with Classifier.load(export_dir, device="cpu") as c:
        yield c


@pytest.fixture(scope="module")
def ref(model_dir):
    """PyTorch reference: (model, tokenizers.Tokenizer) -> logits per list of token ids."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    def logits(ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0].numpy()

    def content(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False).ids

    return logits, content


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


CLS, SEP = 2, 3


# -- API shape -----------------------------------------------------------------------------


def test_predict_shapes(clf):
    one = clf.predict("the match was won by the team")
    assert set(one) == {"label", "score"} and one["label"] in clf.labels
    many = clf.predict(["a goal", "a phone", "a vote"])
    assert len(many) == 3 and all(isinstance(d, dict) for d in many)
    top = clf.predict("a vote", top_k=3)
    assert [d["score"] for d in top] == sorted((d["score"] for d in top), reverse=True)
    assert top[0] == clf.predict("a vote") | {"score": pytest.approx(top[0]["score"])}
    p = clf.predict_proba(("goal", "chip"))  # any iterable
    assert p.shape == (2, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    assert clf.predict_proba("goal").shape == (1, 3)
    assert clf.variant == "fp32" and clf.device == "cpu" and clf.providers == ["CPUExecutionProvider"]
    assert clf.labels == ["sport", "tech", "politics"] and clf.manifest.max_length == MAX_LEN


def test_empty_list_and_empty_string(clf):
    assert clf.predict([]) == []
    assert clf.predict_proba([]).shape == (0, 3)
    # An empty text is classified (the model sees [CLS] [SEP]), not rejected.
    assert clf.predict("")["label"] in clf.labels


# -- batching ------------------------------------------------------------------------------


def test_order_preserved_and_batched_equals_one_by_one(export_dir):
    texts = shuffled_lengths(60)
    # A small budget forces many batches, so sorting and the scatter back are exercised.
    with Classifier.load(export_dir, device="cpu", batch_tokens=512, max_batch_size=8) as c:
        batched = c.predict_proba(texts)
        assert c.last_stats["n_batches"] > 5
        single = np.concatenate([c.predict_proba(t) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    # Rows differ by far more than the tolerance, so a mix-up of the order would show.
    assert np.ptp(batched, axis=0).max() > 100 * 1e-5


def test_parity_with_pytorch(clf, ref):
    logits, content = ref
    texts = [t for t, _ in make_texts(24, seed=5)] + [long_text(200)]
    expected = np.stack([_softmax(logits([CLS, *content(t)[: MAX_LEN - 2], SEP])) for t in texts])
    got = clf.predict_proba(texts)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert [d["label"] for d in clf.predict(texts)] == [clf.labels[i] for i in expected.argmax(1)]


def test_encode_then_logits_and_stats(clf):
    texts = shuffled_lengths(40)
    enc = clf.encode(texts)
    assert enc.n_texts == enc.n_windows == 40
    assert 0 < enc.real_tokens <= enc.padded_tokens
    proba = _softmax(clf.logits_from_encoded(enc))
    np.testing.assert_allclose(proba, clf.predict_proba(texts), atol=1e-6)
    s = clf.last_stats
    assert {"n_texts", "n_windows", "real_tokens", "padded_tokens", "padding_ratio", "seconds"} <= set(s)
    assert s["n_texts"] == 40 and s["real_tokens"] == enc.real_tokens
    # Sorted batches waste far less than padding every text to the longest one.
    short = [t for t, _ in make_texts(200, seed=1)]
    lens = [len(w) for w in clf.batcher.windows(short)[0]]
    clf.predict_proba(short)
    assert clf.last_stats["padding_ratio"] < 0.25
    assert clf.last_stats["padded_tokens"] < 0.75 * len(lens) * max(lens)
    assert s["padding_ratio"] == pytest.approx(1 - s["real_tokens"] / s["padded_tokens"])


def test_batches_end_where_lengths_drop_once_past_the_providers_minimum(clf):
    import copy

    from bertfast.runtime.providers import PROVIDERS

    assert clf.batcher.min_batch_tokens == PROVIDERS["cpu"].min_batch_tokens == 128
    # 20 windows of 30 tokens and 20 of 10, shuffled: on the CPU the first batch holds 600
    # tokens (>= 128) when lengths fall to 10 (< 80% of 30), so it ends there: no padding.
    wins = [[5] * 30 if i % 2 else [5] * 10 for i in range(40)]
    enc = clf.batcher._batch(wins, None, len(wins))
    assert [len(idx) for idx, _ in enc.batches] == [20, 20]
    assert enc.padded_tokens == enc.real_tokens == 20 * 30 + 20 * 10
    assert sorted(np.concatenate([idx for idx, _ in enc.batches]).tolist()) == list(range(40))
    # A GPU row (None: a quarter of the budget, 2048 tokens = 69 rows of 30) keeps one batch.
    gpu = copy.copy(clf.batcher)
    gpu.batch_tokens, gpu.min_batch_tokens = 8192, 8192 // 4
    enc = gpu._batch(wins, None, len(wins))
    assert [len(idx) for idx, _ in enc.batches] == [40] and enc.padded_tokens == 40 * 30


def test_pipelined_path_matches(clf, monkeypatch):
    texts = shuffled_lengths(50)
    direct = clf.predict_proba(texts)
    monkeypatch.setattr(classifier_mod, "PIPELINE_CHUNK", 16)  # 4 chunks through the tokenizer thread
    piped = clf.predict_proba(texts)
    np.testing.assert_allclose(piped, direct, atol=1e-5)
    assert clf.last_stats["n_texts"] == 50
    chunks = [texts[:7], texts[7:30], texts[30:]]
    parts = list(clf.iter_proba(chunks))
    assert [len(p) for p in parts] == [7, 23, 20]
    np.testing.assert_allclose(np.concatenate(parts), direct, atol=1e-5)


def test_tokenizer_file_padding_is_ignored(model_dir, tmp_path):
    ex = make_export(model_dir, tmp_path / "ex", max_length=MAX_LEN)
    tj = json.loads((ex / "tokenizer.json").read_text())
    tj["padding"] = {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": None,
                     "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    (ex / "tokenizer.json").write_text(json.dumps(tj))
    with Classifier.load(ex, device="cpu") as c:
        c.predict_proba(["a goal", "a vote was held"])
        assert c.last_stats["padded_tokens"] < 20


def test_concurrent_callers(clf):
    lists = [shuffled_lengths(20, seed=s) for s in range(4)]
    expected = [clf.predict_proba(t) for t in lists]
    got: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(3):
            got[i] = clf.predict_proba(lists[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        np.testing.assert_allclose(got[i], expected[i], atol=1e-5)


# -- long texts ----------------------------------------------------------------------------


def test_short_text_same_under_all_modes(export_dir):
    texts = ["a goal for the team", "", long_text(40)]
    results = []
    for mode in ("truncate", "head-tail", "sliding-window"):
        for agg in ("mean", "max"):
            with Classifier.load(export_dir, device="cpu", long_text=mode, aggregate=agg) as c:
                results.append(c.predict_proba(texts))
                assert c.last_stats["n_windows"] == 3
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], atol=1e-6)


@pytest.mark.parametrize("agg", ["mean", "max"])
def test_sliding_window_aggregation(export_dir, ref, agg):
    logits, content = ref
    budget, stride = MAX_LEN - 2, 16
    long1, long2 = long_text(150, seed=7), long_text(300, seed=8)
    texts = ["a short one", long1, "vote", long2]
    with Classifier.load(export_dir, device="cpu", long_text="sliding-window", stride=stride, aggregate=agg) as c:
        got = c.predict_proba(texts)
        n_windows = c.last_stats["n_windows"]
    expected, total = [], 0
    for t in texts:
        ids = content(t)
        wins, s = [], 0
        while True:
            wins.append([CLS, *ids[s : s + budget], SEP])
            if s + budget >= len(ids):
                break
            s += budget - stride
        total += len(wins)
        per = np.stack([logits(w) for w in wins])
        expected.append(_softmax(per.mean(0) if agg == "mean" else per.max(0)))
    assert len(content(long1)) == 150 and total == 1 + 3 + 1 + 7
    assert n_windows == total
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-4)


def test_head_tail(export_dir, ref):
    logits, content = ref
    text = long_text(200, seed=9)
    ids = content(text)
    budget = MAX_LEN - 2
    head = budget // 4
    expected = _softmax(logits([CLS, *ids[:head], *ids[-(budget - head):], SEP]))
    with Classifier.load(export_dir, device="cpu", long_text="head-tail") as c:
        np.testing.assert_allclose(c.predict_proba(text)[0], expected, atol=1e-4)
        assert c.last_stats["real_tokens"] == MAX_LEN


def test_max_length_override(export_dir, ref):
    logits, content = ref
    text = long_text(100, seed=2)
    with Classifier.load(export_dir, device="cpu", max_length=100) as c:
        expected = _softmax(logits([CLS, *content(text)[:98], SEP]))
        np.testing.assert_allclose(c.predict_proba(text)[0], expected, atol=1e-4)


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["ok", "fine", None], "texts[2] is None"),
        (["ok", 5], "texts[1] is int"),
        (None, "texts is None"),
        (b"bytes", "decode it"),
        (42, "got int"),
        ({"a": "b"}, "texts is a dict"),
    ],
)
def test_bad_texts(clf, texts, message):
    with pytest.raises(BertfastError, match=message.replace("[", r"\[").replace("]", r"\]")):
        clf.predict(texts)


def test_bad_top_k(clf):
    for k in (0, 4, "2"):
        with pytest.raises(BertfastError, match="top_k must be an integer between 1 and 3"):
            clf.predict("x", top_k=k)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "tpu"}, "device must be one of auto, cpu, cuda, tensorrt; got 'tpu'"),
        ({"variant": "int8"}, "variant 'int8' is not in export .*available: fp32"),
        ({"long_text": "chop"}, "long_text must be one of truncate, head-tail, sliding-window"),
        ({"aggregate": "median"}, "aggregate must be one of mean, max"),
        ({"batch_tokens": 0}, "batch_tokens must be an integer >= 1"),
        ({"threads": 0}, "threads must be an integer >= 1"),
        ({"max_length": 1000}, "max_length must be an integer between 3 and the model's limit 128"),
        ({"long_text": "sliding-window", "stride": 62}, "stride must be between 0 and 61"),
    ],
)
def test_bad_load_arguments(export_dir, kwargs, message):
    with pytest.raises(BertfastError, match=message):
        Classifier.load(export_dir, **{"device": "cpu", **kwargs})


def test_broken_exports(export_dir, tmp_path):
    import shutil

    with pytest.raises(BertfastError, match="does not exist"):
        Classifier.load(tmp_path / "nope")
    bad = tmp_path / "bad"
    shutil.copytree(export_dir, bad)
    (bad / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="ONNX Runtime cannot load .*re-run `bertfast export --force`"):
        Classifier.load(bad, device="cpu")
    (bad / "bertfast.json").write_text("{ truncated")
    with pytest.raises(BertfastError, match="unreadable or corrupt"):
        Classifier.load(bad, device="cpu")
    shutil.rmtree(bad)
    shutil.copytree(export_dir, bad)
    (bad / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelError, match="tokenizer .* cannot be read"):
        Classifier.load(bad, device="cpu")


def test_closed_classifier(export_dir):
    c = Classifier.load(export_dir, device="cpu")
    c.close()
    with pytest.raises(BertfastError, match="closed"):
        c.predict("x")


# -- providers -----------------------------------------------------------------------------


@pytest.mark.skipif(_cuda_works(), reason="CUDA is available here")
def test_cuda_unavailable_is_an_error(export_dir):
    with pytest.raises(ProviderError) as e:
        Classifier.load(export_dir, device="cuda")
    msg = str(e.value)
    assert "CUDA is not usable" in msg and "CPUExecutionProvider" in msg and "likely cause" in msg
    assert "\n" not in msg


@pytest.mark.skipif(_cuda_works(), reason="CUDA is available here")
def test_auto_uses_cpu_and_says_so(export_dir, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="bertfast.runtime"):
        c = Classifier.load(export_dir, device="auto")
    assert c.device == "cpu" and c.providers == ["CPUExecutionProvider"]
    assert "using CPU" in caplog.text
    c.close()


def test_both_onnxruntime_packages_named(monkeypatch):
    monkeypatch.setattr(providers, "installed_onnxruntime", lambda: {"onnxruntime": "1.0", "onnxruntime-gpu": "1.0"})
    msg = providers.cuda_unavailable_reason()
    assert "both onnxruntime-gpu and another onnxruntime" in msg and "pip uninstall" in msg


class _GpuSession:
    """Claims to run on a GPU provider but runs the graph on a real CPU session.

    `run` is refused: a GPU session must go through IO binding.
    """

    def __init__(self, real, used: list[str]):
        self.real, self.used, self.bindings = real, used, []

    def get_providers(self):
        return list(self.used)

    def get_inputs(self):
        return self.real.get_inputs()

    def get_outputs(self):
        return self.real.get_outputs()

    def run(self, *a, **k):
        raise AssertionError("a GPU session must run through IO binding")

    def io_binding(self):
        b = _Binding()
        self.bindings.append(b)
        return b

    def run_with_iobinding(self, b):
        b.result = self.real.run([b.output], b.inputs)


class _Binding:
    def __init__(self):
        self.inputs, self.output, self.memory, self.result = {}, None, None, None

    def bind_cpu_input(self, name, arr):
        self.inputs[name] = arr

    def bind_output(self, name, device_type):
        self.output, self.memory = name, device_type

    def copy_outputs_to_cpu(self):
        return self.result


@pytest.fixture
def fake_gpu(monkeypatch):
    """onnxruntime with CUDA and TensorRT compiled in; GPU sessions run on the CPU (see _GpuSession).

    `fake_gpu.broken` holds the ORT provider names whose sessions fail to start.
    """
    import onnxruntime as ort

    real_session = ort.InferenceSession
    state = type("State", (), {"broken": set(), "sessions": [], "asked": []})()

    def session(path, sess_options=None, providers=()):
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        state.asked.append(names)
        if names[0] in state.broken:
            raise RuntimeError(f"{names[0]}: cannot load its libraries")
        real = real_session(path, sess_options=sess_options, providers=[CPU_EP])
        if names[0] == CPU_EP:
            return real
        state.sessions.append(_GpuSession(real, names))
        return state.sessions[-1]

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TRT_EP, CUDA_EP, CPU_EP])
    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(ort, "preload_dlls", lambda: None, raising=False)
    return state


def _with_variants(export_dir: Path, dst: Path, **variants) -> Path:
    """A copy of `export_dir` whose manifest has extra variants (name=spec) and defaults."""
    import shutil

    shutil.copytree(export_dir, dst)
    raw = json.loads((dst / "bertfast.json").read_text())
    defaults = variants.pop("default", {})
    raw["variants"].update(variants)
    raw["default"].update(defaults)
    (dst / "bertfast.json").write_text(json.dumps(raw))
    return dst


_FP32_EVERYWHERE = {"file": "model.onnx", "precision": "fp32", "devices": ["cpu", "cuda", "tensorrt"]}


@pytest.mark.parametrize(("device", "ep"), [("cuda", CUDA_EP), ("tensorrt", TRT_EP)])
def test_gpu_device_runs_through_io_binding(export_dir, clf, fake_gpu, tmp_path, device, ep):
    ex = _with_variants(export_dir, tmp_path / "ex", fp32=_FP32_EVERYWHERE)
    texts = shuffled_lengths(30)
    with Classifier.load(ex, device=device, streams=4, threads=4) as g:
        assert g.device == device and g.providers[0] == ep and g.options.device == device
        assert g.streams == 1 and g.options.streams == 1  # one GPU stream, whatever was asked
        np.testing.assert_allclose(g.predict_proba(texts), clf.predict_proba(texts), atol=1e-6)
        (sess,) = fake_gpu.sessions
        assert sess.bindings and all(b.memory == "cuda" and b.output == "logits" for b in sess.bindings)
    if device == "tensorrt":
        assert fake_gpu.asked == [[TRT_EP, CUDA_EP, CPU_EP]] and (ex / ".trt-cache").is_dir()


def test_gpu_device_asked_by_name_never_falls_back(export_dir, fake_gpu, tmp_path):
    ex = _with_variants(export_dir, tmp_path / "ex", fp32=_FP32_EVERYWHERE)
    fake_gpu.broken = {TRT_EP}
    with pytest.raises(ProviderError, match="^TensorRT is not usable"):
        Classifier.load(ex, device="tensorrt")
    assert fake_gpu.asked == [[TRT_EP, CUDA_EP, CPU_EP]]


def test_auto_tries_gpu_providers_in_table_order(export_dir, fake_gpu, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="bertfast.runtime"):
        with Classifier.load(export_dir, device="auto") as c:
            assert c.device == "cuda" and c.providers[0] == CUDA_EP
    assert "device auto: using CUDA" in caplog.text
    fake_gpu.broken = {CUDA_EP}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bertfast.runtime"):
        with Classifier.load(export_dir, device="auto") as c:
            assert c.device == "cpu" and c.providers == [CPU_EP] and c.options.device == "cpu"
    assert "CUDA not usable, trying the next provider" in caplog.text and "using CPU" in caplog.text
    # TensorRT is never tried by "auto" (its engine build takes minutes).
    assert all(names[0] != TRT_EP for names in fake_gpu.asked)


def test_auto_skips_a_provider_without_a_variant(export_dir, fake_gpu, tmp_path, caplog):
    import logging
    import shutil

    ex = tmp_path / "ex"
    shutil.copytree(export_dir, ex)
    raw = json.loads((ex / "bertfast.json").read_text())
    raw["variants"]["fp32"]["devices"] = ["cpu"]
    raw["default"] = {"cpu": "fp32"}
    (ex / "bertfast.json").write_text(json.dumps(raw))
    with caplog.at_level(logging.INFO, logger="bertfast.runtime"):
        with Classifier.load(ex, device="auto") as c:
            assert c.device == "cpu"
    assert "no variant for CUDA" in caplog.text and fake_gpu.asked == [[CPU_EP]]


def _failed(reason: str) -> dict:
    return {"status": "failed", "precision": "fp16", "devices": ["cuda"], "reason": reason}


def _manifest_with_failed(export_dir: Path, monkeypatch, **variants):
    """The export's manifest with extra (failed, fileless) variants, as `Classifier.load` reads it."""
    from bertfast.manifest import load_manifest

    m = load_manifest(export_dir)
    defaults = variants.pop("default", {})
    m.variants = {**m.variants, **variants}
    m.default = {**m.default, **defaults}
    monkeypatch.setattr(classifier_mod, "load_manifest", lambda path: m)
    return m


def test_failed_variant_asked_by_name_is_an_error_with_its_reason(export_dir, monkeypatch, fake_gpu):
    _manifest_with_failed(export_dir, monkeypatch, fp16=_failed("onnxconverter: Cast node unsupported"))
    for device in ("cpu", "cuda", "auto"):
        with pytest.raises(BertfastError) as e:
            Classifier.load(export_dir, device=device, variant="fp16")
        msg = str(e.value)
        assert "variant 'fp16'" in msg and "failed to build (onnxconverter: Cast node unsupported)" in msg
        assert msg.endswith(": fp32.")  # the working variants to choose from
    assert fake_gpu.asked == []  # refused before any session was built


def test_failed_default_is_never_loaded(export_dir, monkeypatch, fake_gpu):
    _manifest_with_failed(export_dir, monkeypatch, fp16=_failed("out of memory"), default={"cuda": "fp16"})
    with Classifier.load(export_dir, device="cuda") as c:
        assert c.variant == "fp32"  # the working variant made for CUDA
    m = _manifest_with_failed(export_dir, monkeypatch, fp16=_failed("out of memory"), default={"cuda": "fp16"})
    m.variants["fp32"] = {**m.variants["fp32"], "devices": ["cpu"]}
    fake_gpu.asked.clear()
    with pytest.raises(BertfastError, match="has no variant for device 'cuda'"):
        Classifier.load(export_dir, device="cuda")
    with Classifier.load(export_dir, device="auto") as c:  # auto moves on to the CPU
        assert c.device == "cpu" and c.variant == "fp32"
    assert fake_gpu.asked == [[CPU_EP]]  # no CUDA session was even tried


def test_threads_default_and_explicit(export_dir):
    from bertfast.utils import usable_cpus

    with Classifier.load(export_dir, device="cpu") as c:
        assert c.threads == usable_cpus()
    with Classifier.load(export_dir, device="cpu", threads=1) as c:
        assert c.threads == 1
        assert c.predict("goal")["label"] in c.labels


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_works(), reason="needs CUDAExecutionProvider")
def test_cuda_matches_cpu(export_dir, clf):
    texts = shuffled_lengths(30)
    with Classifier.load(export_dir, device="cuda") as g:
        assert g.providers[0] == "CUDAExecutionProvider"
        np.testing.assert_allclose(g.predict_proba(texts), clf.predict_proba(texts), atol=1e-3)


# -- lightness -----------------------------------------------------------------------------


def test_inference_imports_neither_torch_nor_transformers(export_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("text\na goal\na vote\n")
    code = (
        "import sys, bertfast\n"
        f"clf = bertfast.Classifier.load({str(export_dir)!r}, device='cpu')\n"
        "clf.predict(['a goal', 'a vote']); clf.predict('x')\n"
        f"bertfast.predict(bertfast.PredictConfig({str(export_dir)!r}, {str(src)!r}, {str(tmp_path / 'o.jsonl')!r}))\n"
        "import bertfast.runtime.doctor; bertfast.runtime.doctor.diagnose()\n"
        "heavy = [m for m in ('torch', 'transformers', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# -- the real exporter's output ------------------------------------------------------------


def test_real_export_every_cpu_variant(tiny_export):
    """Every CPU variant the real `bertfast export` writes loads and agrees with fp32 on labels."""
    from bertfast.manifest import load_manifest

    m = load_manifest(tiny_export)
    texts = shuffled_lengths(30)
    results = {}
    for name, v in m.variants.items():
        if "cpu" not in v.get("devices", []):
            continue
        with Classifier.load(tiny_export, device="cpu", variant=name) as c:
            assert c.variant == name
            results[name] = c.predict_proba(texts)
            np.testing.assert_allclose(results[name].sum(1), 1, rtol=1e-5)
    with Classifier.load(tiny_export, device="cpu") as c:
        assert c.variant == m.default["cpu"]
    assert {"fp32", "int8-dynamic", "int8-dynamic-pc", "int8-static"} <= set(results)
    base = results["fp32"]
    for name, p in results.items():
        assert (p.argmax(1) == base.argmax(1)).mean() >= 0.8, name


def test_streams_give_the_same_results_in_order(tiny_export):
    """Concurrent batch streams must not change a single probability or the caller's order."""
    from conftest import make_texts

    from bertfast.runtime.classifier import Classifier

    texts = [t for t, _ in make_texts(300, seed=11, max_words=60)]
    with Classifier.load(tiny_export, device="cpu", threads=2, batch_tokens=256) as one:
        ref = one.predict_proba(texts)
        assert one.last_stats["n_batches"] > 4
    with Classifier.load(tiny_export, device="cpu", threads=2, streams=2, batch_tokens=256) as two:
        assert two.streams == 2
        np.testing.assert_array_equal(two.predict_proba(texts), ref)


def test_truncate_head_cut_gives_identical_ids(tiny_export):
    """Cutting long texts before tokenizing must not change a single token id."""
    from tokenizers import Tokenizer

    from bertfast.runtime.classifier import Classifier

    words = "match goal team win league player coach phone software chip".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=n)) for n in (5, 60, 63, 64, 65, 300, 2000)]
    texts += ["x" * 3000 + " goal", "goal " + "https://example.com/" + "a" * 2000 + " team " * 10]
    tok = Tokenizer.from_file(str(tiny_export / "tokenizer.json"))
    tok.no_padding()
    with Classifier.load(tiny_export, device="cpu") as clf:
        L = clf.batcher.max_length
        tok.enable_truncation(L)
        got = clf.batcher.windows(texts)[0]
        assert got == [e.ids for e in tok.encode_batch(texts)]
        assert [clf.batcher.windows([t])[0][0] for t in texts] == got
