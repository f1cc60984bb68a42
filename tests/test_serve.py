"""`bertfast serve`: TEI/HF routes, bad input, cross-request batching, backpressure, shutdown, clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import make_texts

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from bertfast.errors import BertfastError  # noqa: E402
from bertfast.runtime.classifier import Classifier  # noqa: E402
from bertfast.serve import ServeConfig, build_app  # noqa: E402
from bertfast.serve.batcher import DynamicBatcher, ShuttingDown  # noqa: E402
from bertfast.serve.model import ServedModel  # noqa: E402

TEXTS = [t for t, _ in make_texts(12, seed=3)]


@pytest.fixture(scope="module")
def clf(tiny_export):
    with Classifier.load(tiny_export, device="cpu", threads=1) as c:
        yield c


def _cfg(export, **kw) -> ServeConfig:
    base = dict(max_inputs=8, max_queue=64, max_chars=1000, max_body_mb=12, max_wait_ms=1.0)
    return ServeConfig(export, **{**base, **kw})


@pytest.fixture(scope="module")
def client(tiny_export, clf):
    with TestClient(build_app(_cfg(tiny_export), clf)) as c:
        yield c


class Gated(ServedModel):
    """The Classifier, but every model call waits for `gate` (and can be told to fail)."""

    def __init__(self, clf):
        self.clf, self.gate, self.entered, self.fail = clf, threading.Event(), threading.Event(), False
        self.labels, self.task, self.pair, self.activation = clf.labels, clf.task, clf.pair, clf.activation
        self.thresholds, self.options, self.manifest, self.providers = clf.thresholds, clf.options, clf.manifest, clf.providers
        self.positive, self.rerank_refusal = clf.positive, clf.rerank_refusal

    def encode(self, texts):
        return self.clf.encode(texts)

    def logits_from_encoded(self, enc):
        self.entered.set()
        self.gate.wait(20)
        if self.fail:
            raise RuntimeError("boom")
        return self.clf.logits_from_encoded(enc)

    def close(self):
        pass  # the wrapped Classifier is the fixture's


# -- routes -----------------------------------------------------------------------------


def test_predict_matches_classifier(client, clf):
    r = client.post("/predict", json={"inputs": TEXTS[0]})
    assert r.status_code == 200, r.text
    out = r.json()  # TEI: one input -> every label, best first
    want = clf.predict(TEXTS[0], top_k=3)
    assert [p["label"] for p in out] == [p["label"] for p in want]
    np.testing.assert_allclose([p["score"] for p in out], [p["score"] for p in want], rtol=1e-5)
    r = client.post("/predict", json={"inputs": [[t] for t in TEXTS[:5]], "truncate": True})
    batch = r.json()
    assert len(batch) == 5 and all(len(b) == 3 for b in batch)
    assert [b[0]["label"] for b in batch] == [p["label"] for p in clf.predict(TEXTS[:5])]
    assert client.post("/predict", json={"inputs": [TEXTS[1]]}).json()[0]["label"] == clf.predict(TEXTS[1])["label"]


def test_raw_scores_are_logits(client, clf):
    out = client.post("/predict", json={"inputs": TEXTS[2], "raw_scores": True}).json()
    logits = clf.logits_from_encoded(clf.encode([TEXTS[2]]))[0]
    got = {p["label"]: p["score"] for p in out}
    np.testing.assert_allclose([got[lab] for lab in clf.labels], logits, rtol=1e-5, atol=1e-6)


def test_hf_root_route_and_parameters(client, clf):
    out = client.post("/", json={"inputs": TEXTS[3], "parameters": {"top_k": 2}}).json()
    assert len(out) == 1 and len(out[0]) == 2 and out[0][0]["label"] == clf.predict(TEXTS[3])["label"]
    sig = client.post("/", json={"inputs": TEXTS[3], "parameters": {"function_to_apply": "sigmoid"}}).json()[0]
    assert all(0 < p["score"] < 1 for p in sig) and abs(sum(p["score"] for p in sig) - 1) > 1e-3


def test_classify_native(client, clf):
    r = client.post("/classify", json={"texts": TEXTS[:4], "top_k": 2, "all_scores": True}).json()
    preds = r["predictions"]
    assert [p["label"] for p in preds] == [p["label"] for p in clf.predict(TEXTS[:4])]
    assert len(preds[0]["top_k"]) == 2 and set(preds[0]["scores"]) == set(clf.labels)
    assert r["variant"] == clf.variant


def test_rerank_is_refused_on_a_classifier(client):
    r = client.post("/rerank", json={"query": "q", "texts": ["a", "b"]})
    assert r.status_code == 424 and "not a re-ranker" in r.json()["error"]
    r = client.post("/rerank", json={"query": "q"})
    assert r.status_code == 422 and "texts" in r.json()["error"]


def test_health_info_metrics(client, clf):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["model_type"]["classifier"]["id2label"] == {str(i): lab for i, lab in enumerate(clf.labels)}
    assert info["bertfast"]["labels"] == list(clf.labels) and info["bertfast"]["variant"] == clf.variant
    assert (info["bertfast"]["task"], info["bertfast"]["pair"], info["bertfast"]["thresholds"]) == ("single_label", False, None)
    assert info["max_client_batch_size"] == 8 and "max_wait_ms" in info["bertfast"]["batching"]
    client.post("/predict", json={"inputs": "x"})
    text = client.get("/metrics").text
    for name in ("bertfast_requests_total", "bertfast_queue_texts", "bertfast_batch_texts_bucket",
                 "bertfast_batch_tokens_bucket", "bertfast_request_seconds_bucket"):
        assert name in text
    assert 'route="/predict",status="200"' in text
    assert 'bertfast_request_seconds_count{route="/rerank"}' in text
    assert client.get("/nope").json()["error_type"] == "not_found"


BAD = [  # (route, body, status, words that must be in the error)
    ("/predict", b"{not json", 422, ["JSON"]),
    ("/predict", b"", 422, ["empty"]),
    ("/predict", [1, 2], 422, ["object"]),
    ("/predict", {}, 422, ["inputs"]),
    ("/predict", {"inputs": 5}, 422, ["inputs"]),
    ("/predict", {"inputs": []}, 422, ["inputs", "empty"]),
    ("/predict", {"inputs": [["a"]] * 9}, 413, ["inputs", "--max-inputs"]),
    ("/predict", {"inputs": "x" * 10_000_000}, 413, ["inputs[0]", "--max-chars"]),
    ("/predict", {"inputs": [["a"], ["b", "c", "d"]]}, 422, ["inputs[1]", "3 elements"]),
    ("/predict", {"inputs": ["a", "b"]}, 422, ["pair", "single texts"]),
    ("/predict", {"inputs": [["a", "b"]]}, 422, ["inputs[0]", "pair"]),
    ("/predict", {"inputs": ["a", "b", "c"]}, 422, ["flat list"]),
    ("/predict", {"inputs": [["a"], "b"]}, 422, ["inputs[1]"]),
    ("/predict", {"inputs": [[1]]}, 422, ["inputs[0][0]", "string"]),
    ("/predict", {"inputs": "a", "foo": 1}, 422, ["foo"]),
    ("/predict", {"inputs": "a", "raw_scores": "yes"}, 422, ["raw_scores"]),
    ("/predict", {"inputs": "a", "parameters": {"top_k": 0}}, 422, ["parameters.top_k"]),
    ("/predict", {"inputs": "a", "parameters": {"k": 1}}, 422, ["parameters.k"]),
    ("/classify", {"texts": []}, 422, ["texts"]),
    ("/classify", {"texts": ["a"], "top_k": 9}, 422, ["top_k"]),
    ("/classify", {"texts": ["a", None]}, 422, ["texts[1]"]),
    ("/predict", b'{"inputs": "' + b"a" * (13 << 20) + b'"}', 413, ["body", "--max-body-mb"]),
]


@pytest.mark.parametrize("route, body, status, words", BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_input_never_reaches_the_model(client, route, body, status, words):
    calls = client.app.state.metrics.batches
    kw = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = client.post(route, headers={"content-type": "application/json"}, **kw)
    assert r.status_code == status, r.text[:300]
    err = r.json()
    assert set(err) == {"error", "error_type"}
    for w in words:
        assert w in err["error"], err
    assert client.app.state.metrics.batches == calls  # the model never ran
    assert client.get("/health").status_code == 200


# -- batching, backpressure, errors -------------------------------------------------------


async def _until(cond, timeout=10.0):
    t = time.monotonic()
    while not cond():
        assert time.monotonic() - t < timeout, "condition not reached"
        await asyncio.sleep(0.005)


def test_concurrent_requests_are_batched_in_order_and_queue_full_is_429(tiny_export, clf):
    gated = Gated(clf)
    app = build_app(_cfg(tiny_export, max_queue=8, max_inputs=4, max_wait_ms=0), gated)
    batcher, metrics = app.state.batcher, app.state.metrics

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            first = asyncio.create_task(c.post("/predict", json={"inputs": TEXTS[0]}))
            await asyncio.to_thread(gated.entered.wait, 10)  # the model is busy with `first`
            singles = [asyncio.create_task(c.post("/predict", json={"inputs": t})) for t in TEXTS[1:5]]
            multi = asyncio.create_task(c.post("/predict", json={"inputs": [[t] for t in TEXTS[5:9]]}))
            await _until(lambda: batcher.queued == 8)
            over = await c.post("/predict", json={"inputs": TEXTS[9]})
            gated.gate.set()
            return await first, await asyncio.gather(*singles), await multi, over

    first, singles, multi, over = asyncio.run(scenario())
    assert over.status_code == 429 and over.headers["retry-after"] == "1"
    assert over.json()["error_type"] == "overloaded" and "--max-queue" in over.json()["error"]
    assert first.status_code == 200 and all(r.status_code == 200 for r in singles) and multi.status_code == 200
    want = clf.predict(TEXTS[:9])
    assert [r.json()[0]["label"] for r in singles] == [p["label"] for p in want[1:5]]
    assert [b[0]["label"] for b in multi.json()] == [p["label"] for p in want[5:9]]
    assert metrics.max_batch_texts == 8  # 4 single-text requests + one of 4 texts: one model call
    assert metrics.batches == 2
    app.state.batcher.close()


def test_timeout_is_503_and_model_errors_are_500(tiny_export, clf):
    gated = Gated(clf)
    app = build_app(_cfg(tiny_export, request_timeout=0.2), gated)
    with TestClient(app) as c:
        r = c.post("/predict", json={"inputs": "slow"})
        assert r.status_code == 503 and r.json()["error_type"] == "timeout"
        gated.fail = True
        gated.gate.set()
        r = c.post("/predict", json={"inputs": "boom"})
        assert r.status_code == 500 and r.json()["error_type"] == "backend"
        assert c.get("/health").status_code == 200  # the batcher thread survived


def test_close_drains_the_queue_then_refuses(clf):
    gated = Gated(clf)
    b = DynamicBatcher(gated, max_batch_texts=2, max_wait_s=0, max_queue=100)

    async def scenario():
        works = [b.submit([t]) for t in TEXTS[:6]]
        closing = asyncio.create_task(asyncio.to_thread(b.close, True))
        await asyncio.sleep(0.05)
        gated.gate.set()
        results = await asyncio.gather(*(w.future for w in works))
        await closing
        with pytest.raises(ShuttingDown):
            b.submit(["late"])
        return results

    results = asyncio.run(scenario())
    labels = [clf.labels[int(np.argmax(r[0]))] for r in results]
    assert labels == [p["label"] for p in clf.predict(TEXTS[:6])]
    assert not b.healthy


class Recording:
    """A stand-in model whose logits name their input (its length), recording which copy ran
    each call and holding calls until `gate`."""

    def __init__(self, name, calls, gate):
        self.name, self.calls, self.gate = name, calls, gate

    def encode(self, texts):
        return list(texts)

    def logits_from_encoded(self, enc):
        self.calls.append(self.name)
        self.gate.wait(20)
        return np.array([[float(len(t))] for t in enc], dtype=np.float32)


def test_a_lone_caller_is_not_kept_waiting_for_company(clf):
    b = DynamicBatcher(clf, max_batch_texts=64, max_wait_s=2.0, max_queue=100)

    async def one():
        t = time.perf_counter()
        await b.submit([TEXTS[0]]).future
        return time.perf_counter() - t

    assert asyncio.run(one()) < 1.5  # --max-wait-ms is 2 s here: nobody was waiting for it
    b.close()


def test_light_load_gets_every_core_heavy_load_the_split_streams():
    """At light load one worker runs calls on the all-threads Classifier; when a call finds
    HEAVY_TEXTS inputs waiting, two workers run calls on the single-threaded split streams side
    by side, each request still getting its own logits."""
    from bertfast.serve.batcher import HEAVY_TEXTS

    calls, gate = [], threading.Event()
    gate.set()
    wide, split = Recording("wide", calls, gate), Recording("split", calls, gate)
    b = DynamicBatcher(wide, max_batch_texts=8, max_wait_s=0, max_queue=100, split=split)
    texts = ["x" * i for i in range(1, HEAVY_TEXTS + 6)]  # each text's logit is its length

    async def scenario():
        alone = [await b.submit([t]).future for t in texts[:2]]  # one at a time: light load
        gate.clear()  # hold calls while the rest queue up at once: heavy load
        works = [b.submit([t]) for t in texts[2:]]
        await asyncio.sleep(0.3)
        running = len(calls) - 2
        gate.set()
        return alone, await asyncio.gather(*(w.future for w in works)), running

    alone, results, running = asyncio.run(scenario())
    assert calls[:2] == ["wide", "wide"] and calls[2:] and set(calls[2:]) == {"split"}
    assert running == 2  # two workers: two calls in flight at once
    assert [float(r[0][0]) for r in [*alone, *results]] == [float(len(t)) for t in texts]  # each its own row
    b.close()


def test_fixed_streams_run_that_many_calls_at_once():
    """`--streams 2` (no adaptive split): both workers take calls, whatever the load."""
    calls, gate = [], threading.Event()
    model = Recording("clf", calls, gate)
    b = DynamicBatcher(model, max_batch_texts=1, max_wait_s=0, max_queue=100, workers=2)

    async def scenario():
        works = [b.submit(["x" * i]) for i in (1, 2, 3)]
        await asyncio.sleep(0.3)
        running = len(calls)
        gate.set()
        return running, await asyncio.gather(*(w.future for w in works))

    running, results = asyncio.run(scenario())
    assert running == 2
    assert [float(r[0][0]) for r in results] == [1.0, 2.0, 3.0]
    b.close()


class ThreeLogits(Recording):
    """Logits that name their input: [len, -len / 4, 1]."""

    def logits_from_encoded(self, enc):
        super().logits_from_encoded(enc)
        return np.array([[len(t), -len(t) / 4, 1.0] for t in enc], dtype=np.float32)


def test_activation_is_applied_once_per_call_to_the_rows_that_ask_for_it():
    """Requests naming different activations share one model call; each gets its own rows
    under its own activation (logits when it names none), as `tasks.activate` computes them."""
    from bertfast import tasks

    calls, gate = [], threading.Event()
    b = DynamicBatcher(ThreeLogits("m", calls, gate), max_batch_texts=64, max_wait_s=0, max_queue=100)
    asks = [None, "softmax", "sigmoid", "softmax", None]
    texts = [["x" * (2 * i + 1), "y" * (2 * i + 2)] for i in range(len(asks))]

    async def scenario():
        first = b.submit(["z"])  # holds the model while the others queue up
        while not calls:
            await asyncio.sleep(0.01)
        works = [b.submit(t, a) for t, a in zip(texts, asks)]
        gate.set()
        await first.future
        return [await w.future for w in works]

    got = asyncio.run(scenario())
    assert len(calls) == 2  # the five requests shared one call
    for t, a, rows in zip(texts, asks, got):
        logits = np.array([[len(x), -len(x) / 4, 1.0] for x in t], dtype=np.float32)
        want = logits if a is None else tasks.activate(logits, a)
        np.testing.assert_allclose(rows, want, rtol=1e-6)
    b.close()


def test_config_errors_name_the_flag(tiny_export):
    with pytest.raises(BertfastError, match="--max-queue"):
        ServeConfig(tiny_export, max_queue=4, max_inputs=8)
    with pytest.raises(BertfastError, match="--max-wait-ms"):
        ServeConfig(tiny_export, max_wait_ms=-1)
    with pytest.raises(BertfastError, match="--workers"):
        ServeConfig(tiny_export, workers=0)
    cfg = ServeConfig(tiny_export, port=0)
    assert ServeConfig.from_json(cfg.to_json()) == cfg


def test_cli_flags_build_the_config(tiny_export, monkeypatch):
    import argparse

    import bertfast.serve as S

    parser = argparse.ArgumentParser()
    S.add_arguments(parser)
    seen = {}
    monkeypatch.setattr(S, "serve", lambda cfg: seen.setdefault("cfg", cfg))
    S.main(parser.parse_args([str(tiny_export), "--port", "9", "--max-wait-ms", "7", "--threads", "3",
                              "--workers", "2", "--device", "cpu"]))
    cfg = seen["cfg"]
    assert (cfg.port, cfg.max_wait_ms, cfg.workers, cfg.options.threads, cfg.options.device) == (9, 7.0, 2, 3, "cpu")


def test_base_install_stays_light():
    code = ("import sys, bertfast.serve, bertfast.serve.schemas, bertfast.serve.batcher; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'prometheus_client') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- real servers and clients -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_huggingface_inference_client(tiny_export, clf, monkeypatch):
    import uvicorn
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest sets offline; this is loopback
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(_cfg(tiny_export), clf), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        t = time.monotonic()
        while not server.started:
            assert time.monotonic() - t < 20 and thread.is_alive()
            time.sleep(0.02)
        hf = InferenceClient(model=f"http://127.0.0.1:{port}")
        for text in TEXTS[:3]:
            out = hf.text_classification(text)
            assert [o.label for o in out] == [p["label"] for p in clf.predict(text, top_k=3)]
        assert len(hf.text_classification(TEXTS[0], top_k=1)) == 1
        tei = httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": [[t] for t in TEXTS[:4]]}).json()
        assert [b[0]["label"] for b in tei] == [p["label"] for p in clf.predict(TEXTS[:4])]
    finally:
        server.should_exit = True
        thread.join(20)
    assert not thread.is_alive()


def test_workers_processes_and_sigterm(tiny_export):
    port = _free_port()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "bertfast.serve", str(tiny_export), "--port", str(port),
                             "--workers", "2", "--device", "cpu"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        t = time.monotonic()
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() - t < 60, "server did not start"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        info = httpx.get(f"{url}/info").json()["bertfast"]
        assert info["workers"] == 2 and info["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
        r = httpx.post(f"{url}/predict", json={"inputs": [[t] for t in TEXTS[:3]]})
        assert r.status_code == 200 and len(r.json()) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_ray_serve_wrapper_imports():
    from bertfast.serve import ray_serve

    assert hasattr(ray_serve.BertfastReplica, "__serve_build_asgi_app__")
    pytest.importorskip("grpc")  # ray[serve]
    app = ray_serve.deployment(ServeConfig("some-export"), num_replicas=2, num_cpus=1, num_gpus=0.5)
    assert json.dumps(str(type(app)))  # bound without starting Ray


@pytest.mark.slow
@pytest.mark.ray
def test_ray_serve_deployment_answers_tei(tiny_export, clf):
    """~20 s on 2 CPUs: a local Ray instance, one replica, the same routes as `bertfast serve`."""
    pytest.importorskip("grpc")  # ray[serve]
    import ray
    from ray import serve

    from bertfast.runtime.options import RuntimeOptions
    from bertfast.serve import ray_serve

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        cfg = ServeConfig(tiny_export, options=RuntimeOptions(device="cpu"))
        serve.run(ray_serve.deployment(cfg, num_cpus=1), route_prefix="/", blocking=False)
        r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": [[t] for t in TEXTS[:3]]}, timeout=30)
        assert r.status_code == 200
        assert [b[0]["label"] for b in r.json()] == [p["label"] for p in clf.predict(TEXTS[:3])]
        assert httpx.get(f"http://127.0.0.1:{port}/info").json()["bertfast"]["threads"] == 1
    finally:
        serve.shutdown()
        ray.shutdown()


def test_ranked_json_is_what_json_writes():
    """The hand-written /predict body is byte for byte the json module's (ties by label order,
    quotes and non-ASCII labels, top_k), and a non-finite score is refused as json refuses it."""
    from bertfast.serve.asgi import dumps
    from bertfast.serve.handlers import _ranked, _ranked_json

    labels = ["sport", 'say "hi"', "économie", "tech"]
    quoted = [dumps(lab) for lab in labels]
    rows = [np.array([0.25, 0.25, 0.5, 0.0], dtype=np.float32), np.array([1e-30, 3.0, -2e10, 0.1], dtype=np.float32),
            np.random.default_rng(0).normal(size=4).astype(np.float32)]
    for row in rows:
        for k in (None, 1, 3):
            assert _ranked_json(row, labels, quoted, k) == dumps(_ranked(row, labels, k))
    with pytest.raises(ValueError, match="JSON compliant"):
        _ranked_json(np.array([np.nan, 0, 0, 0], dtype=np.float32), labels, quoted)
