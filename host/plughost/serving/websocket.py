"""WebSocket sessions: a handshake through its route's chain, then frames relayed both ways.

An action asks for a session with a ``PH_UPSTREAM_WEBSOCKET`` upstream directive (the wsfw
plugin's WebSocketAction). The host opens the upstream WebSocket with aiohttp, runs the
response phase with status 101 (or with the upstream's refusal, 502 or 504), accepts the
client's handshake with the headers the response phase left, and relays text and binary
messages until a side closes, a ping goes unanswered or the session stays idle too long
(the limits the action set, ABI 1.1). Pings of the client are the ASGI server's job.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Awaitable, Callable

import aiohttp
from yarl import URL

from ..proxy.message import HOP_BY_HOP, forwardable
from .chain import Response, Upstream, UpstreamAnswer
from .pipeline import Pipeline, Request

log = logging.getLogger("plughost.websocket")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Largest message accepted from either side unless the action sets ws_max_message_bytes.
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
#: Headers of the client's handshake the upstream handshake makes itself.
_HANDSHAKE_HEADERS = frozenset(
    {
        b"host",
        b"content-length",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)
#: Close codes an endpoint may send in a close frame (RFC 6455 section 7.4).
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def _sendable(code: int | None) -> int:
    if code is not None and (code in _SENDABLE or 3000 <= code <= 4999):
        return code
    return 1000 if code in (None, 1005) else 1011


# A URL made only of URL characters and valid %XX escapes: already encoded by the action.
_ENCODED_URL = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")


def target(url: str) -> URL | str:
    """The URL to open. An already-encoded URL is used as the action wrote it (yarl would
    otherwise quote it again); any other URL is quoted by yarl."""
    return URL(url, encoded=True) if _ENCODED_URL.fullmatch(url) else url


def offered_subprotocols(headers: list[tuple[bytes, bytes]]) -> tuple[str, ...]:
    """The subprotocols the client offered (Sec-WebSocket-Protocol), in order."""
    return tuple(
        p.strip()
        for name, value in headers
        if name == b"sec-websocket-protocol"
        for p in value.decode("latin-1").split(",")
        if p.strip()
    )


class _Closed(Exception):
    """Ends a session: who ended it, the close code and reason to pass on."""

    def __init__(self, side: str, code: int, reason: str = "") -> None:
        super().__init__(f"{side} {code} {reason}")
        self.side, self.code, self.reason = side, code, reason


class WebSocketProxy:
    """Serves the ASGI ``websocket`` scopes of a gateway."""

    def __init__(self, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._session = session

    async def serve(
        self,
        pipeline: Pipeline,
        request: Request,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
    ) -> None:
        """One WebSocket request, from the client's handshake to the end of its session:
        the handshake goes through the pipeline (``request`` is the scope's view)."""
        if (await receive())["type"] != "websocket.connect":
            return
        headers = scope["headers"]
        result = await pipeline.handshake(request)
        if isinstance(result, Response):
            return await _deny(scope, send, result)
        pending = result
        try:
            upstream = pending.directive()
        except BaseException:
            pending.discard()
            raise
        if not upstream.websocket:  # an HTTP action on a WebSocket route: its answer
            return await _deny(scope, send, await pipeline.complete(pending))
        try:
            ws, answer = await self._connect(upstream, headers)
        except BaseException:
            pending.discard()
            raise
        response = pending.finish(answer)
        if ws is None or response.status != 101:
            if ws is not None:
                await ws.close(code=1001, message=b"the gateway refused the client")
            return await _deny(scope, send, response)
        offered = offered_subprotocols(headers)
        accept = [
            (k, v)
            for k, v in response.headers
            if k.lower() not in HOP_BY_HOP
            and k.lower() not in _HANDSHAKE_HEADERS
            and k.lower() != b"content-type"
        ]
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": ws.protocol if ws.protocol in offered else None,
                "headers": accept,
            }
        )
        await _Session(ws, upstream, receive, send).run()

    async def _connect(
        self, upstream: Upstream, headers: list[tuple[bytes, bytes]]
    ) -> tuple[aiohttp.ClientWebSocketResponse | None, UpstreamAnswer]:
        """Opens the upstream WebSocket: (ws, 101), or (None, the refusal as an answer)."""
        forward = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in forwardable(upstream.headers, _HANDSHAKE_HEADERS)
        ]
        protocols = (
            upstream.subprotocols
            if upstream.subprotocols is not None
            else offered_subprotocols(headers)
        )
        limit = upstream.connect_timeout or upstream.timeout or DEFAULT_HANDSHAKE_TIMEOUT
        try:
            ws = await asyncio.wait_for(
                self._session().ws_connect(
                    target(upstream.url),
                    protocols=protocols,
                    headers=forward,
                    autoping=False,
                    max_msg_size=upstream.max_message or DEFAULT_MAX_MESSAGE,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                ),
                limit,
            )
        except asyncio.TimeoutError:
            log.warning("websocket upstream %s did not answer the handshake", upstream.url)
            return None, UpstreamAnswer(
                504,
                error=f"upstream {upstream.url} did not answer "
                f"the WebSocket handshake within {limit:g} s",
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status >= 400:  # the upstream's own refusal (401, 403, 404 ...)
                log.info("websocket upstream %s refused: HTTP %s", upstream.url, exc.status)
                return None, UpstreamAnswer(exc.status, error="")
            return None, UpstreamAnswer(
                502,
                error=f"upstream {upstream.url} answered HTTP {exc.status} instead of a WebSocket",
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            log.warning("websocket upstream %s failed: %s", upstream.url, exc)
            return None, UpstreamAnswer(502, error=f"upstream {upstream.url} failed: {exc}")
        return ws, UpstreamAnswer(101)


async def _deny(scope: dict[str, Any], send: Send, response: Response) -> None:
    """Refuses the client's handshake with ``response`` when the server can send one
    (the ASGI ``websocket.http.response`` extension), else with a close."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": response.status,
                "headers": response.headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": 1011 if response.status >= 500 else 1008})


class _Session:
    """The relay of one accepted session, with its ping and inactivity limits."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, upstream: Upstream, receive: Receive, send: Send
    ) -> None:
        self.ws, self.upstream, self.receive, self.send = ws, upstream, receive, send
        self.max_message = upstream.max_message or DEFAULT_MAX_MESSAGE
        self.last_message = time.monotonic()
        self.pong = asyncio.Event()

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._client_to_upstream()),
            asyncio.create_task(self._upstream_to_client()),
        ]
        if self.upstream.ping_interval:
            tasks.append(asyncio.create_task(self._ping()))
        if self.upstream.max_inactivity:
            tasks.append(asyncio.create_task(self._watch_inactivity()))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        ended = next(iter(done)).exception()
        if not isinstance(ended, _Closed):
            log.warning("websocket session %s ended by an error: %r", self.upstream.url, ended)
            ended = _Closed("gateway", 1011, "gateway error")
        log.debug(
            "websocket session %s closed by %s: %s %s",
            self.upstream.url,
            ended.side,
            ended.code,
            ended.reason,
        )
        await self._close(ended)

    async def _close(self, ended: _Closed) -> None:
        code, reason = _sendable(ended.code), ended.reason[:120]
        if ended.side != "upstream" and not self.ws.closed:
            try:
                await self.ws.close(code=code, message=reason.encode())
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                pass
        if ended.side != "client":
            try:
                await self.send({"type": "websocket.close", "code": code, "reason": reason})
            except (OSError, RuntimeError):
                pass  # the client went away meanwhile

    async def _client_to_upstream(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                raise _Closed("client", message.get("code", 1005), message.get("reason") or "")
            text, data = message.get("text"), message.get("bytes")
            size = len(text.encode()) if text is not None else len(data or b"")
            if size > self.max_message:
                raise _Closed("gateway", 1009, "message too big")
            self.last_message = time.monotonic()
            if text is not None:
                await self.ws.send_str(text)
            else:
                await self.ws.send_bytes(data or b"")

    async def _upstream_to_client(self) -> None:
        kinds = aiohttp.WSMsgType
        while True:
            msg = await self.ws.receive()
            if msg.type is kinds.TEXT:
                self.last_message = time.monotonic()
                await self.send({"type": "websocket.send", "text": msg.data})
            elif msg.type is kinds.BINARY:
                self.last_message = time.monotonic()
                await self.send({"type": "websocket.send", "bytes": msg.data})
            elif msg.type is kinds.PING:
                await self.ws.pong(msg.data)
            elif msg.type is kinds.PONG:
                self.pong.set()
            elif msg.type is kinds.CLOSE:
                raise _Closed("upstream", msg.data, msg.extra or "")
            elif msg.type is kinds.ERROR:
                code = getattr(msg.data, "code", None) or self.ws.close_code
                raise _Closed(
                    "gateway",
                    code if code == 1009 else 1011,
                    "message too big" if code == 1009 else "upstream error",
                )
            else:  # CLOSING / CLOSED: the connection is gone without a close frame
                raise _Closed("upstream", 1011, "upstream connection lost")

    async def _ping(self) -> None:
        interval, patience = self.upstream.ping_interval, self.upstream.pong_timeout
        assert interval
        while True:
            await asyncio.sleep(interval)
            self.pong.clear()
            await self.ws.ping()
            if patience:
                try:
                    await asyncio.wait_for(self.pong.wait(), patience)
                except asyncio.TimeoutError:
                    raise _Closed("gateway", 1011, "upstream did not answer a ping") from None

    async def _watch_inactivity(self) -> None:
        limit = self.upstream.max_inactivity
        assert limit
        while True:
            left = self.last_message + limit - time.monotonic()
            if left <= 0:
                raise _Closed("gateway", 1001, "inactive")
            await asyncio.sleep(left)
