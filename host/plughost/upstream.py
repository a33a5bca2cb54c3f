"""Performing the upstream requests actions ask for (ph_upstream), asynchronously.

One pooled aiohttp session per gateway process. Connection failures answer 502, timeouts
504; the chain's response phase runs either way.
"""

from __future__ import annotations

import asyncio
import logging


import aiohttp

from .chain import Upstream, UpstreamAnswer

log = logging.getLogger("plughost.upstream")

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 30.0

# Hop-by-hop headers (RFC 9110 section 7.6.1) never cross the gateway.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate",
                        b"proxy-authorization"})


class UpstreamClient:
    """A pooled async HTTP client that performs upstream directives."""

    def __init__(self, *, limit: int = 256) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def perform(self, upstream: Upstream) -> UpstreamAnswer:
        """Sends the request; the answer, or 502/504 with the reason."""
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.headers
                   if k.lower() not in HOP_BY_HOP and k.lower() not in (b"host", b"content-length")]
        timeout = aiohttp.ClientTimeout(total=upstream.timeout or DEFAULT_TIMEOUT,
                                        sock_connect=upstream.connect_timeout or
                                        DEFAULT_CONNECT_TIMEOUT)
        try:
            async with self._get_session().request(
                    upstream.method, upstream.url, headers=headers,
                    data=upstream.body or None, timeout=timeout, allow_redirects=False) as resp:
                body = await resp.read()
                answer = [(k, v) for k, v in resp.raw_headers
                          if k.lower() not in HOP_BY_HOP and k.lower() != b"content-length"]
                return UpstreamAnswer(resp.status, answer, body)
        except asyncio.TimeoutError:
            log.warning("upstream %s %s timed out", upstream.method, upstream.url)
            return UpstreamAnswer(504, error=f"upstream {upstream.url} did not answer within "
                                         f"{upstream.timeout or DEFAULT_TIMEOUT:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            log.warning("upstream %s %s failed: %s", upstream.method, upstream.url, exc)
            return UpstreamAnswer(502, error=f"upstream {upstream.url} failed: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


