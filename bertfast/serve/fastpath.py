"""The POST routes as plain ASGI, in front of FastAPI.

Measured on 2 cores with one headline per request: bare uvicorn costs ~0.06 ms of CPU per
request, while FastAPI's routing, dependency solving, `Request`/`Response` objects and
exception middleware cost several times more, on the same cores the model needs (a headline is
~2.5 ms of model time per core). So `POST /predict`, `/`, `/invocations`, `/classify` and
`/rerank` are answered here, straight from the ASGI messages, by the same handlers FastAPI's
routes call; everything else (GET routes, `/docs`, 404/405) goes on to FastAPI. The routes stay
declared in FastAPI too, for the OpenAPI schema and for hosts that mount the FastAPI app
without its middleware.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from .schemas import ApiError

# A handler takes a body reader and returns (status, JSON body bytes, extra headers).
Reader = Callable[[], Awaitable[bytes]]
Handler = Callable[[Reader], Awaitable[tuple[int, bytes, dict]]]


def dumps(obj) -> bytes:
    """JSON as Starlette's JSONResponse renders it (UTF-8, compact, no NaN)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


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


class FastPath:
    """ASGI middleware: `POST path` in `handlers` is answered here; anything else goes to `app`."""

    def __init__(self, app, handlers: dict[str, Handler], max_body_bytes: int):
        self.app, self.handlers, self.limit = app, handlers, max_body_bytes

    async def __call__(self, scope, receive, send):
        handler = self.handlers.get(scope.get("path")) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        status, body, headers = await handler(lambda: read_body(scope, receive, self.limit))
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
