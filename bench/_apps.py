"""The comparison applications bench/http_throughput.py serves with uvicorn.

``bare``       a raw ASGI callable answering 200 text/plain HELLO_BODY;
``starlette``  a Starlette app answering the same through five pure-ASGI middlewares that
               do in Python what plughost's native chain does in C: a request id
               (requestid's rules: keep a sane incoming X-Request-ID, else a UUIDv4; put it
               in the request header, the per-request state and the response header) and
               four trace middlewares (append the name to the request header X-Trace and,
               on the way back, to the response header X-Trace-Response).

Run as ``uvicorn _apps:bare --app-dir bench`` (or ``_apps:starlette``).
"""

from __future__ import annotations

import uuid
from typing import Any, Awaitable, Callable

from _common import HELLO_BODY

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY = HELLO_BODY.encode()
TRACE_NAMES = ("T1", "T2", "T3", "T4")


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    """Hello world, nothing else (lifespan messages are acknowledged)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def _sane(value: bytes) -> bool:
    """requestid's rule: 1..200 printable ASCII characters, no leading/trailing space."""
    return (0 < len(value) <= 200 and value[:1] != b" " and value[-1:] != b" "
            and all(0x20 <= c <= 0x7E for c in value))


def _set(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes) -> None:
    """Replaces the first ``name`` header (lower-case) in place or appends it."""
    for i, (key, _) in enumerate(headers):
        if key == name:
            headers[i] = (name, value)
            return
    headers.append((name, value))


def _get(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


class RequestIdMiddleware:
    """Pure ASGI: X-Request-ID on the request, in scope["state"] and on the response."""

    def __init__(self, app: ASGIApp, header: str = "x-request-id",
                 context_key: str = "requestId") -> None:
        self.app = app
        self.header = header.lower().encode()
        self.context_key = context_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = list(scope["headers"])
        rid = _get(headers, self.header)
        if rid is None or not _sane(rid):
            rid = str(uuid.uuid4()).encode()
            _set(headers, self.header, rid)
        scope["headers"] = headers
        scope.setdefault("state", {})[self.context_key] = rid.decode()
        name = self.header

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = list(message.get("headers", []))
                _set(out, name, rid)
                message["headers"] = out
            await send(message)

        await self.app(scope, receive, send_with_id)


class TraceMiddleware:
    """Pure ASGI: appends ``name`` to X-Trace (request) and X-Trace-Response (response)."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = list(scope["headers"])
        old = _get(headers, b"x-trace")
        _set(headers, b"x-trace", old + b"," + self.name if old else self.name)
        scope["headers"] = headers
        me = self.name

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = list(message.get("headers", []))
                prev = _get(out, b"x-trace-response")
                _set(out, b"x-trace-response", prev + b"," + me if prev else me)
                message["headers"] = out
            await send(message)

        await self.app(scope, receive, send_traced)


def _make_starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def hello(request: Request) -> Response:
        return Response(BODY, headers={"content-type": "text/plain"})

    return Starlette(routes=[Route("/", hello, methods=["GET"])],
                     middleware=[Middleware(RequestIdMiddleware),
                                 *(Middleware(TraceMiddleware, name=n) for n in TRACE_NAMES)])


def __getattr__(name: str) -> Any:  # built on first use: importing _apps needs no Starlette
    if name == "starlette":
        app = _make_starlette()
        globals()["starlette"] = app
        return app
    raise AttributeError(name)
