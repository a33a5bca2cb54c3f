"""The comparison applications bench/http_throughput.py serves with uvicorn.

``bare``       a raw ASGI callable answering 200 text/plain HELLO_BODY;
``starlette``  a Starlette app answering the same through five pure-ASGI middlewares that
               do in Python what plughost's native chain does in C: a request id
               (requestid's rules: keep a sane incoming X-Request-ID, else a UUIDv4; put it
               in the request header, the per-request state and the response header) and
               four trace middlewares (append the name to the request header X-Trace and,
               on the way back, to the response header X-Trace-Response).

``starlette_proxy``
               bench/realistic_chain.py's comparison: requestid, an access log written by a
               background thread, Starlette's CORSMiddleware, Seam's default security
               headers and an HS256 JWT check (PyJWT), then the request forwarded to
               $BENCH_UPSTREAM with a pooled aiohttp client (hop-by-hop headers dropped,
               X-Forwarded-* added), as plughost's chain does with its native plugins.

Run as ``uvicorn _apps:bare --app-dir bench`` (or ``_apps:starlette``).
"""

from __future__ import annotations

import uuid
from typing import Any, Awaitable, Callable

from _common import HELLO_BODY

from plughost.proxy.message import HOP_BY_HOP as PROXY_HOP_BY_HOP

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
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def _sane(value: bytes) -> bool:
    """requestid's rule: 1..200 printable ASCII characters, no leading/trailing space."""
    return (
        0 < len(value) <= 200
        and value[:1] != b" "
        and value[-1:] != b" "
        and all(0x20 <= c <= 0x7E for c in value)
    )


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

    def __init__(
        self, app: ASGIApp, header: str = "x-request-id", context_key: str = "requestId"
    ) -> None:
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

    return Starlette(
        routes=[Route("/", hello, methods=["GET"])],
        middleware=[
            Middleware(RequestIdMiddleware),
            *(Middleware(TraceMiddleware, name=n) for n in TRACE_NAMES),
        ],
    )


#: Seam's default HelmetMiddleware headers (docs/plugins/helmet.md), as plughost sends them.
HELMET = [
    (b"x-xss-protection", b"0"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"origin-agent-cluster", b"?1"),
    (b"x-dns-prefetch-control", b"off"),
    (b"x-download-options", b"noopen"),
    (b"x-permitted-cross-domain-policies", b"none"),
]
JWT_SECRET = "bench-secret-0123456789abcdef0123"
ORIGIN = "https://app.example"
#: Headers not copied between client and upstream: plughost's hop-by-hop set, and the two
#: the proxy writes itself (the upstream's Host, the body's Content-Length).
HOP_BY_HOP = PROXY_HOP_BY_HOP | {b"host", b"content-length"}


class AccessLogMiddleware:
    """Pure ASGI: one line per request (pid, time, status, latency, ip, method, path) handed
    to a background writer thread, as plughost's logger does."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        import logging
        import logging.handlers
        import queue

        self.app = app
        records: queue.Queue[Any] = queue.Queue(10000)
        self.log = logging.getLogger("bench.access")
        self.log.propagate = False
        self.log.addHandler(logging.handlers.QueueHandler(records))
        self.log.setLevel(logging.INFO)
        handler = logging.FileHandler(path)
        self.listener = logging.handlers.QueueListener(records, handler)
        self.listener.start()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        import os
        import time

        start = time.perf_counter()
        status = 0

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, send_logged)
        self.log.info(
            "%d | %s | %d | %.3fms | %s | %s | %s",
            os.getpid(),
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            status,
            (time.perf_counter() - start) * 1000,
            scope["client"][0],
            scope["method"],
            scope["path"],
        )


class HelmetMiddleware:
    """Pure ASGI: Seam's default security headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HELMET]
            await send(message)

        await self.app(scope, receive, send_secured)


class JWTMiddleware:
    """Pure ASGI: Authorization: Bearer <HS256 token> verified with PyJWT (exp checked),
    the claims kept in scope["state"]; 401 otherwise."""

    def __init__(self, app: ASGIApp) -> None:
        import jwt

        self.app = app
        self.decode = jwt.decode
        self.error = jwt.PyJWTError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/ready":
            return await self.app(scope, receive, send)
        auth = _get(scope["headers"], b"authorization") or b""
        try:
            if not auth.startswith(b"Bearer "):
                raise ValueError("no bearer token")
            claims = self.decode(auth[7:].decode(), JWT_SECRET, algorithms=["HS256"])
        except (ValueError, self.error):
            body = b'{"error":"unauthorized","status":401}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["claims"] = claims
        await self.app(scope, receive, send)


def _make_starlette_proxy() -> Any:
    import os

    import aiohttp
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    upstream = os.environ["BENCH_UPSTREAM"].rstrip("/")
    session: dict[str, aiohttp.ClientSession] = {}

    async def forward(request: Request) -> Response:
        client = session.get("s")
        if client is None:
            client = session["s"] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256),
                auto_decompress=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            )
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in request.scope["headers"]
            if k not in HOP_BY_HOP
        ]
        peer = request.client.host if request.client else ""
        headers += [
            ("X-Forwarded-For", peer),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", request.headers.get("host", "")),
        ]
        url = upstream + "/" + request.path_params.get("rest", "")
        if request.url.query:
            url += "?" + request.url.query
        async with client.request(
            request.method, url, headers=headers, data=await request.body() or None
        ) as resp:
            body = await resp.read()
            out = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in resp.raw_headers
                if k.lower() not in HOP_BY_HOP
            ]
        response = Response(body, status_code=resp.status)
        response.raw_headers = [(k.lower().encode(), v.encode()) for k, v in out] + [
            (b"content-length", str(len(body)).encode())
        ]
        return response

    async def ready(request: Request) -> Response:
        return Response(b"ready")

    log_path = os.environ.get("BENCH_ACCESS_LOG", os.devnull)
    return Starlette(
        routes=[
            Route("/api/{rest:path}", forward, methods=["GET", "POST"]),
            Route("/ready", ready),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(AccessLogMiddleware, path=log_path),
            Middleware(CORSMiddleware, allow_origins=[ORIGIN]),
            Middleware(HelmetMiddleware),
            Middleware(JWTMiddleware),
        ],
    )


_BUILDERS = {"starlette": _make_starlette, "starlette_proxy": _make_starlette_proxy}


def __getattr__(name: str) -> Any:  # built on first use: importing _apps needs no Starlette
    if name in _BUILDERS:
        app = _BUILDERS[name]()
        globals()[name] = app
        return app
    raise AttributeError(name)
