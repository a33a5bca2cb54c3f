"""A proxied request on plughost's HTTP protocol, answered without an ASGI cycle.

When the direct path's one C call ends with the action asking for an upstream request,
:class:`DirectUpstreamRequest` takes it from there in callbacks: it reads the directive,
sends it through the pooled client, and answers the client with one more C call. A chain
whose elements all stream bodies (PH_TYPE_STREAMS_BODIES) runs its response phase as soon
as the upstream's headers are in (``_fastpath.finish_head``) and passes the body on as it
arrives, chunked when the upstream gave no length, reading from the upstream only as fast
as the client takes it; any other chain gets the whole answer (``_fastpath.finish_raw``).
No task, coroutine or ASGI message is made. While it waits it stands in for uvicorn's
request-response cycle on the connection (a pipelined request waits behind it; a client
that disconnects aborts the upstream request; a server shutdown ends keep-alive).
"""

from __future__ import annotations

import logging
from typing import Any

from .. import _fastpath
from ..serving.chain import UPGRADE_REQUIRED
from .client import UpstreamPool
from .message import Header, framing, parse_origin
from .pending import PendingUpstream

log = logging.getLogger("plughost.proxy")


class DirectUpstreamRequest:
    """One proxied request of the direct path, from the pending exchange to the response
    written on the client's transport. Started by :meth:`start`."""

    __slots__ = (
        "protocol",
        "native",
        "pending",
        "chain",
        "head",
        "keep_alive",
        "call",
        "status",
        "headers",
        "chunks",
        "response_complete",
        "disconnected",
        "more_body",
        "body",
        "_streaming",
        "_chunked",
        "_out",
        "_timed",
    )

    def __init__(
        self, protocol: Any, native: Any, pending: PendingUpstream, head: bool, keep_alive: bool
    ) -> None:
        self.protocol = protocol
        self.native = native
        self.pending = pending
        self.chain = pending.chain
        self.head = head
        self.keep_alive = keep_alive
        self.call: Any = None
        self.status = 0
        self.headers: list[Header] = []
        self.chunks: list[bytes] = []
        self._streaming = False  # the head went out; the body follows as it arrives
        self._chunked = False  # ... in chunked framing
        self._out: list[bytes] = []  # what the current upstream read gave, not yet written
        self._timed = False  # the body's waits are timed by idleness
        # What uvicorn's protocol reads and writes of the cycle it is running.
        self.response_complete = False
        self.disconnected = False
        self.more_body = False
        self.body = b""

    @property
    def message_event(self) -> "DirectUpstreamRequest":
        """uvicorn's protocol calls ``cycle.message_event.set()``: see :meth:`set`."""
        return self

    def start(self, pool: UpstreamPool) -> None:
        """Sends the upstream request (one C call reads it off the exchange)."""
        try:
            (origin_text, path, method, lines, body, connect_ms, timeout_ms, websocket, url) = (
                _fastpath.upstream_request(self.pending)
            )
        except Exception:
            self.pending.discard()
            raise
        if websocket:
            answer = UPGRADE_REQUIRED
            self._respond(answer.status, list(answer.headers), answer.body, "")
            return
        try:
            origin = (
                pool.origin(origin_text)
                if origin_text
                else parse_origin(url.decode("utf-8", "replace"))
            )
        except ValueError as exc:
            log.warning("%s", exc)
            self._respond(502, [], b"", str(exc))
            return
        name = method.decode("ascii", "replace")
        head = b"%s %s HTTP/1.1\r\nhost: %s\r\n%s%s\r\n" % (
            method,
            path,
            origin.authority,
            lines,
            framing(name, len(body)),
        )
        self.call = pool.send(
            name,
            origin,
            head,
            body,
            self,
            connect_timeout=connect_ms / 1000 if connect_ms > 0 else None,
            timeout=timeout_ms / 1000 if timeout_ms > 0 else None,
        )

    # ------------------------------------------------------- the upstream's answer
    def on_head(self, status: int, headers: list[Header]) -> None:
        if not self.chain.streams:
            self.status, self.headers = status, headers
            return
        call = self.call
        length = call.content_length
        if length is not None:
            headers.append((b"content-length", b"%d" % length))
        if self.head or status == 204 or status == 304:
            framing = (
                b"content-length: %d\r\n" % length if length is not None and status != 204 else b""
            )
        elif length is not None:
            framing = b"content-length: %d\r\n" % length
        else:
            framing = b"transfer-encoding: chunked\r\n"
            self._chunked = True
        protocol = self.protocol
        pending = self.pending
        streaming, data = _fastpath.finish_head(
            self.native,
            self.chain,
            pending.take(),
            pending.passed,
            status,
            headers,
            framing,
            protocol._date(),
            self.head,
        )
        if not streaming:  # a response hook answered instead: the upstream's body is not needed
            self._chunked = False
            call.abort()
            self._complete(data)
            return
        self._streaming = True
        self._out.append(data)
        if protocol.flow.write_paused:
            call.pause_reading()

    def on_body(self, chunk: bytes) -> None:
        if not self._streaming:
            self.chunks.append(chunk)
            return
        if self._chunked:
            self._out += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
        else:
            self._out.append(chunk)

    def on_flush(self) -> None:
        """What one upstream read gave goes to the client in one write (a small answer:
        head, body and end in a single write). A body still under way is then timed by
        idleness."""
        if self._out:
            out, self._out = self._out, []
            transport = self.protocol.transport
            if not transport.is_closing():
                transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self._streaming and not self._timed and self.call is not None:
            self._timed = True
            self.call.time_body_by_idleness()

    def on_end(self) -> None:
        if self._streaming:
            if self._chunked:
                self._out.append(b"0\r\n\r\n")
            out, self._out = self._out, []
            self._complete(b"".join(out))
            return
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self._respond(self.status, self.headers, body, "")

    def on_fail(self, status: int, reason: str) -> None:
        origin = self.call.origin if self.call is not None else None
        where = f" {origin.authority.decode('latin-1')}" if origin is not None else ""
        log.warning("upstream%s: %s", where, reason)
        if self._streaming:
            # The head may be out: the client must see the answer broken off, never whole.
            self.on_flush()
            self.response_complete = True
            self.call = None
            self.protocol.transport.abort()
            return
        self._respond(status, [], b"", f"upstream{where}: {reason}")

    # ------------------------------------------------------------ flow control
    def pause_writing(self) -> None:
        """The client's transport is full: stop reading from the upstream."""
        if self.call is not None:
            self.call.pause_reading()

    def resume_writing(self) -> None:
        if self.call is not None:
            self.call.resume_reading()

    # ------------------------------------------------------------ the client side
    def set(self) -> None:
        """uvicorn's protocol wakes its cycle this way; for us it matters only when the
        client disconnected: the upstream request is abandoned and the exchange freed."""
        if self.disconnected and not self.response_complete:
            self.response_complete = True
            if self.call is not None:
                self.call.abort()
            self.pending.discard()

    def _respond(self, status: int, headers: list[Header], body: bytes, reason: str) -> None:
        if self.response_complete:
            return
        self.response_complete = True
        self.call = None
        protocol = self.protocol
        pending = self.pending
        data = _fastpath.finish_raw(
            self.native,
            self.chain,
            pending.take(),
            pending.passed,
            status,
            headers,
            body,
            reason.encode("utf-8", "replace"),
            protocol._date(),
            self.head,
        )
        self._complete(data)

    def _complete(self, data: bytes) -> None:
        """Writes the last of the response and hands the connection back to the protocol."""
        self.response_complete = True
        self.call = None
        protocol = self.protocol
        transport = protocol.transport
        if transport.is_closing():
            return
        if data:
            transport.write(data)
        if not self.keep_alive:
            transport.close()
        protocol.on_response_complete()
