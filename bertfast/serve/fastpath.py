"""The POST routes as plain ASGI, ahead of FastAPI's whole stack.

Measured on 2 cores with one headline per request: bare uvicorn costs ~0.06 ms of CPU per
request, while FastAPI's routing, dependency solving, `Request`/`Response` objects, its
middleware (error handling, body limit, telemetry checks that read the environment on every
request) cost several times more, on the same cores the model needs (a headline is ~2.5 ms
of model time per core). So `POST /predict`, `/`, `/invocations`, `/classify` and `/rerank`
are answered here, straight from the ASGI messages, by the same handlers FastAPI's routes
call, before FastAPI sees the request (`FastPathAPI.__call__`); everything else (GET routes,
`/docs`, 404/405) goes to FastAPI. The routes stay declared in FastAPI too, for the OpenAPI
schema. The app is still a FastAPI (Ray Serve's ingress and mounting hosts expect one).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from .schemas import ApiError

# A handler takes a body reader and returns (status, JSON body bytes, extra headers).
Reader = Callable[[], Awaitable[bytes]]
Handler = Callable[[Reader], Awaitable[tuple[int, bytes, dict]]]


# One encoder for every response: json.dumps with any non-default argument builds a new one
# per call, a measurable share of a small response's cost.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps(obj) -> bytes:
    """JSON as Starlette's JSONResponse renders it (UTF-8, compact, no NaN)."""
    return _ENCODER.encode(obj).encode("utf-8")


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


async def answer(handler: Handler, scope: dict, receive, send, limit: int) -> None:
    """Answer one request with `handler`, straight on the ASGI messages."""
    status, body, headers = await handler(lambda: read_body(scope, receive, limit))
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class FastPathAPI(FastAPI):
    """A FastAPI app whose hot POST routes (`fast_routes`: path -> handler) are answered before
    FastAPI's stack runs; every other request goes through FastAPI as usual."""

    fast_routes: dict[str, Handler] = {}
    fast_limit: int = 0  # request body bytes (--max-body-mb)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.fast_routes.get(scope["path"])
            if handler is not None:
                await answer(handler, scope, receive, send, self.fast_limit)
                return
        await super().__call__(scope, receive, send)
