"""A pooled, streaming HTTP/1.1 client for upstream requests.

Built for a gateway's one job rather than for general use: connections are the event
loop's own transports, kept alive and pooled per endpoint; responses are parsed by llhttp
(through httptools) in callbacks, and handed on as they arrive to a :class:`ResponseSink`
(status and headers, then body pieces), so a body is never held whole here and the
gateway can start answering the client as soon as the upstream's headers are in.

Backpressure both ways: a request body is written with :meth:`UpstreamCall.send` after
:meth:`UpstreamCall.drain` (which waits while the upstream reads slower than the client
writes), and a sink that cannot pass the response on fast enough calls
:meth:`UpstreamCall.pause_reading`, which stops reading from the upstream's socket.

Failures keep their meaning: a refused or broken connection is 502, a connect or answer
that takes too long is 504. A request that went out on a pooled connection the upstream
had already closed is sent again on a new one only when it is idempotent, its body was
given whole, and no byte of an answer came back, so it cannot have been applied.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Protocol

import httptools

from ..metrics.upstreams import UpstreamStats
from .message import Header, Origin, Target, parse_origin, request_head, response_headers

log = logging.getLogger("plughost.proxy")

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 30.0
#: How often the pool checks its calls' timeouts, seconds (a timeout fires up to this late).
TICK = 0.05
#: Methods RFC 9110 section 9.2.2 calls idempotent: sent again after a stale connection.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Bounds of the upstream client. Every one has a default like nginx's."""

    #: Idle keep-alive connections kept per endpoint (nginx ``keepalive``).
    max_idle_per_endpoint: int = 256
    #: An idle pooled connection is closed after this many seconds
    #: (nginx ``keepalive_timeout`` of an upstream block).
    idle_timeout: float = 60.0
    #: Largest response head accepted from an upstream, bytes (nginx ``proxy_buffer_size``
    #: bounds it at 4-8 KiB; upstreams with big cookies need more).
    max_head_bytes: int = 64 * 1024
    #: Most response header lines accepted from an upstream.
    max_headers: int = 100


class ResponseSink(Protocol):
    """Where an upstream's answer goes. Exactly one of on_end and on_fail ends a call; a
    call ended by on_fail after on_head broke off mid-response (the receiver must not
    present what it got as whole)."""

    def on_head(self, status: int, headers: list[Header]) -> None:
        """The final status and the headers to pass on (see message.response_headers)."""

    def on_body(self, chunk: bytes) -> None:
        """A piece of the body, in order (not empty)."""

    def on_end(self) -> None:
        """The answer is complete."""

    def on_fail(self, status: int, reason: str) -> None:
        """No (complete) answer: 502 when the upstream failed, 504 when it was too slow;
        ``reason`` is one sentence for the log."""

    def on_flush(self) -> None:
        """Called after each read from the upstream once its pieces were handed over: a
        sink may gather them and pass them on here, in one write."""


class _HeadTooLarge(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One keep-alive connection to an upstream, running one call at a time."""

    def __init__(self, pool: "UpstreamPool", endpoint: tuple[str, str, int]) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.call: UpstreamCall | None = None
        self.closed = False
        self.idle_since = 0.0
        self.write_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._headers: list[Header] = []
        self._head_bytes = 0  # bytes received for the current call before its head was in
        self._too_large = False
        self._header_bytes = 0  # of the current message's header lines
        self._informational = False
        self.close_delimited = False  # the body ends when the upstream closes

    # ----------------------------------------------------------------- transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        call = self.call
        if call is None:  # an idle connection that talks: not one to reuse
            self.close()
            return
        try:
            self.parser.feed_data(data)
            call.sink.on_flush()
            if not call.responding and self.call is call:
                # llhttp gathers a header line whole before handing it over: bound the head
                self._head_bytes += len(data)
                if self._head_bytes > self.pool.limits.max_head_bytes:
                    raise _HeadTooLarge()
        except (httptools.HttpParserError, _HeadTooLarge) as exc:
            if self.call is not call:
                return
            if self._too_large or isinstance(exc, _HeadTooLarge):
                limits = self.pool.limits
                call.fail(
                    502,
                    f"the upstream's response head is larger than "
                    f"{limits.max_head_bytes} bytes or {limits.max_headers} lines",
                )
            else:
                call.fail(502, f"the upstream's response is not valid HTTP/1.1 ({exc})")
        except Exception:  # a sink's own bug: the call ends, the process goes on
            log.exception("passing on the answer of %s:%d failed", *self.endpoint[1:])
            call.fail(502, "the gateway failed while passing the upstream's answer on")

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost decides what it means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        self._wake_writers()
        call, self.call = self.call, None
        if call is None:
            return
        if self.close_delimited and call.responding:
            call.end()  # a body without length ends with the connection
        else:
            call.lost(exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()

    def _wake_writers(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def writable(self) -> None:
        """Returns once the transport takes more data (at once when it does)."""
        while self.write_paused and not self.closed:
            if self._writable is None:
                self._writable = asyncio.get_running_loop().create_future()
            await self._writable

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool._forget(self)
            if self.transport is not None:
                self.transport.abort()

    # ------------------------------------------------------------ parser events
    def on_message_begin(self) -> None:
        self._headers = []
        self._header_bytes = 0
        self._informational = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        limits = self.pool.limits
        if len(self._headers) >= limits.max_headers or self._header_bytes > limits.max_head_bytes:
            self._too_large = True
            raise _HeadTooLarge()
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        call = self.call
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue and other interim answers: not passed on
            self._informational = True
            return
        if call is None:
            return
        headers, length, chunked = response_headers(self._headers)
        self.close_delimited = length is None and not chunked and status != 204 and status != 304
        call.content_length = length
        call.head(status, headers)
        if call.method == "HEAD" and self.call is call:
            # A HEAD answer has no body whatever its Content-Length says; llhttp cannot be
            # told, so this message ends here and the next one gets a fresh parser.
            keep = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)
            self.close_delimited = False
            self._finish(call, keep)

    def on_body(self, body: bytes) -> None:
        call = self.call
        if call is not None:
            call.body(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        call = self.call
        if call is not None:
            self.close_delimited = False
            self._finish(call, self.parser.should_keep_alive())

    def _finish(self, call: "UpstreamCall", keep_alive: bool) -> None:
        self.call = None
        if call._paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()  # the next call reads its own answer
        if keep_alive and call.request_sent and not self.closed:
            self.pool._release(self)
        else:
            self.close()
        call.end()


class UpstreamCall:
    """One request to an upstream and the delivery of its answer to a sink.

    Made by :meth:`UpstreamPool.call`. With ``body`` given whole, the request is complete
    at once; with ``body=None`` the caller streams it: ``await drain()``, ``send(chunk)``
    as often as needed, then ``finish()``; ``abort()`` when the client vanished, which
    closes the upstream connection so that the upstream never sees the request as whole.
    """

    __slots__ = (
        "pool",
        "origin",
        "method",
        "sink",
        "timeout",
        "connect_timeout",
        "_head",
        "_body",
        "_chunked",
        "_pending",
        "_ended",
        "conn",
        "reused",
        "retried",
        "responding",
        "done",
        "request_sent",
        "_deadline",
        "_attached",
        "content_length",
        "_last_read",
        "_paused",
        "_started",
        "__weakref__",
    )

    def __init__(
        self,
        pool: "UpstreamPool",
        method: str,
        origin: Origin,
        head: bytes,
        body: bytes | None,
        sink: ResponseSink,
        *,
        chunked: bool = False,
        connect_timeout: float | None = None,
        timeout: float | None = None,
    ) -> None:
        self.pool = pool
        self.origin = origin
        self.method = method
        self.sink = sink
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.connect_timeout = connect_timeout or DEFAULT_CONNECT_TIMEOUT
        self._head = head
        self._body = body
        self._chunked = chunked
        self._pending: list[bytes] = []  # streamed pieces written before a connection was ready
        self._ended = body is not None
        self.conn: _Connection | None = None
        self.reused = False
        self.retried = False
        self.responding = False  # the head was passed on: the body is under way
        self.done = False
        self.request_sent = body is not None
        self._deadline = 0.0  # when the whole exchange times out (loop time)
        self._attached: asyncio.Future[None] | None = None
        #: The answer's Content-Length (None: chunked or until the connection closes).
        self.content_length: int | None = None
        self._last_read = -1.0  # when the body last moved, once timed by idleness
        self._paused = False
        self._started = 0.0  # loop time at start (the metrics' latency)

    def start(self) -> None:
        self._started = self.pool.loop.time()
        self._deadline = self._started + self.timeout
        self.pool._watch(self)
        self.pool._acquire(self)

    # ------------------------------------------------------------ request side
    def attach(self, conn: _Connection, reused: bool) -> None:
        """Sends the request head (and what there is of the body) on ``conn``."""
        self.conn = conn
        self.reused = reused
        conn.call = self
        conn._head_bytes = 0
        conn._too_large = False
        transport = conn.transport
        assert transport is not None
        if self._body is not None:
            transport.write(self._head + self._body if len(self._body) < 65536 else self._head)
            if len(self._body) >= 65536:
                transport.write(self._body)
        else:
            transport.writelines([self._head, *self._pending])
            self._pending = []
            if self._ended and self._chunked:
                transport.write(b"0\r\n\r\n")
            self.request_sent = self._ended
        waiter, self._attached = self._attached, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Waits until the upstream takes more of the request body."""
        while self.conn is None and not self.done:
            if self._attached is None:
                self._attached = self.pool.loop.create_future()
            await self._attached
        if self.conn is not None and not self.done:
            await self.conn.writable()

    def send(self, chunk: bytes) -> None:
        """Writes a piece of a streamed request body."""
        if self.done or not chunk:
            return
        data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if self._chunked else chunk
        if self.conn is None:
            self._pending.append(data)
        else:
            assert self.conn.transport is not None
            self.conn.transport.write(data)

    def finish(self) -> None:
        """The streamed request body is complete."""
        if self._ended:
            return
        self._ended = True
        if self.conn is not None and not self.done:
            assert self.conn.transport is not None
            if self._chunked:
                self.conn.transport.write(b"0\r\n\r\n")
            self.request_sent = True

    def abort(self) -> None:
        """Gives up without telling the sink (its client is gone); the upstream connection
        is closed, so a request still being sent never reaches the upstream as whole."""
        self._close()

    def _close(self) -> bool:
        """Ends the call and closes its connection; False when it had ended already."""
        if self.done:
            return False
        self.done = True
        self._unwatch()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.call = None
            conn.close()
        return True

    # ----------------------------------------------------------- response side
    def pause_reading(self) -> None:
        """Stops reading the upstream's answer (the sink's receiver is slow)."""
        self._paused = True
        if self.conn is not None and self.conn.transport is not None and not self.conn.closed:
            self.conn.transport.pause_reading()

    def resume_reading(self) -> None:
        self._paused = False
        if self._last_read >= 0:
            self._last_read = self.pool.loop.time()
        if self.conn is not None and self.conn.transport is not None and not self.conn.closed:
            self.conn.transport.resume_reading()

    def time_body_by_idleness(self) -> None:
        """From now on the timeout bounds each wait for more of the body (as nginx's
        proxy_read_timeout does) instead of the whole exchange, so that a long stream
        (server-sent events, a big download) lives as long as it moves. Time spent paused
        by a slow client does not count."""
        self._last_read = self.pool.loop.time()

    def expire(self, now: float) -> None:
        """Ends the call with 504 when its time is up (the pool's clock calls it)."""
        if self._last_read >= 0:
            if not self._paused and now - self._last_read >= self.timeout:
                self.fail(504, f"the upstream sent nothing for {self.timeout:g} s mid-response")
        elif now >= self._deadline:
            what = "finish its answer" if self.responding else "answer"
            self.fail(504, f"the upstream did not {what} within {self.timeout:g} s")

    def head(self, status: int, headers: list[Header]) -> None:
        """The answer's head, its headers already those to pass on."""
        if self.done:
            return
        self.responding = True
        if self.pool.stats is not None:
            self.pool.stats.record(self.origin.label, status, self.pool.loop.time() - self._started)
        self.sink.on_head(status, headers)

    def body(self, chunk: bytes) -> None:
        if not self.done:
            if self._last_read >= 0:
                self._last_read = self.pool.loop.time()
            self.sink.on_body(chunk)

    def end(self) -> None:
        if self.done:
            return
        self.done = True
        self._unwatch()
        self.conn = None
        self.sink.on_end()

    def lost(self, exc: BaseException | None) -> None:
        """The connection closed before the answer was complete."""
        if self.done:
            return
        self.conn = None
        if (
            not self.responding
            and self.reused
            and not self.retried
            and self._body is not None
            and self.method in IDEMPOTENT
        ):
            self.retried = True  # a stale pooled connection: once more on another one
            self.pool._acquire(self)
            return
        where = "mid-response" if self.responding else "before answering"
        detail = f" ({exc})" if exc else ""
        self.fail(502, f"the upstream closed the connection {where}{detail}")

    def fail(self, status: int, reason: str) -> None:
        """Ends the call with no (complete) answer: the sink's on_fail."""
        if self._close():
            if self.pool.stats is not None and not self.responding:
                elapsed = self.pool.loop.time() - self._started
                self.pool.stats.record(self.origin.label, status, elapsed)
            self.sink.on_fail(status, reason)

    def _unwatch(self) -> None:
        self.pool._active.discard(self)


class UpstreamPool:
    """Keep-alive connections to upstreams, shared by every request of a gateway process.

    Use it from the event loop it was first used on; :meth:`close` closes every idle
    connection (calls under way end with their connections).
    """

    def __init__(self, limits: PoolLimits | None = None) -> None:
        self.limits = limits or PoolLimits()
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ssl: ssl.SSLContext | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        #: Calls under way, whose timeouts one clock checks every TICK seconds (cheaper
        #: than a timer per request).
        self._active: set[UpstreamCall] = set()
        self._clock: asyncio.TimerHandle | None = None
        self._origins: dict[bytes, Origin] = {}
        #: Where answers are counted for the metrics (None: they are not).
        self.stats: UpstreamStats | None = None

    def origin(self, text: bytes) -> Origin:
        """The parsed ``scheme://authority`` (cached: a gateway has few upstreams).
        ValueError with a sentence when it is not an http(s) origin."""
        found = self._origins.get(text)
        if found is None:
            found = parse_origin(text.decode("utf-8", "surrogateescape"))
            if len(self._origins) >= 1024:
                self._origins.clear()
            self._origins[text] = found
        return found

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def call(
        self,
        method: str,
        target: Target,
        headers: list[Header],
        body: bytes | None,
        sink: ResponseSink,
        *,
        body_length: int | None = None,
        connect_timeout: float | None = None,
        timeout: float | None = None,
    ) -> UpstreamCall:
        """Starts a request; its answer goes to ``sink``. ``body=None`` streams the body
        (``body_length`` when known, else chunked)."""
        length = len(body) if body is not None else body_length
        return self.send(
            method,
            target.origin,
            request_head(method, target, headers, length),
            body,
            sink,
            chunked=length is None,
            connect_timeout=connect_timeout,
            timeout=timeout,
        )

    def send(
        self,
        method: str,
        origin: Origin,
        head: bytes,
        body: bytes | None,
        sink: ResponseSink,
        *,
        chunked: bool = False,
        connect_timeout: float | None = None,
        timeout: float | None = None,
    ) -> UpstreamCall:
        """Starts a request whose head the caller built (its framing says whether a
        streamed body goes ``chunked``)."""
        call = UpstreamCall(
            self,
            method,
            origin,
            head,
            body,
            sink,
            chunked=chunked,
            connect_timeout=connect_timeout,
            timeout=timeout,
        )
        call.start()
        return call

    @property
    def idle_connections(self) -> int:
        return sum(len(conns) for conns in self._idle.values())

    # ------------------------------------------------------------- connections
    def _acquire(self, call: UpstreamCall) -> None:
        idle = self._idle.get(call.origin.endpoint)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                call.attach(conn, reused=True)
                return
        self.loop.create_task(self._connect(call))

    async def _connect(self, call: UpstreamCall) -> None:
        target = call.origin
        context = None
        if target.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(call.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self, target.endpoint),
                    target.host,
                    target.port,
                    ssl=context,
                    server_hostname=target.host if context else None,
                )
        except TimeoutError:
            call.fail(
                504,
                f"could not connect to {target.host}:{target.port} within "
                f"{call.connect_timeout:g} s",
            )
            return
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            call.fail(502, f"could not connect to {target.host}:{target.port}: {reason}")
            return
        self._open.add(conn)
        if call.done:  # the client left or the call timed out meanwhile
            self._release(conn)
        else:
            call.attach(conn, reused=False)

    def _release(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.endpoint, [])
        if len(idle) >= self.limits.max_idle_per_endpoint:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.limits.idle_timeout / 2, self._sweep)

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.endpoint)
        if idle and conn in idle:
            idle.remove(conn)

    def _sweep(self) -> None:
        self._sweeper = None
        oldest = self.loop.time() - self.limits.idle_timeout
        for idle in list(self._idle.values()):
            for conn in [c for c in idle if c.idle_since <= oldest]:
                conn.close()
        if self.idle_connections:
            self._sweeper = self.loop.call_later(self.limits.idle_timeout / 2, self._sweep)

    def _watch(self, call: UpstreamCall) -> None:
        self._active.add(call)
        if self._clock is None:
            self._clock = self.loop.call_later(TICK, self._tick)

    def _tick(self) -> None:
        self._clock = None
        now = self.loop.time()
        for call in list(self._active):
            call.expire(now)
        if self._active:
            self._clock = self.loop.call_later(TICK, self._tick)

    async def close(self) -> None:
        """Closes every connection."""
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn.close()
        self._idle.clear()


class BufferedAnswer:
    """A sink that gathers the whole answer, for callers that need it whole."""

    def __init__(self, future: "asyncio.Future[Any]") -> None:
        self.future = future
        self.status = 0
        self.headers: list[Header] = []
        self.chunks: list[bytes] = []

    def on_head(self, status: int, headers: list[Header]) -> None:
        self.status, self.headers = status, headers

    def on_body(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def on_end(self) -> None:
        if not self.future.done():
            self.future.set_result((self.status, self.headers, b"".join(self.chunks), ""))

    def on_fail(self, status: int, reason: str) -> None:
        if not self.future.done():
            self.future.set_result((status, [], b"", reason))

    def on_flush(self) -> None:
        pass
