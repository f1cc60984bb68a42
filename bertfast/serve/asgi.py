"""One request path: the hot POST routes as plain ASGI, innermost in the app's middleware stack.

Measured on 2 cores with one headline per request: bare uvicorn costs ~0.06 ms of CPU per
request, while FastAPI's routing, dependency solving and `Request`/`Response` objects cost
several times more, on the same cores the model needs (a headline is ~2.5 ms of model time per
core). So `POST /predict`, `/`, `/invocations`, `/classify` and `/rerank` are answered straight
from the ASGI messages by `HotRoutes`, a layer that `ServeAPI` puts innermost in its middleware
stack, inside every middleware a user adds with `app.add_middleware` (auth, CORS, tracing) and
inside FastAPI's own outer layers (server errors, telemetry, body limit). Every route thus
passes the same layers, as text-embeddings-inference's router puts the same layers on every
route; only the dispatch after them is lean. Everything else (GET routes, `/docs`, 404/405)
goes on to FastAPI's exception handling and router as usual. The app is still a FastAPI (Ray
Serve's ingress and mounting hosts expect one).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.routing import Route

from .schemas import ApiError

# A handler takes a body reader and returns (status, JSON body bytes, extra headers).
Reader = Callable[[], Awaitable[bytes]]
Handler = Callable[[Reader], Awaitable[tuple[int, bytes, dict]]]

# One encoder for every response: json.dumps with any non-default argument builds a new one
# per call, a measurable share of a small response's cost.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_ASCII = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def dumps(obj) -> bytes:
    """JSON as Starlette's JSONResponse renders it (UTF-8, compact, no NaN)."""
    text = _ENCODER.encode(obj)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (e.g. an unknown field's name): \\u escapes are valid JSON
        return _ASCII.encode(obj).encode("ascii")


def route_path(scope: dict) -> str:
    """The path the app routes on: without the prefix it is mounted under (`root_path`), as
    Starlette's router reads it (`starlette._utils.get_route_path`, private, hence a copy)."""
    path, root = scope["path"], scope.get("root_path")
    if not root or not path.startswith(root):
        return path
    rest = path[len(root):]
    return rest if not rest or rest[0] == "/" else path


async def read_body(scope: dict, receive, limit: int) -> bytes:
    """The request body from ASGI `receive`, refused with 413 once it passes `limit` bytes."""
    for name, value in scope.get("headers") or ():
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise ApiError(413, f"body has {int(value):,} bytes; the limit is {limit:,} (--max-body-mb).")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body is over {limit:,} bytes (--max-body-mb).")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class Answer:
    """One POST route as an ASGI app: its handler's answer, straight on the ASGI messages."""

    def __init__(self, handler: Handler, limit: int):
        self.handler, self.limit = handler, limit

    async def __call__(self, scope, receive, send) -> None:
        status, body, headers = await self.handler(lambda: read_body(scope, receive, self.limit))
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class PostRoute:
    """A hot POST route: its handler and its line in the OpenAPI schema."""

    handler: Handler
    summary: str
    in_schema: bool = True


class HotRoutes:
    """The innermost middleware: answers POSTs to the hot routes, passes the rest on."""

    def __init__(self, app, routes: dict[str, Answer]):
        self.app, self.routes = app, routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            answer = self.routes.get(route_path(scope))
            if answer is not None:
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ServeAPI(FastAPI):
    """A FastAPI app whose hot POST routes (`post_routes`) are answered by `HotRoutes`, inside
    every middleware (`add_middleware` always adds outside it).

    Args:
        post_routes: path -> `PostRoute`.
        body_limit: most request body bytes a hot route reads (413 beyond).
        **kwargs: FastAPI's.
    """

    def __init__(self, post_routes: dict[str, PostRoute], body_limit: int, **kwargs):
        super().__init__(**kwargs)
        self.post_routes = post_routes
        self._answers = {path: Answer(r.handler, body_limit) for path, r in post_routes.items()}
        for path, answer in self._answers.items():
            # In the router too, only so that another method gets FastAPI's 405 (POSTs stop earlier).
            self.router.routes.append(Route(path, answer, methods=["POST"], include_in_schema=False))

    def build_middleware_stack(self):
        # Appended for the build only: the user's list stays theirs, and HotRoutes stays
        # innermost whatever was added or inserted before the first request.
        user = self.user_middleware
        self.user_middleware = [*user, Middleware(HotRoutes, routes=self._answers)]
        try:
            return super().build_middleware_stack()
        finally:
            self.user_middleware = user

    def openapi(self) -> dict:
        if self.openapi_schema is None:
            paths = super().openapi().setdefault("paths", {})
            for path, r in self.post_routes.items():
                if r.in_schema:
                    paths.setdefault(path, {})["post"] = {
                        "summary": r.summary, "operationId": f"post_{path.strip('/') or 'root'}",
                        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                        "responses": {"200": {"description": "JSON answer (errors: {\"error\", \"error_type\"})"}},
                    }
        return self.openapi_schema
