"""`bertfast serve` has one request path: every route, hot POST routes included, passes the
middleware a user adds with `app.add_middleware`, under a mount prefix or `root_path` too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_texts

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from bertfast.errors import BertfastError  # noqa: E402
from bertfast.runtime.classifier import Classifier  # noqa: E402
from bertfast.serve import ServeConfig, build_app  # noqa: E402

TEXTS = [t for t, _ in make_texts(6, seed=11)]
POSTS = [  # (route, body) for every hot POST route
    ("/predict", {"inputs": TEXTS[0]}),
    ("/invocations", {"inputs": TEXTS[1]}),
    ("/", {"inputs": TEXTS[2]}),
    ("/classify", {"texts": TEXTS[:2]}),
    ("/rerank", {"query": "q", "texts": ["a", "b"]}),  # a classifier export: 424, from the handler
]
OK_STATUS = {"/rerank": 424}


@pytest.fixture(scope="module")
def clf(tiny_export):
    with Classifier.load(tiny_export, device="cpu", threads=1) as c:
        yield c


def _cfg(export, **kw) -> ServeConfig:
    return ServeConfig(export, **{**dict(max_inputs=8, max_queue=64, max_chars=1000, max_body_mb=1), **kw})


class Bearer:
    """Plain ASGI auth: 401 unless `authorization: Bearer secret`; records what it saw."""

    def __init__(self, app, seen: list):
        self.app, self.seen = app, seen

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.seen.append((scope["method"], scope["path"]))
        if dict(scope["headers"]).get(b"authorization") != b"Bearer secret":
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"error":"no token","error_type":"auth"}'})
            return
        await self.app(scope, receive, send)


def _secured(app, seen: list):
    app.add_middleware(Bearer, seen=seen)

    @app.middleware("http")  # Starlette's BaseHTTPMiddleware: it streams the body on to the app
    async def tag(request, call_next):
        response = await call_next(request)
        response.headers["x-served-by"] = "bertfast-test"
        return response

    return app


def test_user_middleware_runs_on_every_route(tiny_export, clf):
    seen: list = []
    app = _secured(build_app(_cfg(tiny_export), clf), seen)
    metrics = app.state.metrics
    with TestClient(app) as c:
        for route, body in POSTS:  # refused by the middleware: the handler never runs
            assert c.post(route, json=body).status_code == 401, route
        for route in ("/health", "/info", "/metrics", "/nowhere"):
            assert c.get(route).status_code == 401, route
        assert metrics.batches == 0 and 'bertfast_requests_total{route="/predict"' not in c.get("/metrics", headers=_AUTH).text
        for route, body in POSTS:
            r = c.post(route, json=body, headers=_AUTH)
            assert r.status_code == OK_STATUS.get(route, 200), (route, r.text)
            assert r.headers["x-served-by"] == "bertfast-test", route
        assert c.post("/predict", json=POSTS[0][1], headers=_AUTH).json()[0]["label"] == clf.predict(TEXTS[0])["label"]
        for route in ("/health", "/info", "/nowhere"):
            assert c.get(route, headers=_AUTH).headers["x-served-by"] == "bertfast-test", route
        big = c.post("/predict", content=b'{"inputs": "' + b"a" * (2 << 20) + b'"}', headers=_AUTH)
        assert big.status_code == 413 and big.headers["x-served-by"] == "bertfast-test"
    assert {p for _, p in seen} >= {r for r, _ in POSTS} | {"/health", "/info", "/nowhere"}


_AUTH = {"authorization": "Bearer secret"}


def test_cors_middleware_answers_preflight_and_tags_hot_routes(tiny_export, clf):
    from starlette.middleware.cors import CORSMiddleware

    app = build_app(_cfg(tiny_export), clf)
    app.add_middleware(CORSMiddleware, allow_origins=["https://a.example"], allow_methods=["POST"],
                       allow_headers=["content-type"])
    origin = {"origin": "https://a.example"}
    with TestClient(app) as c:
        pre = c.options("/predict", headers={**origin, "access-control-request-method": "POST"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://a.example"
        r = c.post("/predict", json={"inputs": TEXTS[0]}, headers=origin)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://a.example"


def test_mounted_under_a_prefix(tiny_export, clf):
    seen: list = []
    app = _secured(build_app(_cfg(tiny_export), clf), seen)
    parent = FastAPI()
    parent.mount("/api", app)
    try:
        with TestClient(parent) as c:
            want = clf.predict(TEXTS[:2])
            r = c.post("/api/predict", json={"inputs": [[t] for t in TEXTS[:2]]}, headers=_AUTH)
            assert r.status_code == 200, r.text
            assert [b[0]["label"] for b in r.json()] == [p["label"] for p in want]
            assert r.headers["x-served-by"] == "bertfast-test"
            r = c.post("/api/", json={"inputs": TEXTS[0]}, headers=_AUTH)
            assert r.status_code == 200 and r.json()[0][0]["label"] == want[0]["label"]
            r = c.post("/api/classify", json={"texts": TEXTS[:2]}, headers=_AUTH)
            assert [p["label"] for p in r.json()["predictions"]] == [p["label"] for p in want]
            assert c.post("/api/rerank", json=POSTS[4][1], headers=_AUTH).status_code == 424
            assert c.get("/api/health", headers=_AUTH).json() == {"status": "ok"}
            assert c.post("/api/predict", json={"inputs": TEXTS[0]}).status_code == 401
            assert c.post("/predict", json={"inputs": TEXTS[0]}, headers=_AUTH).status_code == 404  # the parent's
            big = c.post("/api/predict", content=b'{"inputs": "' + b"a" * (2 << 20) + b'"}', headers=_AUTH)
            assert big.status_code == 413 and "--max-body-mb" in big.json()["error"]
    finally:
        app.state.batcher.close()  # a mount does not run the child's lifespan
    assert ("POST", "/api/predict") in seen and ("GET", "/api/health") in seen


@pytest.mark.parametrize("path", ["/prefix/predict", "/predict"])
def test_root_path_with_or_without_the_prefix_in_path(tiny_export, clf, path):
    """Behind a proxy (`--root-path`): ASGI servers put the prefix in `path` (ASGI 3 spec) or
    not (older servers); the hot routes route either as FastAPI's router does."""
    app = build_app(_cfg(tiny_export), clf)
    with TestClient(app, root_path="/prefix") as c:
        r = c.post(path, json={"inputs": TEXTS[3]})
        assert r.status_code == 200, r.text
        assert r.json()[0]["label"] == clf.predict(TEXTS[3])["label"]
        assert c.get(path.replace("predict", "health")).status_code == 200


def test_wrong_method_is_405_and_the_openapi_schema_lists_the_post_routes(tiny_export, clf):
    with TestClient(build_app(_cfg(tiny_export), clf)) as c:
        r = c.get("/predict")
        assert r.status_code == 405 and set(r.json()) == {"error", "error_type"}
        assert c.get("/").json() == {"status": "ok"}  # GET / is the health route, POST / the HF route
        paths = c.get("/openapi.json").json()["paths"]
    for route in ("/predict", "/", "/classify", "/rerank"):
        assert "summary" in paths[route]["post"], route
    assert "/invocations" not in paths and "get" not in paths["/predict"]
    assert "get" in paths["/health"]


def test_one_answer_per_route_and_one_body_reader():
    """The hot routes exist once: no FastAPI twin, no second body reader."""
    import bertfast.serve as S
    from bertfast.serve import app, asgi, handlers

    sources = "".join(open(m.__file__).read() for m in (S, app, asgi, handlers))
    assert "request.stream()" not in sources and "request.body()" not in sources
    assert "@app.post" not in sources


def test_build_app_names_what_a_stand_in_lacks(tiny_export):
    class Half:
        labels = ["a", "b"]

        def encode(self, texts):
            return texts

    with pytest.raises(BertfastError, match="lacks task, pair, activation"):
        build_app(_cfg(tiny_export), Half())


def test_unknown_field_named_with_a_lone_surrogate_is_a_422(tiny_export, clf):
    """An error message that quotes the client's field name writes it as JSON escapes."""
    with TestClient(build_app(_cfg(tiny_export), clf)) as c:
        r = c.post("/predict", content=json.dumps({"inputs": "a", "\ud800x": 1}).encode(),
                   headers={"content-type": "application/json"})
        assert r.status_code == 422 and "\ud800x" in r.json()["error"], r.text
        assert np.isfinite(c.post("/predict", json={"inputs": "a"}).json()[0]["score"])
