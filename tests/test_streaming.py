"""Streamed proxying: a route whose elements all carry PH_TYPE_STREAMS_BODIES (requestid,
helmet, httpfw) passes the upstream's answer on as it arrives, through ``plughost serve``,
against a real upstream over loopback: server-sent events arrive at once, a big body never
sits whole in the gateway, a slow reader holds the upstream back, a break mid-body reaches
the client as a break."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from gateway_support import Server, recv_head

BIG = 64 * 1024 * 1024


class _Upstream(socketserver.BaseRequestHandler):
    server: "StreamingUpstream"

    def handle(self) -> None:
        sock: socket.socket = self.request
        buf = b""
        while True:
            got = recv_head(sock, buf)
            if got is None:
                return
            head, buf = got
            method, path = head.split(b" ")[:2]
            if path.startswith(b"/sse"):
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for i in range(3):
                    event = b"data: event %d\n\n" % i
                    self.server.sent.append(time.monotonic())
                    sock.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                    time.sleep(0.3)
                sock.sendall(b"0\r\n\r\n")
            elif path.startswith(b"/big"):
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Length: %d\r\n\r\n" % BIG
                )
                if method == b"HEAD":
                    continue
                piece = b"b" * 65536
                for _ in range(BIG // len(piece)):
                    sock.sendall(piece)
                    self.server.written += len(piece)
            elif path.startswith(b"/upload"):
                fields = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
                }
                size, buf = self._drain_body(sock, buf, fields)
                if size < 0:
                    return  # the body never arrived whole: nothing recorded, no answer
                self.server.uploads.append(size)
                answer = b"got %d" % size
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
                )
            elif path.startswith(b"/break"):
                sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                time.sleep(0.2)
                return
            else:
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    def _drain_body(
        self, sock: socket.socket, buf: bytes, fields: dict[bytes, bytes]
    ) -> tuple[int, bytes]:
        """Reads a Content-Length or chunked body without keeping it: (size, what follows),
        size -1 when the connection closed first."""
        if b"content-length" in fields:
            need, size = int(fields[b"content-length"]), 0
            while size + len(buf) < need:
                size += len(buf)
                self.server.peak_seen = max(self.server.peak_seen, size)
                buf = sock.recv(1 << 20)
                if not buf:
                    return -1, b""
            return need, buf[need - size :]
        size = 0
        while True:
            while b"\r\n" not in buf:
                more = sock.recv(1 << 20)
                if not more:
                    return -1, b""
                buf += more
            line, buf = buf.split(b"\r\n", 1)
            n = int(line, 16)
            while len(buf) < n + 2:
                more = sock.recv(1 << 20)
                if not more:
                    return -1, b""
                buf += more
            buf = buf[n + 2 :]
            size += n
            if n == 0:
                return size, buf


class StreamingUpstream(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Upstream)
        self.sent: list[float] = []
        self.written = 0
        self.uploads: list[int] = []
        self.peak_seen = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def upstream() -> Iterator[StreamingUpstream]:
    server = StreamingUpstream()
    yield server
    server.shutdown()
    server.server_close()


def write_gateway(
    path: Path, plugin_dir: Path, upstream: str, options: str = "", extra: str = ""
) -> None:
    """/api/* = requestid, helmet, httpfw to ``upstream``: every element streams bodies."""
    path.write_text(
        f"""\
plugins:
  - path: {plugin_dir / "requestid.so"}
  - path: {plugin_dir / "helmet.so"}
  - path: {plugin_dir / "httpfw.so"}
middlewares:
  RequestID:
    use: plugins.requestid.middlewares.RequestIdMiddleware
  Helmet:
    use: plugins.helmet.middlewares.HelmetMiddleware
actions:
  Forward:
    use: plugins.httpfw.actions.HttpAction
    config: {{upstreamEndpoint: "{upstream}", {options}}}
routes:
  Api:
    gatewayPath: /api/*
    methods: [GET, HEAD, POST]
    middlewares: [RequestID, Helmet]
    action: Forward
"""
        + extra
    )


@pytest.fixture(scope="module", params=["direct", "asgi"])
def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    plugin_dir: Path,
    upstream: StreamingUpstream,
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("streaming")
    write_gateway(
        folder / "gateway.yaml",
        plugin_dir,
        upstream.url,
        "timeout: 2s",
        "server:\n  bodyLimit: 256MB\n",
    )
    extra = ["--no-direct-path"] if request.param == "asgi" else []
    with Server("--config", str(folder / "gateway.yaml"), *extra) as server:
        yield server


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, buf
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.lower(), rest


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_server_sent_events_arrive_as_they_are_sent(
    gateway: Server, upstream: StreamingUpstream
) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /api/sse HTTP/1.1\r\nHost: t\r\n\r\n")
        head, rest = read_head(sock)
        assert b"transfer-encoding: chunked" in head and b"x-request-id:" in head
        assert b"x-frame-options:" in head  # helmet's response phase ran on the head
        arrived = []
        data = rest
        while data.count(b"data: event") < 3:
            while data.count(b"data: event") > len(arrived):
                arrived.append(time.monotonic())
            data += sock.recv(65536)
        arrived += [time.monotonic()] * (3 - len(arrived))
        while not data.endswith(b"0\r\n\r\n"):
            data += sock.recv(65536)
    lags = [a - s for a, s in zip(arrived, upstream.sent[-3:])]
    assert max(lags[1:]) < 0.1, lags  # not held until the upstream finished (0.9 s)


def test_a_slow_reader_holds_the_upstream_back_and_memory_stays_flat(
    gateway: Server, upstream: StreamingUpstream
) -> None:
    before = rss_kib(gateway.proc.pid)
    upstream.written = 0
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /api/big HTTP/1.1\r\nHost: t\r\n\r\n")
        head, rest = read_head(sock)
        assert b"content-length: %d" % BIG in head
        time.sleep(1.0)  # not reading
        assert upstream.written < 16 * 1024 * 1024, upstream.written
        assert rss_kib(gateway.proc.pid) - before < 32 * 1024
        got = len(rest)
        peak = 0
        while got < BIG:
            data = sock.recv(1 << 20)
            assert data
            got += len(data)
            if got % (8 << 20) < len(data):
                peak = max(peak, rss_kib(gateway.proc.pid))
    assert got == BIG
    assert peak - before < 32 * 1024, (before, peak)
    assert gateway.get("/api/small")[0] == 200


def test_a_break_mid_body_reaches_the_client_as_a_break(gateway: Server) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /api/break HTTP/1.1\r\nHost: t\r\n\r\n")
        head, data = read_head(sock)
        assert head.startswith(b"http/1.1 200") and b"transfer-encoding: chunked" in head
        while True:
            more = sock.recv(65536)
            if not more:
                break
            data += more
    assert data == b"5\r\nhello\r\n"  # no terminating chunk: the client knows it is cut
    assert gateway.get("/api/small")[0] == 200


def test_head_and_lengths_pass_through(gateway: Server) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"HEAD /api/big HTTP/1.1\r\nHost: t\r\n\r\nGET /api/small HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        head, rest = read_head(sock)
        assert b"content-length: %d" % BIG in head
        while rest.count(b"hello") < 1:
            rest += sock.recv(65536)
        assert rest.startswith(b"HTTP/1.1 200 OK") and b"content-length: 5" in rest.lower()


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_uploads_stream_to_the_upstream(
    gateway: Server, upstream: StreamingUpstream, framing: str
) -> None:
    size = 48 * 1024 * 1024
    before = rss_kib(gateway.proc.pid)
    piece = b"u" * (1 << 20)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=20) as sock:
        head = (
            b"Content-Length: %d\r\n" % size
            if framing == "length"
            else b"Transfer-Encoding: chunked\r\n"
        )
        sock.sendall(b"POST /api/upload HTTP/1.1\r\nHost: t\r\n" + head + b"\r\n")
        peak = 0
        for i in range(size // len(piece)):
            sock.sendall(piece if framing == "length" else b"100000\r\n" + piece + b"\r\n")
            if i % 8 == 0:
                peak = max(peak, rss_kib(gateway.proc.pid))
        if framing == "chunked":
            sock.sendall(b"0\r\n\r\n")
        answer, rest = read_head(sock)
        while not rest.endswith(b"got %d" % size):
            more = sock.recv(65536)
            assert more, rest
            rest += more
    assert upstream.uploads[-1] == size
    assert peak - before < 32 * 1024, (before, peak)


def test_an_upload_cut_short_never_reaches_the_upstream_whole(
    gateway: Server, upstream: StreamingUpstream
) -> None:
    count = len(upstream.uploads)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n"
            b"\r\n" + b"x" * 3_000_000
        )
        time.sleep(0.3)
    time.sleep(0.5)
    assert len(upstream.uploads) == count
    assert gateway.get("/api/small")[0] == 200


def test_a_body_over_the_limit_is_413_and_not_forwarded_whole(
    gateway: Server, upstream: StreamingUpstream
) -> None:
    count = len(upstream.uploads)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"POST /api/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"x" * (1 << 20)
        try:
            for _ in range(300):
                sock.sendall(b"100000\r\n" + piece + b"\r\n")
        except OSError:
            pass  # the gateway stopped reading and answered
        head, _ = read_head(sock)
    assert head.startswith(b"http/1.1 413")
    assert len(upstream.uploads) == count


def test_a_static_route_streams_on_both_paths(
    tmp_path: Path, plugin_dir: Path, upstream: StreamingUpstream
) -> None:
    """A route without '*' is served by the one-call paths first (serve_raw, serve_scope):
    its upstream answer streams there too."""
    (tmp_path / "gateway.yaml").write_text(f"""\
plugins:
  - path: {plugin_dir / "httpfw.so"}
actions:
  Events:
    use: plugins.httpfw.actions.HttpAction
    config: {{upstreamEndpoint: "{upstream.url}/sse"}}
routes:
  Events:
    gatewayPath: /events
    methods: [GET]
    action: Events
""")
    for extra in ([], ["--no-direct-path"]):
        with (
            Server("--config", str(tmp_path / "gateway.yaml"), *extra) as server,
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        ):
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            head, data = read_head(sock)
            assert b"transfer-encoding: chunked" in head, extra
            start = time.monotonic()
            while b"event 0" not in data:
                data += sock.recv(65536)
            assert time.monotonic() - start < 0.2  # the first event, not the whole stream


def test_a_client_leaving_mid_download_closes_the_upstream(
    gateway: Server, upstream: StreamingUpstream
) -> None:
    upstream.written = 0
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /api/big HTTP/1.1\r\nHost: t\r\n\r\n")
        read_head(sock)
        sock.recv(1 << 20)
    time.sleep(0.5)
    written = upstream.written
    time.sleep(0.5)
    assert upstream.written == written < BIG  # the upstream was stopped, not drained
    assert gateway.get("/api/small")[0] == 200


def test_expect_100_continue_on_a_streaming_route(
    gateway: Server, upstream: StreamingUpstream
) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        head, rest = read_head(sock)
        while not rest.endswith(b"got 5"):
            more = sock.recv(65536)
            assert more, rest
            rest += more
    assert head.startswith(b"http/1.1 200") and upstream.uploads[-1] == 5


def test_both_paths_frame_streamed_answers_alike(
    tmp_path: Path, plugin_dir: Path, upstream: StreamingUpstream
) -> None:
    """The same streamed answers from the direct path and the ASGI path: header names in
    order, values (the Date and the request id aside), framing and body bytes."""
    write_gateway(tmp_path / "gateway.yaml", plugin_dir, upstream.url)

    def answer(server: Server, path: bytes, method: bytes = b"GET") -> tuple[list, bytes]:
        """A keep-alive request (the direct path takes those), read to its framing's end."""
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"%s %s HTTP/1.1\r\nHost: t\r\nX-Request-ID: fixed\r\n\r\n" % (method, path)
            )
            head, body = read_head(sock)
            if method == b"HEAD":
                pass
            elif b"transfer-encoding: chunked" in head:
                while not body.endswith(b"\r\n0\r\n\r\n"):
                    body += sock.recv(65536)
            else:
                length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += sock.recv(65536)
        lines = [line for line in head.split(b"\r\n") if not line.startswith(b"date:")]
        return lines, body

    config = str(tmp_path / "gateway.yaml")
    with (
        Server("--config", config) as direct,
        Server("--config", config, "--no-direct-path") as asgi,
    ):
        for path, method in (
            (b"/api/small", b"GET"),
            (b"/api/sse", b"GET"),
            (b"/api/big", b"HEAD"),
        ):
            mine, theirs = answer(direct, path, method), answer(asgi, path, method)
            assert mine == theirs, path
