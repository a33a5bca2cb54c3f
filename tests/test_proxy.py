"""Proxied requests end to end: ``plughost serve`` (with and without the direct path) in front
of a real upstream over loopback that records every request it receives whole, byte for
byte. A client that vanishes mid-body, ``Expect: 100-continue``, one ``Date``, pipelining,
an upstream that dies or stalls, and the same bytes from both paths."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from gateway_support import Server, recv_head, write_config
from test_protocol import exchange, normalised

ROUTES = """\
  Api:
    gatewayPath: /api/*
    methods: [GET, POST, PUT, HEAD]
    middlewares: [A]
    action: Api
"""


class _Recorder(socketserver.BaseRequestHandler):
    """Reads HTTP/1.1 requests (Content-Length or chunked bodies) and answers each one;
    only a request received whole is recorded. Paths pick the behaviour."""

    server: "RecordingUpstream"

    def handle(self) -> None:
        sock: socket.socket = self.request
        buf = b""
        self.server.connections += 1
        while True:
            got = recv_head(sock, buf)
            if got is None:
                return
            head, buf = got
            lines = head.decode("latin-1").split("\r\n")
            headers = [tuple(x.split(": ", 1)) for x in lines[1:]]
            names = {k.lower(): v for k, v in headers}
            body = b""
            if "content-length" in names:
                need = int(names["content-length"])
                while len(buf) < need:
                    data = sock.recv(65536)
                    if not data:
                        return  # never whole: not recorded
                    buf += data
                body, buf = buf[:need], buf[need:]
            elif names.get("transfer-encoding") == "chunked":
                while not (buf.endswith(b"0\r\n\r\n") and b"\r\n0\r\n\r\n" in b"\r\n" + buf):
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf, b""
            path = lines[0].split(" ")[1]
            self.server.seen.append((lines[0], headers, body))
            if path.startswith("/api/die"):
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                return
            if path.startswith("/api/stall"):
                time.sleep(2)
                return
            payload = b"upstream saw %d bytes" % len(body)
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 2015 00:00:00 GMT\r\n"
                b"Content-Type: text/plain\r\nX-Upstream: yes\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
            )


class RecordingUpstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.seen: list[tuple[str, list, bytes]] = []
        self.connections = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    server = RecordingUpstream()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, test_plugin_dir: Path, upstream: RecordingUpstream
) -> Iterator[tuple[Server, Server]]:
    folder = write_config(
        tmp_path_factory.mktemp("proxy") / "config", test_plugin_dir, extra_routes=ROUTES
    )
    (folder / "actions.yaml").write_text(
        (folder / "actions.yaml").read_text()
        + f"""\
  Api:
    use: plugins.trace.actions.ForwardAction
    config:
      url: {upstream.url}
      timeout: 1s
"""
    )
    with (
        Server("--config", str(folder)) as direct,
        Server("--config", str(folder), "--no-direct-path") as asgi,
    ):
        yield direct, asgi


def both(servers: tuple[Server, Server]) -> list[Server]:
    return list(servers)


@pytest.mark.parametrize("which", [0, 1], ids=["direct", "asgi"])
def test_one_date_and_the_upstreams_answer(
    servers: tuple[Server, Server], upstream: RecordingUpstream, which: int
) -> None:
    port = servers[which].port
    status, headers, body = exchange(port, b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n", 1)[0]
    assert status == b"HTTP/1.1 200 OK" and body == b"upstream saw 0 bytes"
    names = [k for k, _ in headers]
    assert names.count(b"date") == 1 and b"2015" not in dict(headers)[b"date"]
    assert (b"x-upstream", b"yes") in headers and b"x-request-id" in names


def test_both_paths_answer_proxied_requests_alike(servers: tuple[Server, Server]) -> None:
    for request in (
        b"GET /api/a?b=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"HEAD /api/a HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /api/die HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /api/p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
    ):
        mine, theirs = (exchange(s.port, request, 1)[0] for s in servers)
        assert normalised(mine) == normalised(theirs), request


@pytest.mark.parametrize("which", [0, 1], ids=["direct", "asgi"])
def test_expect_100_continue_is_answered_by_the_gateway(
    servers: tuple[Server, Server], upstream: RecordingUpstream, which: int
) -> None:
    before = len(upstream.seen)
    with socket.create_connection(("127.0.0.1", servers[which].port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        answer = b""
        while not answer.endswith(b"bytes"):
            data = sock.recv(65536)
            assert data, answer
            answer += data
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"upstream saw 5 bytes")
    line, headers, body = upstream.seen[before]
    assert body == b"hello" and not any(k.lower() == "expect" for k, _ in headers)


@pytest.mark.parametrize("which", [0, 1], ids=["direct", "asgi"])
@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 100000\r\n", b"Transfer-Encoding: chunked\r\n"],
    ids=["length", "chunked"],
)
def test_a_client_vanishing_mid_body_forwards_nothing(
    servers: tuple[Server, Server], upstream: RecordingUpstream, which: int, framing: bytes
) -> None:
    server = servers[which]
    before = len(upstream.seen)
    piece = b"x" * 5000 if b"Length" in framing else b"1388\r\n" + b"x" * 5000 + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/truncated HTTP/1.1\r\nHost: t\r\n" + framing + b"\r\n" + piece)
        time.sleep(0.3)
    time.sleep(0.5)
    assert len(upstream.seen) == before, upstream.seen[before:]
    assert server.get("/api/after")[0] == 200  # and the gateway goes on serving


def test_pipelined_proxied_requests_keep_their_order(servers: tuple[Server, Server]) -> None:
    data = (
        b"".join(b"GET /api/n%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(5))
        + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    for server in servers:
        answers = exchange(server.port, data, 6)
        assert [a[2] for a in answers] == [b"upstream saw 0 bytes"] * 5 + [b"hello"]


@pytest.mark.parametrize("which", [0, 1], ids=["direct", "asgi"])
def test_a_dying_or_stalling_upstream(servers: tuple[Server, Server], which: int) -> None:
    server = servers[which]
    status, _, body = server.get("/api/die")
    assert status == 502 and b'"status":502' in body
    start = len(server.output())
    status, _, body = server.get("/api/stall")
    assert status == 504 and b'"status":504' in body
    assert "did not answer within 1 s" in server.output_after(start, "within 1 s")


def test_a_client_leaving_during_the_upstream_call_closes_it(
    servers: tuple[Server, Server], upstream: RecordingUpstream
) -> None:
    direct = servers[0]
    with socket.create_connection(("127.0.0.1", direct.port), timeout=10) as sock:
        sock.sendall(b"GET /api/stall HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.2)
    time.sleep(0.3)
    assert direct.alive() and direct.get("/api/ok")[0] == 200


def test_both_paths_send_the_upstream_the_same_request(
    servers: tuple[Server, Server], upstream: RecordingUpstream
) -> None:
    request = (
        b"GET /api/same?q=%2F&r=1 HTTP/1.1\r\nHost: client.example\r\n"
        b"Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\n"
        b"TE: trailers\r\nProxy-Authorization: Basic eA==\r\nX-Keep: 1\r\n"
        b"X-Keep: 2\r\nX-Request-ID: fixed\r\n\r\n"
    )
    heads = []
    for server in servers:
        before = len(upstream.seen)
        assert exchange(server.port, request, 1)[0][0] == b"HTTP/1.1 200 OK"
        upstream.wait_for(before + 1)
        heads.append(upstream.seen[before][:2])
    assert heads[0] == heads[1]
    line, headers = heads[0]
    assert line == "GET /api/same?q=%2F&r=1 HTTP/1.1"
    assert [k.lower() for k, _ in headers] == [
        "host",
        "x-keep",
        "x-keep",
        "x-request-id",
        "x-trace",
    ]


@pytest.fixture(scope="module")
def httpfw_gateway(
    tmp_path_factory: pytest.TempPathFactory, plugin_dir: Path, upstream: RecordingUpstream
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("httpfw-raw")
    (folder / "gateway.yaml").write_text(f"""\
plugins:
  - path: {plugin_dir / "httpfw.so"}
actions:
  Forward:
    use: plugins.httpfw.actions.HttpAction
    config: {{upstreamEndpoint: "{upstream.url}/base"}}
routes:
  Api:
    gatewayPath: /api/*
    methods: [GET]
    action: Forward
""")
    with Server("--config", str(folder / "gateway.yaml")) as server:
        yield server


@pytest.mark.parametrize(
    "sent, received",
    [
        (b"/api/a%00b/c", b"/base/a%00b/c"),
        (b"/api/a%2Fb/%ff/c?q=%2F%00", b"/base/a%2Fb/%ff/c?q=%2F%00"),
        (b"/api/x/%2e%2E/y", b"/base/y"),
        (b"/api/%2E%2E/%2e%2e/etc/passwd", b"/base/etc/passwd"),
        (b"/api/caf%C3%A9", b"/base/caf%C3%A9"),
        (b"/api/plain/../path", b"/base/path"),
    ],
)
def test_httpfw_forwards_paths_as_the_client_wrote_them(
    httpfw_gateway: Server, upstream: RecordingUpstream, sent: bytes, received: bytes
) -> None:
    before = len(upstream.seen)
    status = exchange(httpfw_gateway.port, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % sent, 1)[0][0]
    assert status == b"HTTP/1.1 200 OK"
    upstream.wait_for(before + 1)
    assert upstream.seen[before][0] == "GET %s HTTP/1.1" % received.decode()
