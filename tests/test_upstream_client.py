"""plughost.proxy: the pooled, streaming upstream client, against real upstream servers on
loopback that answer with scripted bytes (chunked, close-delimited, interim answers,
dying mid-response, closing idle connections, never answering)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import pytest

from plughost.proxy import UpstreamPool, parse_target
from plughost.proxy.client import PoolLimits

Handler = Callable[["Conn"], Awaitable[None]]


@dataclass
class Conn:
    """One accepted upstream connection, seen from the upstream."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def head(self) -> bytes:
        """The next request head (through the blank line)."""
        return await self.reader.readuntil(b"\r\n\r\n")

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


@dataclass
class Upstream:
    """A real TCP server on a free loopback port; ``handler`` plays each connection."""

    handler: Handler
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    server: Any = None

    async def __aenter__(self) -> "Upstream":
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(Conn(reader, writer))
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]


class Sink:
    """Records what the client hands on."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.events: list[str] = []
        self.failure: tuple[int, str] | None = None
        self.finished = asyncio.get_running_loop().create_future()

    def on_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status, self.headers = status, headers
        self.events.append("head")

    def on_body(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def on_end(self) -> None:
        self.events.append("end")
        self.finished.set_result(None)

    def on_fail(self, status: int, reason: str) -> None:
        self.events.append("fail")
        self.failure = (status, reason)
        self.finished.set_result(None)

    def on_flush(self) -> None:
        pass

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name]


async def fetch(
    pool: UpstreamPool,
    url: str,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes | None = b"",
    **kw: Any,
) -> Sink:
    sink = Sink()
    pool.call(method, parse_target(url), headers or [], body, sink, **kw)
    await asyncio.wait_for(sink.finished, 10)
    return sink


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


async def answer_each(conn: Conn, response: bytes = OK, into: list[bytes] | None = None) -> None:
    while True:
        head = await conn.head()
        if into is not None:
            into.append(head)
        await conn.send(response)


def test_keep_alive_connections_are_reused() -> None:
    async def main() -> None:
        heads: list[bytes] = []
        async with Upstream(lambda c: answer_each(c, into=heads)) as up:
            pool = UpstreamPool()
            for _ in range(5):
                sink = await fetch(pool, up.url + "/x")
                assert (sink.status, sink.body, sink.events) == (200, b"hello", ["head", "end"])
            assert up.connections == 1 and len(heads) == 5
            assert pool.idle_connections == 1
            await pool.close()

    run(main())


def test_the_request_target_is_sent_as_written() -> None:
    async def main() -> None:
        heads: list[bytes] = []
        async with Upstream(lambda c: answer_each(c, into=heads)) as up:
            pool = UpstreamPool()
            for path in (
                "/api/a%00b/c",
                "/a%2Fb%ff?q=%2F%00&x",
                "/p#fragment",
                "?only=query",
                "/caf\u00e9 x",
            ):
                await fetch(pool, up.url + path)
            lines = [h.split(b"\r\n", 1)[0] for h in heads]
            assert lines == [
                b"GET /api/a%00b/c HTTP/1.1",
                b"GET /a%2Fb%ff?q=%2F%00&x HTTP/1.1",
                b"GET /p HTTP/1.1",
                b"GET /?only=query HTTP/1.1",
                b"GET /caf%C3%A9%20x HTTP/1.1",
            ]
            await pool.close()

    run(main())


def test_request_headers_the_gateway_writes_itself() -> None:
    async def main() -> None:
        heads: list[bytes] = []
        async with Upstream(lambda c: answer_each(c, into=heads)) as up:
            pool = UpstreamPool()
            sent = [
                (b"Host", b"client.example"),
                (b"Connection", b"keep-alive, X-Secret"),
                (b"X-Secret", b"1"),
                (b"Keep-Alive", b"300"),
                (b"TE", b"trailers"),
                (b"Expect", b"100-continue"),
                (b"Content-Length", b"999"),
                (b"Transfer-Encoding", b"chunked"),
                (b"X-Kept", b"a"),
                (b"x-kept", b"b"),
            ]
            await fetch(pool, up.url + "/p", "POST", sent, b"abc")
            head = heads[0].decode().lower().split("\r\n")
            port = up.url.rsplit(":", 1)[1]
            assert head[:2] == ["post /p http/1.1", f"host: 127.0.0.1:{port}"]
            # X-Secret, named by the client's Connection header, is dropped when the request
            # arrives (drop_connection_options, tests/test_edge.py), not here: at this point
            # every field is the chain's, and what an action added must go through.
            assert sorted(head[2:-2]) == [
                "content-length: 3",
                "x-kept: a",
                "x-kept: b",
                "x-secret: 1",
            ]
            await pool.close()

    run(main())


def test_response_framing_and_date_are_the_gateways() -> None:
    async def main() -> None:
        chunked = (
            b"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\n"
            b"X-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-App: yes\r\n\r\n"
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        )
        async with Upstream(lambda c: answer_each(c, chunked)) as up:
            pool = UpstreamPool()
            sink = await fetch(pool, up.url)
            assert sink.body == b"abcdefg"
            assert sink.headers == [(b"X-App", b"yes")]
            await pool.close()

    run(main())


def test_a_body_without_length_ends_with_the_connection() -> None:
    async def main() -> None:
        async def handler(c: Conn) -> None:
            await c.head()
            await c.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
            await asyncio.sleep(0.05)
            await c.send(b"part two")

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            sink = await fetch(pool, up.url)
            assert (sink.status, sink.body, sink.events) == (
                200,
                b"part one, part two",
                ["head", "end"],
            )
            assert pool.idle_connections == 0
            await pool.close()

    run(main())


def test_head_answers_have_no_body_and_the_connection_is_reused() -> None:
    async def main() -> None:
        async def handler(c: Conn) -> None:
            while True:
                head = await c.head()
                if head.startswith(b"HEAD"):
                    await c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                else:
                    await c.send(OK)

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            sink = await fetch(pool, up.url, "HEAD")
            assert (sink.status, sink.body, sink.events) == (200, b"", ["head", "end"])
            sink = await fetch(pool, up.url)
            assert (sink.status, sink.body) == (200, b"hello")
            assert up.connections == 1
            await pool.close()

    run(main())


def test_interim_answers_are_not_passed_on() -> None:
    async def main() -> None:
        reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
        async with Upstream(lambda c: answer_each(c, reply)) as up:
            pool = UpstreamPool()
            sink = await fetch(pool, up.url, "POST", body=b"x")
            assert (sink.status, sink.body, sink.headers) == (200, b"hello", [])
            await pool.close()

    run(main())


def test_an_upstream_dying_mid_response_is_a_failure_after_the_head() -> None:
    async def main() -> None:
        async def handler(c: Conn) -> None:
            await c.head()
            await c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            sink = await fetch(pool, up.url)
            assert sink.events == ["head", "fail"]
            assert sink.failure is not None and sink.failure[0] == 502
            assert "mid-response" in sink.failure[1]
            await pool.close()

    run(main())


def test_stale_pooled_connection_idempotent_requests_are_sent_again() -> None:
    async def main() -> None:
        async def once(c: Conn) -> None:  # answers one request, then closes without a word
            await c.head()
            await c.send(OK)
            await asyncio.sleep(0.05)

        async with Upstream(once) as up:
            pool = UpstreamPool()
            await fetch(pool, up.url)
            await asyncio.sleep(0.2)  # the upstream closed it; the pool may not know yet
            sink = await fetch(pool, up.url)
            assert (sink.status, sink.body) == (200, b"hello")
            await pool.close()

    run(main())


def test_stale_pooled_connection_a_post_is_not_sent_twice() -> None:
    async def main() -> None:
        heads: list[bytes] = []

        async def once_then_swallow(c: Conn) -> None:
            heads.append(await c.head())
            if len(heads) == 1:
                await c.send(OK)
                heads.append(await c.head())  # the POST arrives; close without answering

        async with Upstream(once_then_swallow) as up:
            pool = UpstreamPool()
            await fetch(pool, up.url)
            sink = await fetch(pool, up.url, "POST", body=b"pay once")
            assert sink.failure is not None and sink.failure[0] == 502
            assert "before answering" in sink.failure[1]
            assert sum(h.startswith(b"POST") for h in heads) == 1
            await pool.close()

    run(main())


def test_refused_is_502_and_silence_is_504() -> None:
    async def main() -> None:
        async with Upstream(lambda c: c.reader.read()) as silent:
            pool = UpstreamPool()
            sink = await fetch(pool, silent.url, timeout=0.3)
            assert sink.failure == (504, "the upstream did not answer within 0.3 s")
            url = silent.url
        sink = await fetch(pool, url)
        assert sink.failure is not None and sink.failure[0] == 502
        assert "could not connect to 127.0.0.1" in sink.failure[1]
        await pool.close()

    run(main())


def test_invalid_or_oversized_answers_are_502() -> None:
    async def main() -> None:
        huge = b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n"
        many = b"HTTP/1.1 200 OK\r\n" + b"X-N: 1\r\n" * 101 + b"\r\n"
        for reply, why in (
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not valid HTTP/1.1"),
            (huge, "larger than 65536 bytes"),
            (many, "or 100 lines"),
        ):
            async with Upstream(lambda c, r=reply: answer_each(c, r)) as up:
                pool = UpstreamPool()
                sink = await fetch(pool, up.url)
                assert sink.failure is not None and sink.failure[0] == 502, reply[:20]
                assert why in sink.failure[1]
                await pool.close()

    run(main())


def test_streamed_request_body_chunked_and_with_length() -> None:
    async def main() -> None:
        got: list[bytes] = []

        async def handler(c: Conn) -> None:
            while True:
                head = await c.head()
                if b"transfer-encoding: chunked" in head:
                    data = b""
                    while not data.endswith(b"0\r\n\r\n"):
                        data += await c.reader.read(65536)
                else:
                    data = await c.reader.readexactly(10)
                got.append(head + data)
                await c.send(OK)

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            for length in (None, 10):
                sink = Sink()
                call = pool.call("POST", parse_target(up.url), [], None, sink, body_length=length)
                for piece in (b"01234", b"56789"):
                    await call.drain()
                    call.send(piece)
                call.finish()
                await asyncio.wait_for(sink.finished, 5)
                assert sink.status == 200
            assert got[0].endswith(b"\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n")
            assert got[1].endswith(b"content-length: 10\r\n\r\n0123456789")
            await pool.close()

    run(main())


@pytest.mark.parametrize("length", [None, 1000])
def test_an_aborted_upload_never_reaches_the_upstream_whole(length: int | None) -> None:
    async def main() -> None:
        received = asyncio.get_running_loop().create_future()

        async def handler(c: Conn) -> None:
            await c.head()
            data = await c.reader.read()  # until the gateway closes the connection
            received.set_result(data)

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            sink = Sink()
            call = pool.call("PUT", parse_target(up.url), [], None, sink, body_length=length)
            await call.drain()
            call.send(b"x" * 100)
            await asyncio.sleep(0.05)
            call.abort()  # the client vanished mid-body
            data = await asyncio.wait_for(received, 5)
            assert len(data) < 1000 and not data.endswith(b"0\r\n\r\n")
            assert sink.events == []
            await pool.close()

    run(main())


def test_a_paused_reader_stops_reading_from_the_upstream() -> None:
    async def main() -> None:
        total = 64 * 1024 * 1024
        written = [0]

        async def handler(c: Conn) -> None:
            await c.head()
            c.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
            piece = b"z" * 65536
            for _ in range(total // len(piece)):
                c.writer.write(piece)
                await c.writer.drain()
                written[0] += len(piece)
            await answer_each(c)  # then small answers on the same connection

        async with Upstream(handler) as up:
            pool = UpstreamPool()

            class Slow(Sink):
                call: Any = None
                received = 0

                def on_body(self, chunk: bytes) -> None:
                    self.received += len(chunk)
                    self.call.pause_reading()

            sink = Slow()
            sink.call = pool.call("GET", parse_target(up.url), [], b"", sink)
            await asyncio.sleep(0.5)
            assert sink.received < 4 * 1024 * 1024
            assert written[0] < 16 * 1024 * 1024  # socket buffers, not the whole body
            while not sink.finished.done():
                sink.call.resume_reading()
                await asyncio.sleep(0)
            assert sink.received == total and sink.events == ["head", "end"]
            # The call ended paused (on_body paused it last): the connection goes back to
            # the pool reading again, and the next request on it gets its answer.
            # The call ended paused (on_body paused it after the last piece too): the
            # connection must go back to the pool reading, or the next answer never comes.
            again = await fetch(pool, up.url, timeout=2)
            assert (again.status, again.body, up.connections) == (200, b"hello", 1)
            await pool.close()

    run(main())


def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    async def main() -> None:
        async with Upstream(answer_each) as up:
            pool = UpstreamPool(PoolLimits(idle_timeout=0.2))
            await fetch(pool, up.url)
            assert pool.idle_connections == 1
            await asyncio.sleep(0.5)
            assert pool.idle_connections == 0
            await pool.close()

    run(main())


@pytest.mark.parametrize(
    "url, why",
    [
        ("ftp://host/x", "not an absolute http:// or https:// URL"),
        ("http:///x", "names no host"),
        ("http://host:99999/", "invalid port"),
        ("http://[::1/", "malformed IPv6"),
    ],
)
def test_bad_upstream_urls(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_target(url)


def test_targets_keep_what_the_url_wrote() -> None:
    t = parse_target("http://user:pw@[::1]:8080?x=%41")
    assert (t.origin.host, t.origin.port, t.origin.authority, t.path) == (
        "::1",
        8080,
        b"[::1]:8080",
        b"/?x=%41",
    )
    t = parse_target("HTTPS://example.com/a/../b#frag")
    assert (t.origin.scheme, t.origin.port, t.path) == ("https", 443, b"/a/../b")
