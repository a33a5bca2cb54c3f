"""plughost's HTTP/1.1 protocol for uvicorn: uvicorn's httptools protocol, plus a direct path.

A plain request (HTTP/1.1 keep-alive, no body, no upgrade, a path without ``%``) on a route
whose chain runs inline is answered straight from the parser's callback by the gateway's
pipeline (``Pipeline.plain``: one C call routes static and ``/prefix/*`` routes itself,
routes with ``:param`` are routed in Python first), which runs the chain and writes the
whole HTTP/1.1 response, status line and headers included; the protocol puts it on the
transport. When the action asks for an upstream request, the pooled client sends it
and one more C call answers (plughost.proxy.direct). No ASGI scope, task or message is made
for it, and uvicorn does not re-check headers the C runtime already validated when they were
set. Every other request (and any app but plughost's) takes
uvicorn's own ASGI path, unchanged: the two produce the same response.

``plughost serve`` uses this class; ``uvicorn plughost.asgi:app`` and other ASGI servers run
the same app without it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..metrics import host_answers
from ..metrics.host_answers import HOST
from ..proxy.direct import DirectUpstreamRequest
from ..proxy.pending import PendingUpstream
from .pipeline import ServingRules, drop_connection_options

log = logging.getLogger("plughost.protocol")

#: The longest request target the direct path takes: httptools.parse_url, which the ASGI
#: path parses targets with, refuses longer ones, and both paths must answer alike.
MAX_DIRECT_TARGET = 65535

#: The answers to a request head over a limit (the connection is closed after them).
_REFUSALS = {
    408: (b"HTTP/1.1 408 Request Timeout\r\n", b'{"error":"request timeout","status":408}'),
    414: (b"HTTP/1.1 414 URI Too Long\r\n", b'{"error":"uri too long","status":414}'),
    431: (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        b'{"error":"request header fields too large","status":431}',
    ),
}


class _HeadRefused(Exception):
    """Raised from a parser callback: the request head is over a limit (``status``)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


#: What an app offers the protocol (``GatewayApp.raw_handler``, its pipeline's ``plain``):
#: (method, target, headers, client, date lines) -> the response bytes, the PendingUpstream
#: of a proxied request, or None when the ASGI path must take the request.
RawHandler = Callable[[bytes, bytes, list, Any, bytes], Any]


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with plughost's direct path for plain requests, and
    limits on the request head whatever path takes the request."""

    #: Whether plain requests take the direct path (see AsgiHttpProtocol).
    direct = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The app's generation (a reload makes a new one) whose pipeline _raw is.
        self._generation = getattr(self.app, "generation", 0)
        offer = getattr(self.app, "raw_handler", None)
        self._raw: RawHandler | None = offer() if callable(offer) and self.direct else None
        self._answered = False  # the current request was answered by the direct path
        self._date_source: object = None
        self._date_line = b""
        offer = getattr(self.app, "serving_rules", None)
        rules = (offer() if callable(offer) else None) or ServingRules()
        self._head_limit = rules.head_limit
        self._uri_limit = rules.uri_limit
        self._header_count_limit = rules.header_count_limit
        self._allow_underscores = rules.allow_underscores
        self._read_timeout = rules.read_timeout
        self._write_timeout = rules.write_timeout
        # The head being received: its bytes so far (counted as they arrive, so that one
        # header never grows past the limit inside the parser), its fields.
        self._in_head = True
        self._head_bytes = 0
        self._header_count = self._head_size = 0
        self._connection_options = False  # the head has a Connection header
        # What the connection does once the requests before it are answered: a 400 for a
        # malformed request, or the switch to WebSocket (reading stops meanwhile).
        self._after_answers: Callable[[], None] | None = None

    # ------------------------------------------------------------ request head limits
    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
            if self._reading_since is None:  # a request's first bytes: its clock starts
                self._reading_since = now = self.loop.time()
                self._watch(now + self._read_timeout)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadRefused):
                return self._refuse(exc.__context__.status)
            return self._after_earlier_answers(self._invalid_request)
        except httptools.HttpParserError:
            return self._after_earlier_answers(self._invalid_request)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self._after_earlier_answers(self.handle_websocket_upgrade)
            else:
                self._unsupported_upgrade_warning()
            return
        if (
            self._in_head
            and self._head_bytes > self._head_limit
            and not self.transport.is_closing()
        ):
            self._refuse(431)  # a head still incomplete past the limit

    def _invalid_request(self) -> None:
        self.logger.warning("Invalid HTTP request received.")
        self.send_400_response("Invalid HTTP request received.")

    def _after_earlier_answers(self, then: Callable[[], None]) -> None:
        """Runs ``then`` (answering a malformed request, or switching to WebSocket) once
        every request received before it on this connection is answered: on both paths a
        pipelined request gets its answer, in order, whatever follows it. Reading stops
        meanwhile."""
        running = self._running is not None and not self._running.response_complete
        if not (
            running or self.pipeline or self.cycle is not None and not self.cycle.response_complete
        ):
            then()
            return
        self._after_answers = then
        self.flow.pause_reading()

    def eof_received(self) -> bool:  # type: ignore[override]
        """The client has sent all it will (a half-close, as HTTP/1.0 clients and scripts
        do): every request it completed is still answered, in order, then the connection
        closes. A request cut short by the end is dropped with the connection."""
        if self._in_head and self._head_bytes == 0 and not self.transport.is_closing():
            self._after_earlier_answers(self.transport.close)
            return True  # keep the write side open until then
        return False  # (asyncio closes the transport)

    def _refuse(self, status: int) -> None:
        """Answers a request over a limit with ``status`` and closes the connection (a
        response still under way on it is cut short)."""
        if self.transport.is_closing():
            return
        running = self._running
        if (
            running is not None
            and not running.response_complete
            or self.cycle is not None
            and not self.cycle.response_complete
        ):
            self._disconnect_cycles()  # no room for an answer: the connection just ends
            self.transport.abort()
            return
        line, body = _REFUSALS[status]
        try:
            method = self.parser.get_method().decode("latin-1")
        except Exception:  # the request line is not in yet
            method = "OTHER"
        host_answers.record(HOST, method, status)
        self.transport.write(
            b"".join(
                (
                    line,
                    self._date(),
                    b"content-type: application/json\r\n",
                    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body),
                    body,
                )
            )
        )
        self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self._uri_limit:
            raise _HeadRefused(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        if b"_" not in name or self._allow_underscores:
            super().on_header(name, value)
            if len(name) == 10 and name.lower() == b"connection":
                self._connection_options = True  # see on_headers_complete
        # else dropped: X_User_Id would reach a CGI-style upstream as X-User-Id
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4  # "name: value\r\n"
        if (
            self._header_count > self._header_count_limit
            or len(self.url) + self._head_size > self._head_limit
        ):
            raise _HeadRefused(431)

    # ------------------------------------------------------------------ timeouts
    # One timer per connection keeps its three clocks, re-armed only when it fires (or when
    # a clock starts that must end before it): how long the connection has waited for its
    # next request (the keep-alive timeout, idleTimeout), how long the request being
    # received has taken (readTimeout: head and body; for the first request, since the
    # connection opened, which uvicorn does not time at all), how long the client has taken
    # nothing we wrote (writeTimeout). uvicorn arms a timer after every response and cancels
    # it on the next request (1.8 us per request).
    _idle_since: float | None = None  # waiting for a request's first byte since
    _reading_since: float | None = None  # the first byte of the request being received
    _paused_since: float | None = None  # the client stopped taking what we write
    _watchdog: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # The first request's clock starts with the connection, as nginx's
        # client_header_timeout: a client that connects and sends nothing is closed too.
        self._reading_since = now = self.loop.time()
        self._watch(now + self._read_timeout)

    def _watch(self, deadline: float) -> None:
        """Makes sure the timer fires by ``deadline``."""
        timer = self._watchdog
        if timer is not None:
            if timer.when() <= deadline:
                return
            timer.cancel()
        self._watchdog = self.loop.call_at(deadline, self._check_clocks)

    def _check_clocks(self) -> None:
        self._watchdog = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        next_check = None
        for since, limit, ended in (
            (self._idle_since, self.timeout_keep_alive, self._idle_ended),
            (self._reading_since, self._read_timeout, self._read_ended),
            (self._paused_since, self._write_timeout, self._write_ended),
        ):
            if since is None:
                continue
            if now >= since + limit:
                return ended()
            next_check = since + limit if next_check is None else min(next_check, since + limit)
        if next_check is not None:
            self._watchdog = self.loop.call_at(next_check, self._check_clocks)

    def _idle_ended(self) -> None:
        self.transport.close()

    def _read_ended(self) -> None:
        """readTimeout: the request did not arrive in time (a slow or stalled client): 408
        when nothing else is being answered on the connection, then closed; a body not
        complete by then is never passed on (the app sees the client leave)."""
        log.debug("request not received within %g s: connection closed", self._read_timeout)
        if self._in_head and self._head_bytes == 0:
            self.transport.close()  # not a byte of a request: nothing to answer
        else:
            self._refuse(408)

    def _write_ended(self) -> None:
        """writeTimeout: the client took nothing of the response for that long. What is
        still buffered for it is dropped (a close would wait for the client to read it)."""
        log.debug("client took nothing for %g s: connection dropped", self._write_timeout)
        self._disconnect_cycles()
        self.transport.abort()

    _running: Any = None  # the cycle whose ASGI task runs (self.cycle may be a later one)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def _disconnect_cycles(self) -> None:
        """Tells every request of the connection that the client is gone, so that their
        sends end quietly (uvicorn tells only the newest one: with pipelining the one
        being answered may be an earlier one)."""
        for cycle in (self._running, self.cycle, *(c for c, _ in self.pipeline)):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # data came in: not idle

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self._after_answers is None:
            self.flow.resume_reading()
        if self.pipeline:  # a pipelined request waited for this one
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        if self._after_answers is not None:  # every request before it is answered
            then, self._after_answers = self._after_answers, None
            self.flow.resume_reading()  # (a WebSocket session reads on from here)
            then()
            return
        self._idle_since = now = self.loop.time()
        self._watch(now + self.timeout_keep_alive)

    def handle_websocket_upgrade(self) -> None:
        # The connection is the WebSocket protocol's from now on: its limits are the session's.
        self._idle_since = self._reading_since = self._paused_since = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        # uvicorn builds the request's ASGI scope here; the direct path needs none, so it is
        # built only when the ASGI path takes the request (_asgi_scope).
        self._in_head = True
        self._header_count = self._head_size = 0
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # type: ignore[assignment]

    def _asgi_scope(self) -> None:
        """The ASGI scope of the current request, as uvicorn's on_message_begin makes it."""
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.headers, self.expect_100_continue = url, headers, expect
        self.scope["headers"] = headers

    def _date(self) -> bytes:
        """The server's default headers (Date, and Server when configured) as header lines,
        rebuilt when the server replaces them (once a second)."""
        headers = self.server_state.default_headers
        if headers is not self._date_source:
            self._date_line = b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers)
            self._date_source = headers
        return self._date_line

    def _direct_allowed(self) -> bool:
        parser = self.parser
        if self.cycle is not None and not self.cycle.response_complete:
            return False  # a pipelined request waits for the one before it
        if self.flow.write_paused or parser.should_upgrade() or self.expect_100_continue:
            return False
        if parser.get_http_version() != "1.1" or not parser.should_keep_alive():
            return False
        if len(self.url) > MAX_DIRECT_TARGET:
            return False  # uvicorn's ASGI path answers it (400: httptools cannot parse it)
        limit = self.limit_concurrency
        return limit is None or (len(self.connections) < limit and len(self.tasks) < limit)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._connection_options:  # the fields it names go now, on either path
            self._connection_options = False
            self.headers = drop_connection_options(self.headers)
        if self._generation != getattr(self.app, "generation", 0):  # reloaded: take the new
            self._generation = self.app.generation
            self._raw = self.app.raw_handler() if self.direct else None
        raw = self._raw
        if raw is not None and self._direct_allowed():
            client = self.client[0] if self.client else None
            method, date = self.parser.get_method(), self._date()
            try:
                result = raw(method, self.url, self.headers, client, date)
            except Exception:
                log.exception("plughost's direct path failed; the ASGI path takes over")
                self._raw = result = None
            if result is not None:
                if type(result) is not bytes:  # the action asked for an upstream request
                    return self._continue_upstream(result)
                self.transport.write(result)
                self._answered = True
                self.on_response_complete()
                return
        self._asgi_scope()
        super().on_headers_complete()

    def _continue_upstream(self, pending: PendingUpstream) -> None:
        """The chain ran and its action wants an upstream request: the app's pooled client
        performs it in callbacks and answers on this connection, with no ASGI cycle; the
        request stands in for the cycle meanwhile (a pipelined request waits for it)."""
        request = self.app.direct_upstream(
            self, pending, self.parser.get_method() == b"HEAD", self.parser.should_keep_alive()
        )
        self.cycle = request
        self._answered = True
        request.start(self.app.upstream_pool)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._paused_since = now = self.loop.time()
        self._watch(now + self._write_timeout)
        if isinstance(self.cycle, DirectUpstreamRequest):
            self.cycle.pause_writing()  # a slow client: stop reading from the upstream

    def resume_writing(self) -> None:
        super().resume_writing()
        self._paused_since = None
        if isinstance(self.cycle, DirectUpstreamRequest):
            self.cycle.resume_writing()

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True  # what comes next on the connection is the next request's head
        self._reading_since = None  # this request is in
        if self._answered:
            self._answered = False
            return
        super().on_message_complete()


class AsgiHttpProtocol(GatewayHttpProtocol):
    """plughost's protocol without the direct path (``plughost serve --no-direct-path``):
    every request takes the ASGI path, under the same limits on the request head."""

    direct = False
