"""`bertfast serve` under bad input and failing model calls: a lone surrogate is the client's
422 naming the field, and a model call that fails for one input fails only that request."""

from __future__ import annotations

import asyncio
import json
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

from bertfast.runtime.classifier import Classifier  # noqa: E402
from bertfast.serve import ServeConfig, build_app  # noqa: E402
from bertfast.serve.model import ServedModel  # noqa: E402

TEXTS = [t for t, _ in make_texts(14, seed=7)]
CULPRIT = "this headline breaks the model"


@pytest.fixture(scope="module")
def clf(tiny_export):
    with Classifier.load(tiny_export, device="cpu", threads=1) as c:
        yield c


def _cfg(export, **kw) -> ServeConfig:
    return ServeConfig(export, **{**dict(max_inputs=8, max_queue=256, max_chars=1000, max_wait_ms=0), **kw})


def _backend_errors(app) -> float:
    return app.state.metrics.registry.get_sample_value("bertfast_errors_total", {"kind": "backend"}) or 0.0


SURROGATES = [  # (route, body, the field the error names)
    ("/predict", {"inputs": "\ud800"}, "inputs[0]"),
    ("/predict", {"inputs": ["ok \udfff"]}, "inputs[0]"),
    ("/predict", {"inputs": [["fine"], ["a \ud800 b"]]}, "inputs[1][0]"),
    ("/", {"inputs": "caf\u00e9 \udc00"}, "inputs[0]"),
    ("/invocations", {"inputs": [["\ud83d"]]}, "inputs[0][0]"),
    ("/classify", {"texts": "\ud800"}, "texts[0]"),
    ("/classify", {"texts": ["fine", "\udbff"]}, "texts[1]"),
    ("/rerank", {"query": "\ud800", "texts": ["a"]}, "query"),
    ("/rerank", {"query": "q", "texts": ["a", "b \udfff"]}, "texts[1]"),
]


@pytest.mark.parametrize("route, body, field", SURROGATES, ids=[f"{r}-{f}" for r, _, f in SURROGATES])
def test_a_lone_surrogate_is_422_naming_the_field(tiny_export, clf, route, body, field):
    """Valid JSON ("\\ud800") but no text: refused before the model, not a backend error."""
    with TestClient(build_app(_cfg(tiny_export), clf)) as c:
        app = c.app
        r = c.post(route, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        err = r.json()
        assert err["error_type"] == "validation" and err["error"].startswith(f"{field} is not valid Unicode"), err
        assert app.state.metrics.batches == 0 and _backend_errors(app) == 0
        assert c.post("/predict", json={"inputs": "caf\u00e9 \U0001f600"}).status_code == 200  # a real pair is fine


class Culprit(ServedModel):
    """The Classifier, except that a model call holding `CULPRIT` raises (as ONNX Runtime does
    for an input past the position table), and the first label's logit of `TEXTS[i]` is moved
    by 10 * i, so each row names its text; the first call waits for `gate`."""

    def __init__(self, clf):
        self.clf, self.gate, self.entered, self.calls = clf, threading.Event(), threading.Event(), []
        self.labels, self.task, self.pair, self.activation = clf.labels, clf.task, clf.pair, clf.activation
        self.thresholds, self.options, self.manifest, self.providers = clf.thresholds, clf.options, clf.manifest, clf.providers
        self.positive, self.rerank_refusal = clf.positive, clf.rerank_refusal

    def encode(self, texts):
        return _Tagged(list(texts), self.clf.encode(texts))

    def logits_from_encoded(self, enc):
        self.calls.append(len(enc.texts))
        self.entered.set()
        self.gate.wait(20)
        if CULPRIT in enc.texts:
            raise RuntimeError("indices element out of data bounds (position_ids)")
        out = np.array(self.clf.logits_from_encoded(enc.enc))
        out[:, 0] += [10.0 * TEXTS.index(t) for t in enc.texts]
        return out

    def close(self):
        pass  # the wrapped Classifier is the fixture's


class _Tagged:
    def __init__(self, texts, enc):
        self.texts, self.enc, self.padded_tokens = texts, enc, enc.padded_tokens


@pytest.mark.parametrize("where", [0, 6, 12])
def test_a_failing_model_call_fails_only_the_request_that_caused_it(tiny_export, clf, where):
    model = Culprit(clf)
    app = build_app(_cfg(tiny_export, max_batch_texts=1024), model)
    texts = TEXTS[1:13]
    bodies = [{"inputs": t, "raw_scores": True} for t in texts]
    bodies.insert(where, {"inputs": [[CULPRIT]]})

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            first = asyncio.create_task(c.post("/predict", json={"inputs": TEXTS[0]}))
            await asyncio.to_thread(model.entered.wait, 10)  # the model is busy: the 13 queue up
            rest = [asyncio.create_task(c.post("/predict", json=b)) for b in bodies]
            t = time.monotonic()
            while app.state.batcher.queued < 13:
                assert time.monotonic() - t < 20, "requests did not queue"
                await asyncio.sleep(0.005)
            model.gate.set()
            return await first, await asyncio.gather(*rest), await c.post("/predict", json={"inputs": CULPRIT})

    before = _backend_errors(app)
    try:
        first, answers, alone = asyncio.run(scenario())
    finally:
        app.state.batcher.close()
    assert model.calls[:2] == [1, 13]  # the 13 shared one call, which failed
    bad = answers.pop(where)
    assert bad.status_code == 500 and bad.json()["error_type"] == "backend", bad.text
    assert "position_ids" in bad.json()["error"]
    assert first.status_code == 200 and all(r.status_code == 200 for r in answers), [r.text for r in answers]
    # Each its own row (the model's, moved by 10 * i on the first label), within batching noise.
    want = np.stack([clf.logits_from_encoded(clf.encode([t]))[0] for t in texts])
    want[:, 0] += [10.0 * TEXTS.index(t) for t in texts]
    got = np.array([[{g["label"]: g["score"] for g in r.json()}[lab] for lab in clf.labels] for r in answers])
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert alone.status_code == 500
    assert _backend_errors(app) == before + 2  # the culprit in the shared call once, then alone once
