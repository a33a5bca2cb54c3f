"""plughost's HTTP protocol (plughost.serving.protocol): the direct path that answers plain requests on
static inline routes from the parser's callback, with one C call writing the whole HTTP/1.1
response (``_fastpath.serve_raw``).

The direct path must be invisible: the same requests are sent, over raw sockets, to a server
with it and to one started with ``--no-direct-path``; statuses, header names in order, header
values and bodies must match (the Date and the generated request ids aside). Pipelined
requests keep their order when some go direct and some through ASGI; HTTP/1.0 and
``Connection: close`` go through ASGI and close; an action's upstream request started on the
direct path finishes through an ASGI cycle; failures are logged; and serve_raw is checked
in-process for what it answers and what it leaves to the ASGI path."""

from __future__ import annotations

import re
import time
import socket
from pathlib import Path
from typing import Iterator

import pytest

from gateway_support import both_paths, Server, UpstreamServer, write_config

EXTRA_ROUTES = """\
  Proxied:
    gatewayPath: /proxied
    methods: [GET]
    middlewares: [A]
    action: Forward
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture(scope="module")
def config(
    tmp_path_factory: pytest.TempPathFactory, test_plugin_dir: Path, upstream: UpstreamServer
) -> Path:
    return write_config(
        tmp_path_factory.mktemp("protocol") / "config",
        test_plugin_dir,
        upstream=upstream.url,
        extra_routes=EXTRA_ROUTES,
    )


@pytest.fixture(scope="module")
def servers(config: Path) -> Iterator[tuple[Server, Server]]:
    with both_paths(config) as servers:
        yield servers


def exchange(
    port: int, data: bytes, count: int
) -> list[tuple[bytes, list[tuple[bytes, bytes]], bytes]]:
    """Sends ``data`` on one connection and reads ``count`` responses:
    (status line, [(name, value)], body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        buf = b""
        out = []
        for _ in range(count):
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                assert chunk, f"connection closed after {len(out)} responses: {buf!r}"
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            status, *lines = head.split(b"\r\n")
            headers = [tuple(line.split(b": ", 1)) for line in lines]
            length = int(dict(headers).get(b"content-length", b"0"))  # type: ignore[arg-type]
            if b"HEAD" in data.split(b" ", 1)[0] and count == 1:
                length = 0
            while len(buf) < length:
                chunk = sock.recv(65536)
                assert chunk, "connection closed inside a body"
                buf += chunk
            out.append((status, headers, buf[:length]))  # type: ignore[arg-type]
            buf = buf[length:]
        return out


def normalised(response: tuple[bytes, list[tuple[bytes, bytes]], bytes]) -> tuple:
    status, headers, body = response
    rid = dict(headers).get(b"x-request-id", b"")
    keep = [
        (k, b"<date>" if k == b"date" else b"<id>" if k == b"x-request-id" else v)
        for k, v in headers
    ]
    return status, keep, body.replace(rid, b"<id>") if rid else body


REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /traced?a=1&b=%2F HTTP/1.1\r\nHost: t\r\nX-Request-ID: fixed-id\r\n\r\n",
    b"GET /users/42 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /early HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /broken HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /broken-response HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /TRACED HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    b"GET /blocking HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /proxied?x=%2F HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /files/a/b.txt?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /files/a/../b HTTP/1.1\r\nHost: t\r\n\r\n",
    b"HEAD /users/7 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /users/7 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /proxy/item?q=2 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /users/42#fragment HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /traced#f?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /files/a?q=1#frag HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /files/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /traced?" + b"q" * 100_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", REQUESTS, ids=lambda r: r.split(b"\r\n")[0].decode()[:60])
def test_the_direct_path_answers_as_the_asgi_path(
    servers: tuple[Server, Server], request_bytes: bytes
) -> None:
    direct, asgi = servers
    mine = exchange(direct.port, request_bytes, 1)[0]
    theirs = exchange(asgi.port, request_bytes, 1)[0]
    assert normalised(mine) == normalised(theirs)
    assert mine[1][0][0] == b"date"  # the server's Date header first, as uvicorn writes it


def test_head_has_the_length_but_no_body(servers: tuple[Server, Server]) -> None:
    direct, asgi = servers
    for server in servers:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
            data = b""
            while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"hello"):
                chunk = sock.recv(65536)
                assert chunk
                data += chunk
        first, second = data.split(b"HTTP/1.1 200 OK", 2)[1:]
        assert b"content-length: 5\r\n" in first and first.endswith(b"\r\n\r\n")
        assert second.endswith(b"\r\n\r\nhello")


def test_pipelined_requests_keep_their_order(servers: tuple[Server, Server]) -> None:
    direct, _ = servers
    batch = (
        b"GET /traced?n=1 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /traced?n=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /proxied?n=3 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /traced?n=4 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /blocking?n=5 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    got = exchange(direct.port, batch, 6)
    assert [r[0] for r in got] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 201 Created",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
    ]
    assert b"n=1" in got[0][2] and b"n=2" in got[1][2] and b"body=abc" in got[1][2]
    assert b'"path": "/proxied?n=3"' in got[2][2]
    assert b"n=4" in got[3][2] and b"n=5" in got[4][2] and got[5][2] == b"hello"


def test_many_requests_on_one_connection(servers: tuple[Server, Server]) -> None:
    direct, _ = servers
    got = exchange(direct.port, b"GET /traced HTTP/1.1\r\nHost: t\r\n\r\n" * 200, 200)
    assert len({dict(h)[b"x-request-id"] for _, h, _ in got}) == 200  # each its own chain run


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ],
)
def test_closing_requests(servers: tuple[Server, Server], request_bytes: bytes) -> None:
    direct, _ = servers
    with socket.create_connection(("127.0.0.1", direct.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        data = b""
        while chunk := sock.recv(65536):  # the server closes the connection
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"\r\n\r\nhello")
    assert b"connection: close" in data.lower()


def test_a_failure_on_the_direct_path_is_logged(servers: tuple[Server, Server]) -> None:
    direct, _ = servers
    status, headers, body = exchange(direct.port, REQUESTS[4], 1)[0]
    assert status == b"HTTP/1.1 500 Internal Server Error"
    rid = dict(headers)[b"x-request-id"].decode()
    assert rid in body.decode()
    # Logged when the direct path first met it (an earlier test sent the same request):
    # repeats within 10 s are held back and summarised (plughost.serving.logflood).
    out = direct.output_after(0, "trace FailRequest was told to fail")
    assert re.search(
        r"route Broken: .*FailRequest.* failed: trace FailRequest was told to fail", out
    ), out
    assert direct.alive()


def test_serve_raw_in_process(config: Path) -> None:
    from plughost import Gateway
    from plughost.asgi import GatewayApp
    from plughost.proxy.pending import PendingUpstream

    with Gateway.from_config(config) as gateway:
        app = GatewayApp(gateway=gateway)
        raw = app.raw_handler()
        assert raw is not None and raw == gateway.pipeline.plain
        date = b"date: Wed, 25 Nov 2026 10:00:00 GMT\r\n"
        data = raw(b"GET", b"/traced?q=1", [(b"x-request-id", b"abc")], "10.0.0.1", date)
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK" and lines[1] + b"\r\n" == date
        assert b"x-request-id: abc" in lines and f"content-length: {len(body)}".encode() in lines
        assert body.startswith(b"GET /traced q=1 trace=A,B") and body.endswith(b"ip=10.0.0.1")
        head_only = raw(b"HEAD", b"/", [], None, b"")
        assert head_only.endswith(b"content-length: 5\r\n\r\n")
        # left to the pipeline's Python steps (the ASGI path)
        for method, target, headers in [
            (b"GET", b"/tra%63ed", []),  # needs decoding
            (b"POST", b"/traced", [(b"content-length", b"3")]),  # a body
            (b"GET", b"/traced", [(b"transfer-encoding", b"chunked")]),
            (b"GET", b"/nowhere", []),  # no route
            (b"GET", b"/health/live", []),  # a health route
            (b"GET", b"/blocking", []),  # a may-block chain
            (b"GET", "/caf\u00e9".encode(), []),  # not ASCII
            (b"GET", b"*", []),  # not a path
            (b"GET", b"/users/4%32", []),
            (b"POST", b"/users/1", []),  # %, 405
            (b"GET", b"/nowhere/x", []),
            (b"GET", b"/health/ready", []),
            (b"GET", b"/files/x", [(b"content-length", b"1")]),
        ]:
            assert raw(method, target, headers, None, b"") is None, target
        pending = raw(b"GET", b"/proxied", [], "127.0.0.1", b"")
        assert type(pending) is PendingUpstream and pending.chain.route_name == "Proxied"
        pending.discard()
        # routes with parameters: routed in Python, then the same one C call
        data = raw(b"GET", b"/users/42?x=1", [], "10.0.0.2", date)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n" + date)
        assert data.endswith(b"ip=10.0.0.2") and b"GET /users/42 x=1" in data and b"id=42" in data
        assert b"rest=a/b.txt" in raw(b"GET", b"/files/a/b.txt", [], None, b"")
        assert raw(b"HEAD", b"/users/1", [], None, b"").endswith(b"\r\n\r\n")
        pending = raw(b"GET", b"/proxy/x", [], None, b"")
        assert type(pending) is PendingUpstream and pending.chain.route_name == "Proxy"
        pending.discard()


def test_keep_alive_connections_close_after_the_idle_timeout(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """One timer per connection keeps server.idleTimeout: a connection idle that long is
    closed, one in use is not, whichever path answered its requests."""
    folder = write_config(tmp_path / "config", test_plugin_dir)
    (folder / "server.yaml").write_text("server:\n  idleTimeout: 1s\n")
    request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    with Server("--config", str(folder)) as server:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as busy,
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle,
        ):
            idle.sendall(request)
            assert idle.recv(65536).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            while time.monotonic() - started < 2.5:  # busy: a request every 0.3 s
                busy.sendall(request)
                assert busy.recv(65536).startswith(b"HTTP/1.1 200")
                time.sleep(0.3)
            assert idle.recv(65536) == b""  # closed by the server after 1 s idle
            busy.sendall(request)
            assert busy.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(1.6)
            assert busy.recv(65536) == b""


WILDCARD_ROUTES = """\
routes:
  Api:
    gatewayPath: /api/*
    methods: [GET]
    action: Echo
  ApiV2:
    gatewayPath: /api/v2/*
    methods: [GET, POST]
    action: Echo
  Items:
    gatewayPath: /api/items
    methods: [GET]
    action: Hello
  Root:
    gatewayPath: /*
    methods: [GET]
    action: Echo
  Slow:
    gatewayPath: /slow
    methods: [GET]
    middlewares: [Blocking]
    action: Echo
"""

WILDCARD_REQUESTS = [
    b"/api/a/b?x=1",
    b"/api/v2/c",
    b"/API/V2/Mixed/Case",
    b"/api",
    b"/api/v2",
    b"/api/items",
    b"/api/items/more",
    b"/",
    b"/elsewhere/x",
    b"/api/a/",
    b"/api//a",
    b"/api/a/../b",
    b"/slow",
]


@pytest.fixture(scope="module")
def wildcard_servers(
    tmp_path_factory: pytest.TempPathFactory, test_plugin_dir: Path
) -> Iterator[tuple[Server, Server]]:
    folder = write_config(tmp_path_factory.mktemp("wildcards") / "config", test_plugin_dir)
    (folder / "routes.yaml").write_text(WILDCARD_ROUTES)
    with both_paths(folder) as servers:
        yield servers


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"POST"])
def test_wildcard_routes_answer_alike_on_both_paths(
    wildcard_servers: tuple[Server, Server], method: bytes
) -> None:
    """Without ':param' routes the direct path routes "/prefix/*" in C (the longest prefix
    that has a wildcard route, as the router): the same answers as the ASGI path, 405s and
    the root wildcard included."""
    direct, asgi = wildcard_servers
    for target in WILDCARD_REQUESTS:
        request = b"%s %s HTTP/1.1\r\nHost: t\r\n\r\n" % (method, target)
        mine = exchange(direct.port, request, 1)[0]
        theirs = exchange(asgi.port, request, 1)[0]
        assert normalised(mine) == normalised(theirs), target


def test_serve_raw_routes_wildcards_in_c(tmp_path: Path, test_plugin_dir: Path) -> None:
    from plughost import Gateway, _fastpath

    folder = write_config(tmp_path / "config", test_plugin_dir)
    (folder / "routes.yaml").write_text(WILDCARD_ROUTES)
    with Gateway.from_config(folder) as gateway:
        native = gateway.pipeline.native
        assert native is not None

        def raw(method: bytes, target: bytes) -> bytes | None:
            return _fastpath.serve_raw(native, method, target, [], None, b"")

        assert b"rest=x/y" in raw(b"GET", b"/API/v2/x/y?q=1")  # the ApiV2 route
        assert b"rest=zzz" in raw(b"GET", b"/zzz")  # the Root route
        assert raw(b"POST", b"/api/a") is None  # 405: the Python steps say so
        # a static route that may block takes precedence over "/*": the worker-thread path
        assert raw(b"GET", b"/slow") is None
        # not plain for prefix_hit (a trailing slash): the Python router's answer
        assert b"rest=a route=Api " in raw(b"GET", b"/api/a/")
    (folder / "routes.yaml").write_text(
        WILDCARD_ROUTES
        + """\
  User:
    gatewayPath: /api/users/:id
    methods: [GET]
    action: Echo
"""
    )
    with Gateway.from_config(folder) as gateway:  # a ':param' route: the router decides
        assert gateway.routes.prefixes == {}
        native = gateway.pipeline.native
        assert b"rest=a route=Api " in _fastpath.serve_raw(native, b"GET", b"/api/a", [], None, b"")
        assert b"id=7 rest= route=User " in _fastpath.serve_raw(
            native, b"GET", b"/api/users/7", [], None, b""
        )
