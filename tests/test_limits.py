"""Limits on the request head, over real sockets against `plughost serve`.

The request target (``uriLimit``, 8 KiB: 414), the whole head (``readBufferSize`` as in
Fiber, else 32 KiB: 431) and the number of header fields (``headerCountLimit``, 100: 431) are
bounded on the direct path and the ASGI path alike, and a client that never ends its head
costs the server no more than the limit.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from gateway_support import both_paths, Server, write_config


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, test_plugin_dir: Path) -> Path:
    return write_config(tmp_path_factory.mktemp("limits") / "config", test_plugin_dir)


@pytest.fixture(scope="module")
def servers(config: Path) -> Iterator[tuple[Server, Server]]:
    with both_paths(config) as servers:
        yield servers


def ask(port: int, head: bytes, timeout: float = 10.0) -> bytes:
    """Sends a request head on a fresh connection; what the server answered until it
    closed the connection or 0.5 s passed after the answer began."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused before reading it all
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                sock.settimeout(0.5)
        return out


def without_date(answer: bytes) -> bytes:
    return b"\r\n".join(
        line for line in answer.split(b"\r\n") if not line.lower().startswith(b"date:")
    )


def rss_kib(pid: int) -> int:
    """VmRSS of a process and its descendants (the supervisor and its workers)."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1])
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        total += rss_kib(int(child))
    return total


def test_a_long_request_target_gets_414_on_both_paths(servers: tuple[Server, Server]) -> None:
    answers = []
    for server in servers:
        long = ask(server.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert long.startswith(b"HTTP/1.1 414 URI Too Long\r\n"), long[:200]
        assert long.endswith(b'{"error":"uri too long","status":414}')
        assert b"connection: close" in long
        answers.append(without_date(long))
        # just under the limit: routed as usual (404: no such route)
        fits = ask(server.port, b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert fits.startswith(b"HTTP/1.1 404 "), fits[:100]
        assert server.get("/")[0] == 200
    assert answers[0] == answers[1]


def test_a_one_megabyte_header_gets_431_on_both_paths(servers: tuple[Server, Server]) -> None:
    answers = []
    for server in servers:
        big = ask(
            server.port, b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 1_000_000 + b"\r\n\r\n"
        )
        assert big.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), big[:200]
        assert big.endswith(b'{"error":"request header fields too large","status":431}')
        answers.append(without_date(big))
        # many headers summing over 32 KiB, each small, sent at once
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 400) for i in range(90))
        assert ask(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n").startswith(
            b"HTTP/1.1 431 "
        )
        assert server.get("/")[0] == 200
    assert answers[0] == answers[1]


def test_too_many_header_fields_get_431(servers: tuple[Server, Server]) -> None:
    for server in servers:
        fields = lambda n: b"".join(b"X-%d: 1\r\n" % i for i in range(n))  # noqa: E731
        ok = ask(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + fields(99) + b"\r\n")
        assert ok.startswith(b"HTTP/1.1 200 "), ok[:100]  # 99 + Host = 100
        assert ask(
            server.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + fields(100) + b"\r\n"
        ).startswith(b"HTTP/1.1 431 ")
        assert ask(
            server.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + fields(10_000) + b"\r\n"
        ).startswith(b"HTTP/1.1 431 ")


def test_a_head_that_never_ends_costs_no_more_than_the_limit(
    servers: tuple[Server, Server],
) -> None:
    """8 connections each streaming an endless header: every one is answered 431 and closed
    once the limit is passed, and the server's memory does not follow what was sent."""
    direct = servers[0]
    before = rss_kib(direct.proc.pid)
    socks = [socket.create_connection(("127.0.0.1", direct.port), timeout=10) for _ in range(8)]
    sent = [0] * len(socks)
    refused = [b""] * len(socks)
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: ")
        piece = b"e" * 65536
        deadline = time.monotonic() + 20
        while any(not r for r in refused) and time.monotonic() < deadline:
            for i, sock in enumerate(socks):
                if refused[i]:
                    continue
                try:
                    sock.sendall(piece)
                    sent[i] += len(piece)
                except (BrokenPipeError, ConnectionResetError):
                    refused[i] = b"closed"
                    continue
                sock.settimeout(0.001)
                try:
                    got = sock.recv(65536)
                    refused[i] = got or b"closed"
                except (socket.timeout, BlockingIOError):
                    pass
                except ConnectionResetError:
                    refused[i] = b"closed"
                sock.settimeout(10)
        assert all(refused), sent
        assert all(r == b"closed" or r.startswith(b"HTTP/1.1 431 ") for r in refused)
        assert max(sent) < 4 * 1024 * 1024, sent  # refused long before: not read on and on
        growth = rss_kib(direct.proc.pid) - before
        assert growth < 16 * 1024, f"RSS grew by {growth} KiB"
    finally:
        for sock in socks:
            sock.close()
    assert direct.get("/")[0] == 200


def test_read_buffer_size_bounds_the_head_as_in_fiber(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    folder = write_config(tmp_path / "config", test_plugin_dir)
    (folder / "server.yaml").write_text(
        "server:\n  readBufferSize: 4096\n  uriLimit: 1024\n  headerCountLimit: 5\n"
    )
    with Server("--config", str(folder)) as server:
        assert ask(
            server.port, b"GET / HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 3000 + b"\r\n\r\n"
        ).startswith(b"HTTP/1.1 200 ")
        assert ask(
            server.port, b"GET / HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 5000 + b"\r\n\r\n"
        ).startswith(b"HTTP/1.1 431 ")
        assert ask(
            server.port, b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
        ).startswith(b"HTTP/1.1 414 ")
        six = b"".join(b"X-%d: 1\r\n" % i for i in range(5))
        assert ask(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + six + b"\r\n").startswith(
            b"HTTP/1.1 431 "
        )
        # a pipelined request after an answered one is bounded too
        pair = ask(
            server.port,
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 5000 + b"\r\n\r\n",
        )
        assert pair.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 431 " in pair


def test_limits_are_checked_in_the_configuration(tmp_path: Path, test_plugin_dir: Path) -> None:
    from plughost.config import ConfigErrors, load_config

    folder = write_config(tmp_path / "config", test_plugin_dir)
    (folder / "server.yaml").write_text("server:\n  uriLimit: -1\n  headerCountLimit: many\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(folder)
    text = str(info.value)
    assert "uriLimit must be a positive number" in text and "headerCountLimit" in text


def test_slow_clients_are_closed_after_read_timeout_while_others_are_served(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """200 slowloris connections (a header byte a second) and 20 silent ones are closed once
    readTimeout / the idle timeout pass; ordinary requests get 200 meanwhile."""
    folder = write_config(tmp_path / "config", test_plugin_dir)
    (folder / "server.yaml").write_text("server:\n  readTimeout: 2s\n  idleTimeout: 2s\n")
    with Server("--config", str(folder)) as server:
        slow = [
            socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(200)
        ]
        silent = [
            socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(20)
        ]
        try:
            for sock in slow:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
            start = time.monotonic()
            closed_at: dict[int, float] = {}
            served = 0
            while time.monotonic() - start < 8 and len(closed_at) < len(slow):
                for i, sock in enumerate(slow):
                    if i in closed_at:
                        continue
                    try:
                        sock.sendall(b"X")  # a byte a second per connection
                    except (BrokenPipeError, ConnectionResetError):
                        closed_at[i] = time.monotonic() - start
                assert server.get("/", timeout=5)[0] == 200  # others are served meanwhile
                served += 1
                time.sleep(1)
            assert len(closed_at) == len(slow), f"{len(slow) - len(closed_at)} still open"
            assert max(closed_at.values()) < 6, closed_at
            # the ones that had not been written to since: a 408 and the end
            answer = slow[0].recv(65536)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
            for sock in silent:  # never sent a byte: closed by the idle timeout
                sock.settimeout(5)
                assert sock.recv(1) == b""
            assert served >= 2
        finally:
            for sock in slow + silent:
                sock.close()
        assert server.get("/")[0] == 200


def test_a_client_that_reads_nothing_is_dropped_after_write_timeout(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """A client that asks for responses and never reads them: once the socket buffers are
    full, writeTimeout closes the connection instead of holding the answers."""
    folder = write_config(tmp_path / "config", test_plugin_dir)
    (folder / "server.yaml").write_text("server:\n  writeTimeout: 1s\n")
    with Server("--config", str(folder)) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.settimeout(0.2)
        try:
            request = b"GET /files/" + b"x" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
            deadline = time.monotonic() + 15
            closed = False
            while time.monotonic() < deadline and not closed:
                try:
                    sock.sendall(request * 50)  # pipelined; their answers pile up unread
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                except socket.timeout:
                    time.sleep(0.2)  # our own send buffer is full: the server stopped reading
            assert closed, "the connection stayed open"
        finally:
            sock.close()
        assert server.get("/")[0] == 200
