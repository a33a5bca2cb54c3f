"""Performing the upstream requests actions ask for (ph_upstream), asynchronously.

One pooled aiohttp session per gateway process. Connection failures answer 502, timeouts
504; the chain's response phase runs either way.
"""

from __future__ import annotations

import asyncio
import logging
import re


import aiohttp
from yarl import URL

from .chain import Upstream, UpstreamAnswer

log = logging.getLogger("plughost.upstream")

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 30.0

# Hop-by-hop headers (RFC 9110 section 7.6.1) never cross the gateway.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate",
                        b"proxy-authorization"})

# Headers aiohttp would add by itself: a proxy sends only what the client sent (an invented
# Accept-Encoding would get the client a compressed body it never asked for).
AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
# Written by aiohttp for the upstream request itself.
_SET_BY_THE_CLIENT = frozenset({b"host", b"content-length"})


def connection_options(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The header names a message's Connection header lists: hop-by-hop too (RFC 9110
    section 7.6.1), so they are dropped with it."""
    return frozenset(token.strip().lower() for name, value in headers
                     if name.lower() == b"connection" for token in value.split(b",")
                     if token.strip())


def forwardable(headers: list[tuple[bytes, bytes]],
                drop: frozenset[bytes] = frozenset()) -> list[tuple[str, str]]:
    """The request headers to send upstream, as aiohttp takes them: without the hop-by-hop
    ones, those the Connection header names, and ``drop`` (lower-case names)."""
    listed = connection_options(headers)
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers
            if k.lower() not in HOP_BY_HOP and k.lower() not in listed and k.lower() not in drop]


# A URL made only of URL characters and valid %XX escapes: already encoded by the action.
_ENCODED_URL = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")


def target(url: str) -> URL | str:
    """The URL to request. An already-encoded URL is sent as the action wrote it: yarl would
    otherwise quote it again and change the query (``%2F`` becomes ``/``), which breaks
    signed URLs. Any other URL is quoted by yarl."""
    return URL(url, encoded=True) if _ENCODED_URL.fullmatch(url) else url


class UpstreamClient:
    """A pooled async HTTP client that performs upstream directives."""

    def __init__(self, *, limit: int = 256) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The pooled session (created on first use)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  cookie_jar=aiohttp.DummyCookieJar(),
                                                  skip_auto_headers=AUTO_HEADERS)
        return self._session

    async def perform(self, upstream: Upstream) -> UpstreamAnswer:
        """Sends the request; the answer, or 502/504 with the reason. A WebSocket
        directive on a plain HTTP request gets 426 Upgrade Required."""
        if upstream.websocket:
            return UpstreamAnswer(426, [(b"upgrade", b"websocket"),
                                        (b"content-type", b"application/json")],
                                  b'{"error":"upgrade required","status":426}')
        headers = forwardable(upstream.headers, _SET_BY_THE_CLIENT)
        timeout = aiohttp.ClientTimeout(total=upstream.timeout or DEFAULT_TIMEOUT,
                                        sock_connect=upstream.connect_timeout or
                                        DEFAULT_CONNECT_TIMEOUT)
        try:
            async with self.session().request(
                    upstream.method, target(upstream.url), headers=headers,
                    data=upstream.body or None, timeout=timeout, allow_redirects=False) as resp:
                body = await resp.read()
                raw = list(resp.raw_headers)
                listed = connection_options(raw)
                answer = [(k, v) for k, v in raw
                          if k.lower() not in HOP_BY_HOP and k.lower() not in listed
                          and k.lower() != b"content-length"]
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


