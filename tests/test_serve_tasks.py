"""`bertfast serve` per task: multi-label, pair classification (2 classes) and pair regression.

Every route's answer must equal what `Classifier.predict` / `predict_proba` / `rerank` say on the
same export: labels equal, scores within 1e-5, rerank order equal. Pairs go through the same
dynamic batcher as single texts (and `/rerank`'s documents share model calls with `/predict`).
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from _export_helpers import make_task_export
from conftest import make_texts

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from bertfast.runtime.classifier import Classifier  # noqa: E402
from bertfast.serve import ServeConfig, build_app  # noqa: E402
from bertfast.serve.model import ServedModel  # noqa: E402

TEXTS = [t for t, _ in make_texts(16, seed=5)]
PAIRS = [(TEXTS[i], TEXTS[(i * 5 + 3) % len(TEXTS)]) for i in range(8)]
QUERY = "Match goal team win"
DOCS = TEXTS[:7] + ["", "the a of"]
THRESHOLDS = [0.3, 0.5, 0.7, 0.5]
KINDS = {  # name: (task, pair)
    "multi": ("multi_label", False),
    "pair2": ("single_label", True),
    "pair_reg": ("regression", True),
}
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def exports(_tiny_model_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-tasks")
    return {name: make_task_export(_tiny_model_session, root / name, task, pair,
                                   thresholds=THRESHOLDS if task == "multi_label" else None)
            for name, (task, pair) in KINDS.items()}


@pytest.fixture(scope="module")
def clfs(exports):
    out = {name: Classifier.load(path, device="cpu", threads=1) for name, path in exports.items()}
    yield out
    for c in out.values():
        c.close()


def _cfg(export, **kw) -> ServeConfig:
    base = dict(max_inputs=12, max_queue=256, max_chars=1000, max_body_mb=4, max_wait_ms=1.0)
    return ServeConfig(export, **{**base, **kw})


@pytest.fixture(scope="module")
def clients(exports, clfs):
    out = {name: TestClient(build_app(_cfg(exports[name]), clfs[name])) for name in KINDS}
    for c in out.values():
        c.__enter__()
    yield out
    for c in out.values():
        c.__exit__(None, None, None)


def _inputs(name: str, n: int) -> list:
    return [list(p) for p in PAIRS[:n]] if KINDS[name][1] else TEXTS[:n]


def _tei_batch(name: str, n: int) -> list:
    return [list(p) for p in PAIRS[:n]] if KINDS[name][1] else [[t] for t in TEXTS[:n]]


def _want_predict(clf, items) -> list[list[dict]]:
    """TEI's /predict answer per input: every label with its score (the export's activation), best first."""
    proba = clf.predict_proba(items)
    out = []
    for row in proba:
        order = np.argsort(-row, kind="stable")
        out.append([{"label": clf.labels[j], "score": float(row[j])} for j in order])
    return out


def _same_ranked(got: list[dict], want: list[dict]) -> None:
    assert [g["label"] for g in got] == [w["label"] for w in want]
    np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], **TOL)


def _same_prediction(got, want) -> None:
    """/classify's prediction vs Classifier.predict's, per task."""
    if "labels" in want:  # multi_label
        assert got["labels"] == want["labels"] and list(got["scores"]) == list(want["scores"])
        np.testing.assert_allclose(list(got["scores"].values()), list(want["scores"].values()), **TOL)
    elif "label" in want:
        assert got["label"] == want["label"]
        np.testing.assert_allclose(got["score"], want["score"], **TOL)
    else:
        assert set(got) == {"score"}
        np.testing.assert_allclose(got["score"], want["score"], **TOL)


def _same_rerank(got: list[dict], want: list[dict], exact_order: bool = True) -> None:
    assert sorted(g["index"] for g in got) == sorted(w["index"] for w in want)
    by_index = {w["index"]: w["score"] for w in want}
    np.testing.assert_allclose([g["score"] for g in got], [by_index[g["index"]] for g in got], **TOL)
    if exact_order:
        assert [g["index"] for g in got] == [w["index"] for w in want]
    else:  # batched with other requests: only near-ties (< 1e-4 apart) may swap
        scores = [g["score"] for g in got]
        assert all(a >= b - 1e-4 for a, b in zip(scores, scores[1:]))


# -- /predict ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(KINDS))
def test_predict_matches_classifier(clients, clfs, name):
    c, clf = clients[name], clfs[name]
    items = _inputs(name, 6)
    want = _want_predict(clf, items)
    # one input: a string, or a pair [a, b] (TEI's flat list of two)
    r = c.post("/predict", json={"inputs": items[0]})
    assert r.status_code == 200, r.text
    _same_ranked(r.json(), want[0])
    # a batch: [[text], ...] or [[a, b], ...]
    r = c.post("/predict", json={"inputs": _tei_batch(name, 6), "truncate": True})
    assert r.status_code == 200, r.text
    got = r.json()
    assert len(got) == 6
    for g, w in zip(got, want):
        _same_ranked(g, w)
    # the HF Inference API route wraps one input in a list, and takes top_k
    r = c.post("/", json={"inputs": items[1], "parameters": {"top_k": 1}})
    assert r.status_code == 200, r.text
    _same_ranked(r.json()[0], want[1][:1])


def test_predict_shapes_per_task(clients, clfs):
    multi = clients["multi"].post("/predict", json={"inputs": TEXTS[0]}).json()
    assert len(multi) == 4 and {p["label"] for p in multi} == set(clfs["multi"].labels)
    # sigmoid per label, not a softmax over labels: the scores need not sum to 1
    np.testing.assert_allclose([p["score"] for p in multi],
                               sorted(clfs["multi"].predict(TEXTS[0])["scores"].values(), reverse=True), **TOL)
    reg = clients["pair_reg"].post("/predict", json={"inputs": list(PAIRS[0])}).json()
    assert [p["label"] for p in reg] == ["score"]
    np.testing.assert_allclose(reg[0]["score"], clfs["pair_reg"].predict(list(PAIRS[0]))["score"], **TOL)
    two = clients["pair2"].post("/predict", json={"inputs": list(PAIRS[0])}).json()
    assert sorted(p["label"] for p in two) == ["irrelevant", "relevant"]
    assert abs(sum(p["score"] for p in two) - 1) < 1e-5


@pytest.mark.parametrize("name", list(KINDS))
def test_raw_scores_are_logits(clients, clfs, name):
    clf = clfs[name]
    items = _inputs(name, 3)
    logits = clf.logits_from_encoded(clf.encode(items))
    got = clients[name].post("/predict", json={"inputs": _tei_batch(name, 3), "raw_scores": True}).json()
    for g, row in zip(got, logits):
        by_label = {p["label"]: p["score"] for p in g}
        np.testing.assert_allclose([by_label[lab] for lab in clf.labels], row, **TOL)


# -- /classify -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(KINDS))
def test_classify_matches_classifier_predict(clients, clfs, name):
    c, clf = clients[name], clfs[name]
    items = _inputs(name, 6)
    want = clf.predict(items)
    r = c.post("/classify", json={"texts": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == KINDS[name][0] and body["variant"] == clf.variant
    assert len(body["predictions"]) == 6
    for g, w in zip(body["predictions"], want):
        _same_prediction(g, w)
    one = c.post("/classify", json={"texts": items[0]}).json()["predictions"]  # a string, or one pair [a, b]
    assert len(one) == 1
    _same_prediction(one[0], clf.predict(items[0]))


def test_classify_multi_label_uses_the_exported_thresholds(clients, clfs):
    clf = clfs["multi"]
    assert clf.thresholds == THRESHOLDS
    for p in clients["multi"].post("/classify", json={"texts": TEXTS[:10]}).json()["predictions"]:
        assert p["labels"] == [lab for lab, th in zip(clf.labels, THRESHOLDS) if p["scores"][lab] >= th]


def test_classify_pair_top_k(clients, clfs):
    clf = clfs["pair2"]
    p = clients["pair2"].post("/classify", json={"texts": [list(PAIRS[0])], "top_k": 2, "all_scores": True}).json()
    pred = p["predictions"][0]
    want = clf.predict([list(PAIRS[0])], top_k=2)[0]
    _same_ranked(pred["top_k"], want)
    assert set(pred["scores"]) == set(clf.labels)


# -- /rerank -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pair2", "pair_reg"])
def test_rerank_matches_classifier_rerank(clients, clfs, name):
    c, clf = clients[name], clfs[name]
    want = clf.rerank(QUERY, DOCS)
    r = c.post("/rerank", json={"query": QUERY, "texts": DOCS})
    assert r.status_code == 200, r.text
    got = r.json()
    assert all(set(g) == {"index", "score"} for g in got)
    _same_rerank(got, want)
    r = c.post("/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True, "truncate": True,
                                "truncation_direction": "Right"})
    got = r.json()
    _same_rerank(got, want)
    assert [g["text"] for g in got] == [w["document"] for w in want]
    # raw_scores: the one logit, or the log-odds of the last class; sigmoid/softmax of it is the score
    raw = c.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    logits = clf.logits_from_encoded(clf.encode([[QUERY, d] for d in DOCS]))
    expect = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
    np.testing.assert_allclose([g["score"] for g in raw], [expect[g["index"]] for g in raw], **TOL)
    if clf.activation == "softmax":
        want_scores = {w["index"]: w["score"] for w in want}
        np.testing.assert_allclose([1 / (1 + np.exp(-g["score"])) for g in raw],
                                   [want_scores[g["index"]] for g in raw], **TOL)


def test_rerank_refused_on_a_single_text_export(clients):
    r = clients["multi"].post("/rerank", json={"query": "q", "texts": ["a", "b"]})
    assert r.status_code == 424, r.text
    err = r.json()
    assert err["error_type"] == "backend" and "not a re-ranker" in err["error"] and "cross-encoder" in err["error"]
    assert clients["multi"].post("/predict", json={"inputs": "a"}).status_code == 200


# -- /info and /metrics --------------------------------------------------------------------


def test_info_reports_task_pair_and_model_type(clients, clfs):
    multi = clients["multi"].get("/info").json()
    assert multi["bertfast"]["task"] == "multi_label" and multi["bertfast"]["pair"] is False
    assert multi["bertfast"]["thresholds"] == THRESHOLDS and multi["bertfast"]["activation"] == "sigmoid"
    assert multi["model_type"]["classifier"]["id2label"] == {str(i): lab for i, lab in enumerate(clfs["multi"].labels)}
    for name, task in (("pair2", "single_label"), ("pair_reg", "regression")):
        info = clients[name].get("/info").json()
        assert info["bertfast"]["task"] == task and info["bertfast"]["pair"] is True
        assert info["bertfast"]["thresholds"] is None and info["bertfast"]["reranker"] is True
        assert list(info["model_type"]) == ["reranker"]
        assert info["model_type"]["reranker"]["label2id"] == {lab: i for i, lab in enumerate(clfs[name].labels)}


def test_metrics_count_rerank(clients):
    c = clients["pair2"]
    c.post("/rerank", json={"query": "q", "texts": ["a", "b"]})
    c.post("/rerank", json={"query": "q", "texts": []})
    text = c.get("/metrics").text
    assert 'bertfast_requests_total{route="/rerank",status="200"}' in text
    assert 'bertfast_requests_total{route="/rerank",status="422"}' in text
    assert 'bertfast_request_seconds_count{route="/rerank"}' in text
    assert 'bertfast_errors_total{kind="validation"}' in text


# -- bad input -----------------------------------------------------------------------------


BAD = [  # (export, route, body, status, words that must be in the error)
    ("pair2", "/predict", {"inputs": "just one text"}, 422, ["inputs", "text pairs"]),
    ("pair2", "/predict", {"inputs": ["only one"]}, 422, ["inputs", "text pairs"]),
    ("pair2", "/predict", {"inputs": ["a", "b", "c"]}, 422, ["flat list"]),
    ("pair2", "/predict", {"inputs": ["a", None]}, 422, ["inputs[1]", "string"]),
    ("pair2", "/predict", {"inputs": [["a", "b"], ["c", "d"], ["e", "f"], ["g"]]}, 422, ["inputs[3]", "text pairs"]),
    ("pair2", "/predict", {"inputs": [["a", "b"], ["c", "d", "e"]]}, 422, ["inputs[1]", "3 elements"]),
    ("pair2", "/predict", {"inputs": [["a", "b"], ["c", None]]}, 422, ["inputs[1][1]", "string"]),
    ("pair2", "/predict", {"inputs": [["a", "b"], "c"]}, 422, ["inputs[1]", "pair"]),
    ("pair2", "/predict", {"inputs": [["a", "b"]] * 13}, 413, ["inputs", "--max-inputs"]),
    ("pair_reg", "/predict", {"inputs": [["a", "b"], ["c", "d"], ["e", "f"], [None, "h"]]}, 422, ["inputs[3][0]"]),
    ("multi", "/predict", {"inputs": ["a", "b"]}, 422, ["inputs", "pair", "single texts"]),
    ("multi", "/predict", {"inputs": [["a"], ["b"], ["c"], ["d", "e"]]}, 422, ["inputs[3]", "pair", "single texts"]),
    ("multi", "/classify", {"texts": ["a", ["b", "c"]]}, 422, ["texts[1]", "single texts"]),
    ("multi", "/classify", {"texts": ["a"], "top_k": 2}, 422, ["top_k", "multi_label"]),
    ("pair_reg", "/classify", {"texts": [["a", "b"]], "top_k": 2}, 422, ["top_k", "regression"]),
    ("pair2", "/classify", {"texts": "one text"}, 422, ["texts", "text pairs"]),
    ("pair2", "/classify", {"texts": [["a", "b"], ["c"]]}, 422, ["texts[1]", "1 elements"]),
    ("pair2", "/classify", {"texts": [["a", "b"], ["c", 3]]}, 422, ["texts[1][1]", "string"]),
    ("pair2", "/classify", {"texts": ["a", "b", "c"]}, 422, ["texts", "pair"]),
    ("pair2", "/classify", {"texts": []}, 422, ["texts", "empty"]),
    ("pair2", "/rerank", {"query": "q", "texts": []}, 422, ["texts", "empty"]),
    ("pair2", "/rerank", {"query": "q", "texts": ["a", 3]}, 422, ["texts[1]", "string"]),
    ("pair2", "/rerank", {"query": "q", "texts": ["a", None]}, 422, ["texts[1]", "string"]),
    ("pair2", "/rerank", {"query": None, "texts": ["a"]}, 422, ["query"]),
    ("pair2", "/rerank", {"query": 5, "texts": ["a"]}, 422, ["query", "string"]),
    ("pair2", "/rerank", {"query": "q", "texts": "a"}, 422, ["texts", "list"]),
    ("pair2", "/rerank", {"query": "q", "texts": ["a"], "return_text": "yes"}, 422, ["return_text"]),
    ("pair2", "/rerank", {"query": "q", "texts": ["a"], "truncation_direction": "up"}, 422, ["truncation_direction"]),
    ("pair_reg", "/rerank", {"query": "q", "texts": ["a"] * 13}, 413, ["texts", "--max-inputs"]),
    ("multi", "/rerank", {"query": "q", "texts": [1]}, 422, ["texts[0]"]),  # a malformed body: 422 before 424
]


@pytest.mark.parametrize("name, route, body, status, words", BAD,
                         ids=[f"{i}-{b[0]}{b[1]}" for i, b in enumerate(BAD)])
def test_bad_input_is_named_and_the_server_keeps_answering(clients, clfs, name, route, body, status, words):
    c = clients[name]
    calls = c.app.state.metrics.batches
    r = c.post(route, json=body)
    assert r.status_code == status, r.text[:300]
    err = r.json()
    assert set(err) == {"error", "error_type"}
    for w in words:
        assert w in err["error"], err
    assert c.app.state.metrics.batches == calls  # the model never ran
    good = c.post("/predict", json={"inputs": _tei_batch(name, 2)})
    assert good.status_code == 200 and len(good.json()) == 2


# -- concurrency ---------------------------------------------------------------------------


class Gated(ServedModel):
    """The Classifier, but the model call waits for `gate` once: requests pile up meanwhile."""

    def __init__(self, clf):
        self.clf, self.gate, self.entered = clf, threading.Event(), threading.Event()
        self.labels, self.task, self.pair, self.activation = clf.labels, clf.task, clf.pair, clf.activation
        self.thresholds, self.options, self.manifest, self.providers = clf.thresholds, clf.options, clf.manifest, clf.providers
        self.positive, self.rerank_refusal = clf.positive, clf.rerank_refusal

    def encode(self, texts):
        return self.clf.encode(texts)

    def logits_from_encoded(self, enc):
        self.entered.set()
        self.gate.wait(20)
        return self.clf.logits_from_encoded(enc)

    def close(self):
        pass  # the wrapped Classifier is the fixture's (or the test's)


def _requests(name: str, n: int = 20) -> list[tuple[str, dict]]:
    """`n` different requests: /predict (one input and batches), /classify and, on reranker
    exports, /rerank, in a fixed mix."""
    items = _inputs(name, 8)
    out = []
    for i in range(n):
        kind = i % 4 if KINDS[name][1] else i % 3
        if kind == 0:
            out.append(("/predict", {"inputs": items[i % 8]}))
        elif kind == 1:
            out.append(("/predict", {"inputs": _tei_batch(name, 8)[i % 5 : i % 5 + 3]}))
        elif kind == 2:
            out.append(("/classify", {"texts": items[(i + 3) % 8 :] or items[:1]}))
        else:
            out.append(("/rerank", {"query": TEXTS[i % len(TEXTS)], "texts": DOCS[: 3 + i % 6], "return_text": True}))
    return out


def _same_answer(route: str, got, want) -> None:
    if route == "/rerank":
        _same_rerank(got, want, exact_order=False)
        assert [g["text"] for g in got] == [DOCS[g["index"]] for g in got]
    elif route == "/classify":
        assert len(got["predictions"]) == len(want["predictions"])
        for g, w in zip(got["predictions"], want["predictions"]):
            _same_prediction(g, w)
    elif want and isinstance(want[0], list):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _same_ranked(g, w)
    else:
        _same_ranked(got, want)


@pytest.mark.parametrize("name", list(KINDS))
def test_concurrent_requests_batch_together_and_answer_each_its_own(clients, clfs, exports, name):
    reqs = _requests(name)
    alone = []
    for route, body in reqs:  # one at a time: the reference answers
        r = clients[name].post(route, json=body)
        assert r.status_code == 200, r.text
        alone.append(r.json())
    gated = Gated(clfs[name])
    app = build_app(_cfg(exports[name], max_wait_ms=0, max_batch_texts=1024), gated)
    metrics = app.state.metrics

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            first = asyncio.create_task(c.post(reqs[0][0], json=reqs[0][1]))
            await asyncio.to_thread(gated.entered.wait, 10)  # the model is busy with the first request
            rest = [asyncio.create_task(c.post(route, json=body)) for route, body in reqs[1:]]
            t = time.monotonic()
            while app.state.batcher.queued < sum(_n_inputs(r, b) for r, b in reqs[1:]):
                assert time.monotonic() - t < 20, "requests did not queue"
                await asyncio.sleep(0.005)
            gated.gate.set()
            return [await first, *await asyncio.gather(*rest)]

    try:
        answers = asyncio.run(scenario())
    finally:
        app.state.batcher.close()
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    for (route, _), r, want in zip(reqs, answers, alone):
        _same_answer(route, r.json(), want)
    # the first request alone, then the 19 others in ONE model call (rerank documents included)
    assert metrics.batches == 2
    assert metrics.max_batch_texts == sum(_n_inputs(r, b) for r, b in reqs[1:])


def _n_inputs(route: str, body: dict) -> int:
    """Inputs a request queues (of `_requests`' shapes): rerank documents, /classify items, or
    TEI's one sequence (a string or a flat [a, b]) / batch."""
    if route == "/rerank":
        return len(body["texts"])
    if route == "/classify":
        return len(body["texts"])
    x = body["inputs"]
    return 1 if isinstance(x, str) or isinstance(x[0], str) else len(x)


def test_threads_in_parallel_against_a_real_server(exports, clfs):
    """20 client threads on a real uvicorn server: each gets its own answer."""
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(_cfg(exports["pair2"], max_wait_ms=5.0), clfs["pair2"]),
                                           host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        t = time.monotonic()
        while not server.started:
            assert time.monotonic() - t < 20 and thread.is_alive()
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        reqs = _requests("pair2")
        with httpx.Client(base_url=url) as c:
            alone = [c.post(route, json=body).json() for route, body in reqs]
        results: list = [None] * len(reqs)

        def call(i):
            with httpx.Client(base_url=url, timeout=30) as c:
                results[i] = c.post(reqs[i][0], json=reqs[i][1])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(reqs))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        for (route, _), r, want in zip(reqs, results, alone):
            assert r is not None and r.status_code == 200, r
            _same_answer(route, r.json(), want)
    finally:
        server.should_exit = True
        thread.join(20)
    assert not thread.is_alive()


def test_huggingface_inference_client_on_a_multi_label_export(exports, clfs, monkeypatch):
    """`InferenceClient.text_classification` reads a multi-label export's sigmoid scores. (It sends
    one string per call, so it cannot send pairs: pair exports are reached over /predict.)"""
    import socket

    import uvicorn

    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)  # conftest sets offline; this is loopback
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(_cfg(exports["multi"]), clfs["multi"]), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        t = time.monotonic()
        while not server.started:
            assert time.monotonic() - t < 20 and thread.is_alive()
            time.sleep(0.02)
        hf = hub.InferenceClient(model=f"http://127.0.0.1:{port}")
        out = hf.text_classification(TEXTS[0])
        want = clfs["multi"].predict(TEXTS[0])["scores"]
        assert {o.label for o in out} == set(want)
        np.testing.assert_allclose([o.score for o in out], [want[o.label] for o in out], **TOL)
    finally:
        server.should_exit = True
        thread.join(20)
    assert not thread.is_alive()


def test_an_input_that_cannot_be_encoded_fails_only_its_request(exports):
    """pair_truncation="only_second" with a query longer than max_length: that /rerank gets a 422
    saying why, and the requests queued in the same model call are answered as usual."""
    from bertfast.errors import BertfastError

    long_query = " ".join(["match goal team"] * 40)  # 120 tokens > max_length 64
    with Classifier.load(exports["pair2"], device="cpu", threads=1, pair_truncation="only_second") as clf:
        with pytest.raises(BertfastError, match="no room"):
            clf.rerank(long_query, DOCS[:2])
        want = clf.predict([list(p) for p in PAIRS[:3]])
        gated = Gated(clf)
        app = build_app(_cfg(exports["pair2"], max_wait_ms=0), gated)

        async def scenario():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
                first = asyncio.create_task(c.post("/predict", json={"inputs": list(PAIRS[0])}))
                await asyncio.to_thread(gated.entered.wait, 10)
                bad = asyncio.create_task(c.post("/rerank", json={"query": long_query, "texts": DOCS[:2]}))
                good = asyncio.create_task(c.post("/classify", json={"texts": [list(p) for p in PAIRS[:3]]}))
                t = time.monotonic()
                while app.state.batcher.queued < 5:
                    assert time.monotonic() - t < 20, "requests did not queue"
                    await asyncio.sleep(0.005)
                gated.gate.set()
                return await first, await bad, await good, await c.post("/rerank", json={"query": "q", "texts": ["a"]})

        try:
            first, bad, good, after = asyncio.run(scenario())
        finally:
            app.state.batcher.close()
    assert first.status_code == 200 and after.status_code == 200
    assert bad.status_code == 422 and bad.json()["error_type"] == "validation", bad.text
    assert "cannot be encoded" in bad.json()["error"] and "only_second" in bad.json()["error"]
    assert good.status_code == 200, good.text
    for g, w in zip(good.json()["predictions"], want):
        _same_prediction(g, w)


def test_head_tail_is_refused_for_a_pair_export(exports):
    from bertfast.errors import BertfastError

    with Classifier.load(exports["pair_reg"], device="cpu", threads=1, long_text="head-tail") as clf:
        with pytest.raises(BertfastError, match="head-tail"):
            build_app(_cfg(exports["pair_reg"]), clf)
