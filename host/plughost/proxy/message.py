"""What crosses the gateway: upstream targets, request heads and the headers kept.

Rules that hold for every forwarded request and response live here, once:

- hop-by-hop headers (RFC 9110 section 7.6.1), and those a ``Connection`` header names,
  never cross the gateway in either direction;
- the gateway writes a request's ``Host`` (the upstream's authority) and its body framing
  itself; ``Expect`` is answered by the gateway, which then sends the body at once, so it is
  not passed on (RFC 9110 section 10.1.1 lets an intermediary do that);
- a response's framing (``Content-Length``, ``Transfer-Encoding``) and ``Date`` are the
  gateway's own: one ``Date`` from the gateway's clock, as nginx does;
- the request target is sent exactly as the action wrote it: percent-escapes are never
  decoded and encoded again, so ``%00``, ``%2F`` and ``%ff`` reach the upstream unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

Header = tuple[bytes, bytes]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
#: Request headers the gateway writes itself for the upstream request.
_REQUEST_OWN = frozenset({b"host", b"content-length", b"expect"})
#: Response headers the gateway writes itself for the client.
_RESPONSE_OWN = frozenset({b"content-length", b"date"})
#: Methods whose requests anticipate a body: they get ``Content-Length: 0`` when empty.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def connection_options(headers: Iterable[Sequence[bytes]]) -> frozenset[bytes]:
    """The header names a message's Connection header lists (lower case): hop-by-hop too
    (RFC 9110 section 7.6.1), so they are dropped with it."""
    return frozenset(
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
        if token.strip()
    )


def forwardable(
    headers: Sequence[Sequence[bytes]], drop: frozenset[bytes] = frozenset()
) -> list[Header]:
    """A request's ``headers`` without the hop-by-hop ones and ``drop`` (lower-case names).
    The fields the client's Connection header named were dropped when the request arrived
    (plughost.serving.pipeline.drop_connection_options): what an action added stays."""
    kept = []
    for name, value in headers:
        lower = name.lower()
        if lower not in HOP_BY_HOP and lower not in drop:
            kept.append((name, value))
    return kept


_NOT_PASSED_ON = HOP_BY_HOP | _RESPONSE_OWN


def response_headers(headers: Sequence[Sequence[bytes]]) -> tuple[list[Header], int | None, bool]:
    """An upstream's response headers as the gateway passes them to the client, with what
    frames the body: (headers, Content-Length or None, whether it is chunked). One pass
    over the headers: this runs for every proxied response."""
    kept: list[Header] = []
    length: int | None = None
    chunked = False
    listed: frozenset[bytes] = frozenset()
    for name, value in headers:
        lower = name.lower()
        if lower in _NOT_PASSED_ON:
            if lower == b"content-length":
                length = int(value) if value.strip().isdigit() else None
            elif lower == b"transfer-encoding":
                chunked = True
            elif lower == b"connection":
                listed |= connection_options([(name, value)])
            continue
        kept.append((name, value))
    if listed - {b"keep-alive", b"close"}:
        kept = [(name, value) for name, value in kept if name.lower() not in listed]
    return kept, None if chunked else length, chunked


@dataclass(frozen=True, slots=True)
class Origin:
    """An upstream's ``scheme://authority``: what pooled connections are shared by."""

    scheme: str  # "http" or "https"
    host: str  # name or address to connect to (IPv6 without brackets)
    port: int
    authority: bytes  # the Host header: host[:port] as the URL wrote it, userinfo removed
    label: str = ""  # "scheme://authority": how the metrics name the upstream

    @property
    def endpoint(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@dataclass(frozen=True, slots=True)
class Target:
    """Where an upstream request goes: the origin and the request target."""

    origin: Origin
    path: bytes  # origin-form request target (path and query), never decoded


def _escape(text: str) -> bytes:
    """The URL part as bytes, with every byte a request line cannot carry percent-encoded
    (controls, space, non-ASCII as UTF-8); existing escapes are kept as written."""
    raw = text.encode("utf-8", "surrogateescape")
    if all(0x20 < b < 0x7F for b in raw):
        return raw
    return b"".join(b"%%%02X" % b if not 0x20 < b < 0x7F else bytes((b,)) for b in raw)


def parse_origin(url: str) -> Origin:
    """The origin of an absolute ``http(s)://`` URL (anything after the authority is
    ignored). ValueError with a sentence when it is not one."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise ValueError(f"upstream URL {url!r} is not an absolute http:// or https:// URL")
    cut = min(
        (i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest)
    )
    authority = rest[:cut].rpartition("@")[2]
    if authority.startswith("["):
        host, bracket, port_text = authority[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise ValueError(f"upstream URL {url!r} has a malformed IPv6 address")
        port_text = port_text[1:]
    else:
        host, _, port_text = authority.partition(":")
    if not host:
        raise ValueError(f"upstream URL {url!r} names no host")
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError(f"upstream URL {url!r} has an invalid port {port_text!r}")
    port = int(port_text) if port_text else _DEFAULT_PORTS[scheme]
    escaped = _escape(authority)
    return Origin(scheme, host, port, escaped, f"{scheme}://{escaped.decode('latin-1')}")


def parse_target(url: str) -> Target:
    """Splits an absolute ``http(s)://`` URL without decoding anything; the fragment is
    dropped (it is never sent). ValueError with a sentence when it is not one."""
    origin = parse_origin(url)
    rest = url.partition("://")[2].split("#", 1)[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    path = rest[cut:]
    if path.startswith("?") or not path:
        path = "/" + path
    return Target(origin, _escape(path))


def framing(method: str, body_length: int | None) -> bytes:
    """The header line that frames a request body: ``Content-Length: body_length``, or
    chunked when the length is not known yet (``None``); none for an empty body of a
    method that anticipates none."""
    if body_length is None:
        return b"transfer-encoding: chunked\r\n"
    if body_length or method in _BODY_METHODS:
        return b"content-length: %d\r\n" % body_length
    return b""


def request_head(
    method: str, target: Target, headers: Sequence[Sequence[bytes]], body_length: int | None
) -> bytes:
    """The HTTP/1.1 request head for the upstream: the request line, ``Host``, the
    forwardable headers and the body's framing (see :func:`framing`)."""
    lines = [
        b"%s %s HTTP/1.1\r\nhost: %s\r\n"
        % (method.encode("ascii"), target.path, target.origin.authority)
    ]
    for name, value in forwardable(headers, _REQUEST_OWN):
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(framing(method, body_length))
    lines.append(b"\r\n")
    return b"".join(lines)
