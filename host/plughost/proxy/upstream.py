"""Performing the upstream requests actions ask for (ph_upstream), asynchronously.

One :class:`UpstreamClient` per gateway process: plughost's own pooled HTTP/1.1 client
(plughost.proxy) for HTTP, and an aiohttp session for WebSocket sessions (plughost.wsproxy).
Connection failures answer 502, timeouts 504; the chain's response phase runs either way.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from ..serving.chain import UPGRADE_REQUIRED, Upstream, UpstreamAnswer
from .client import BufferedAnswer, PoolLimits, UpstreamPool
from .message import parse_target

log = logging.getLogger("plughost.upstream")


class UpstreamClient:
    """The pooled upstream connections of a gateway process."""

    def __init__(self, limits: PoolLimits | None = None) -> None:
        self.pool = UpstreamPool(limits)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session WebSocket sessions open their upstreams with."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=256, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def perform(self, upstream: Upstream) -> UpstreamAnswer:
        """Sends the request and gathers the answer, or 502/504 with the reason. A
        WebSocket directive on a plain HTTP request gets 426 Upgrade Required."""
        if upstream.websocket:
            return UPGRADE_REQUIRED
        try:
            target = parse_target(upstream.url)
        except ValueError as exc:
            log.warning("%s", exc)
            return UpstreamAnswer(502, error=str(exc))
        future: asyncio.Future[tuple] = asyncio.get_running_loop().create_future()
        call = self.pool.call(
            upstream.method,
            target,
            list(upstream.headers),
            upstream.body,
            BufferedAnswer(future),
            connect_timeout=upstream.connect_timeout,
            timeout=upstream.timeout,
        )
        try:
            status, headers, body, error = await future
        except asyncio.CancelledError:
            call.abort()
            raise
        if error:
            log.warning("upstream %s %s: %s", upstream.method, upstream.url, error)
            error = f"upstream {upstream.url}: {error}"
        return UpstreamAnswer(status, headers, body, error)

    async def close(self) -> None:
        await self.pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
