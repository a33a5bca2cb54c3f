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

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..proxy.direct import DirectUpstreamRequest
from ..proxy.pending import PendingUpstream

log = logging.getLogger("plughost.protocol")

#: The longest request target the direct path takes: httptools.parse_url, which the ASGI
#: path parses targets with, refuses longer ones, and both paths must answer alike.
MAX_DIRECT_TARGET = 65535

#: What an app offers the protocol (``GatewayApp.raw_handler``, its pipeline's ``plain``):
#: (method, target, headers, client, date lines) -> the response bytes, the PendingUpstream
#: of a proxied request, or None when the ASGI path must take the request.
RawHandler = Callable[[bytes, bytes, list, Any, bytes], Any]


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with plughost's direct path for plain requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        offer = getattr(self.app, "raw_handler", None)
        self._raw: RawHandler | None = offer() if callable(offer) else None
        self._answered = False  # the current request was answered by the direct path
        self._date_source: object = None
        self._date_line = b""

    # The keep-alive timeout, kept by one timer per connection that is re-armed only when it
    # fires: uvicorn arms a timer after every response and cancels it on the next request
    # (1.8 us per request). A connection idle for timeout_keep_alive seconds still closes.
    _idle_since: float | None = None
    _keep_alive_timer: Any = None

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # data came in: not idle

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # a pipelined request waited for this one
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self._keep_alive_timer is None:
            self._keep_alive_timer = self.loop.call_later(self.timeout_keep_alive,
                                                          self._keep_alive_check)

    def _keep_alive_check(self) -> None:
        self._keep_alive_timer = None
        since = self._idle_since
        if since is None or self.transport.is_closing():
            return  # busy: the next response arms the timer again
        idle = self.loop.time() - since
        if idle >= self.timeout_keep_alive:
            self.transport.close()
        else:
            self._keep_alive_timer = self.loop.call_later(self.timeout_keep_alive - idle,
                                                          self._keep_alive_check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._keep_alive_timer is not None:
            self._keep_alive_timer.cancel()
            self._keep_alive_timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        # uvicorn builds the request's ASGI scope here; the direct path needs none, so it is
        # built only when the ASGI path takes the request (_asgi_scope).
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
        request = self.app.direct_upstream(self, pending, self.parser.get_method() == b"HEAD",
                                           self.parser.should_keep_alive())
        self.cycle = request
        self._answered = True
        request.start(self.app.upstream_pool)

    def pause_writing(self) -> None:
        super().pause_writing()
        if isinstance(self.cycle, DirectUpstreamRequest):
            self.cycle.pause_writing()  # a slow client: stop reading from the upstream

    def resume_writing(self) -> None:
        super().resume_writing()
        if isinstance(self.cycle, DirectUpstreamRequest):
            self.cycle.resume_writing()

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._answered:
            self._answered = False
            return
        super().on_message_complete()
