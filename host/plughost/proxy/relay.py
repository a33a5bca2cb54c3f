"""A streamed proxied request on the ASGI path.

For a route whose elements all carry PH_TYPE_STREAMS_BODIES, the chain ran on the request's
head alone; :class:`AsgiUpstreamRelay` then sends the upstream request through the pooled
client while the client's body arrives (``receive()`` → upstream, waiting whenever the
upstream reads slower), runs the response phase when the upstream's head is in, and passes
the upstream's body on to ``send()`` as it arrives (reading from the upstream only while at
most a few pieces wait). A client that disconnects mid-body aborts the upstream request, so
the upstream never sees a truncated body as whole; a body over ``server.bodyLimit`` is cut
off the same way and answered 413; an upstream that breaks off mid-body makes the client's
response break off too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..serving.chain import UPGRADE_REQUIRED, UpstreamAnswer
from ..serving.pipeline import BodyTooLarge
from .client import UpstreamPool
from .message import Header, parse_target
from .pending import PendingUpstream

if TYPE_CHECKING:
    from ..serving.chain import Response

log = logging.getLogger("plughost.proxy")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Pieces of the upstream's body waiting for the client before the upstream is paused.
QUEUED_PIECES = 8


class BrokenOff(Exception):
    """The upstream's answer broke off after its head went to the client: raised out of the
    ASGI app so that the server closes the connection instead of ending the response."""


class AsgiUpstreamRelay:
    """One streamed upstream request of the ASGI path; :meth:`run` serves it."""

    def __init__(self, pool: UpstreamPool, pending: PendingUpstream, head: bool) -> None:
        self.pool = pool
        self.pending = pending
        self.head = head
        self.call: Any = None
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._paused = False

    # ------------------------------------------------------------ sink callbacks
    def on_head(self, status: int, headers: list[Header]) -> None:
        self.events.put_nowait(("head", (status, headers)))

    def on_body(self, chunk: bytes) -> None:
        self.events.put_nowait(("body", chunk))
        if self.events.qsize() >= QUEUED_PIECES and not self._paused:
            self._paused = True
            self.call.pause_reading()

    def on_end(self) -> None:
        self.events.put_nowait(("end", None))

    def on_fail(self, status: int, reason: str) -> None:
        self.events.put_nowait(("fail", (status, reason)))

    def on_flush(self) -> None:
        pass  # the events queue is the batch

    # ------------------------------------------------------------------ serving
    async def run(
        self, receive: Receive, send: Send, body_length: int | None, has_body: bool, limit: int
    ) -> None:
        try:
            upstream = self.pending.directive()
        except BaseException:
            self.pending.discard()
            raise
        if upstream.websocket:
            return await self._send_whole(send, self.pending.finish(UPGRADE_REQUIRED))
        try:
            target = parse_target(upstream.url)
        except ValueError as exc:
            log.warning("%s", exc)
            return await self._error(send, 502, str(exc))
        self.call = self.pool.call(
            upstream.method,
            target,
            upstream.headers,
            None if has_body else b"",
            self,
            body_length=body_length,
            connect_timeout=upstream.connect_timeout,
            timeout=upstream.timeout,
        )
        try:
            if has_body and not await self._send_body(receive, limit):
                return
            watcher = asyncio.ensure_future(self._watch(receive))
            try:
                await self._pass_answer(send)
            finally:
                watcher.cancel()
        finally:
            self.pending.discard()  # whatever ended it, the exchange is freed

    async def _watch(self, receive: Receive) -> None:
        """Once the request is in, the next message the server has for us says the client
        left (or that the response is complete): an answer still under way is abandoned,
        and the upstream connection closed, instead of read to its end for nobody."""
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self.call.done:
            self.call.abort()
            self.events.put_nowait(("gone", None))

    async def _send_body(self, receive: Receive, limit: int) -> bool:
        """Passes the client's body on; False when the client left (the upstream request
        is aborted); BodyTooLarge when the body outgrew ``limit`` (aborted too)."""
        call, size = self.call, 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                call.abort()
                return False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                call.abort()
                raise BodyTooLarge()
            if chunk:
                await call.drain()
                call.send(chunk)
            if not message.get("more_body", False):
                call.finish()
                return True

    async def _pass_answer(self, send: Send) -> None:
        kind, value = await self.events.get()
        if kind == "gone":
            return
        if kind == "fail":
            status, reason = value
            return await self._error(send, status, reason)
        status, headers = value
        length = self.call.content_length
        if length is not None:
            headers.append((b"content-length", b"%d" % length))
        streaming, response = self.pending.finish_head(status, headers)
        if not streaming:
            self.call.abort()
            return await self._send_whole(send, response)
        if length is not None:
            response.headers.append((b"content-length", b"%d" % length))
        await send(
            {"type": "http.response.start", "status": response.status, "headers": response.headers}
        )
        while True:
            kind, value = await self.events.get()
            if kind == "body":
                await send({"type": "http.response.body", "body": value, "more_body": True})
                if self._paused and self.events.qsize() < QUEUED_PIECES // 2:
                    self._paused = False
                    self.call.resume_reading()
            elif kind == "end":
                await send({"type": "http.response.body", "body": b""})
                return
            elif kind == "gone":
                return
            else:
                log.warning(
                    "upstream %s: %s", self.call.origin.authority.decode("latin-1"), value[1]
                )
                raise BrokenOff(value[1])

    async def _error(self, send: Send, status: int, reason: str) -> None:
        """The upstream could not answer (502/504): the response phase runs on the host's
        error answer, as for a chain that holds bodies whole."""
        where = self.call.origin.authority.decode("latin-1") if self.call else ""
        log.warning("upstream %s: %s", where, reason)
        await self._send_whole(send, self.pending.finish(UpstreamAnswer(status, error=reason)))

    async def _send_whole(self, send: Send, response: Response) -> None:
        await send(
            {"type": "http.response.start", "status": response.status, "headers": response.headers}
        )
        await send({"type": "http.response.body", "body": b"" if self.head else response.body})
