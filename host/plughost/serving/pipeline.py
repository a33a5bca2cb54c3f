"""The request pipeline: the one way a request is served, whoever calls it.

plughost's HTTP protocol, the ASGI application (under any ASGI server), in-process
``Gateway.handle`` and WebSocket handshakes all serve a request through its gateway's
:class:`Pipeline`, which owns every step and every rule, in this order:

1. the serving rules of ``server.yaml`` (:class:`ServingRules`): the health routes,
   ``getOnly``, ``bodyLimit``, the client address behind a trusted ``proxyHeader``;
2. routing (the gateway's RouteTable: static, ``:param`` and ``*`` routes; 404 and 405);
3. the chain, run by one C call (``_fastpath.serve``) inline or, for a may-block chain, in
   a worker thread with the GIL released. Its result has one of two types: a
   :class:`Response`, or the :class:`PendingUpstream` that owns the exchange while the
   upstream request its action asked for is made;
4. the upstream continuation: held whole (:meth:`Pipeline.complete`), streamed both ways
   (plughost.proxy.relay on the ASGI path, plughost.proxy.direct on plughost's protocol) or a
   WebSocket session (plughost.serving.websocket);
5. HEAD (:func:`for_method`) and errors (:data:`INTERNAL_ERROR`; an element's failure is
   logged with its route, :func:`log_failure`).

The one-call C paths are the same pipeline compiled: :attr:`Pipeline.native` (a
``plughost._fastpath.Native``, built once per configuration) holds the static and wildcard
route tables and the health routes, so that :meth:`Pipeline.plain` (plughost's protocol) and
:meth:`Pipeline.scope` (an ASGI scope) answer a plain request on such a route in one call,
with the same rules and the same result types. What they leave (a body, a ``:param`` route
in an ASGI scope, a may-block chain, a serving rule that needs Python) takes steps 1-5 here.
"""

from __future__ import annotations

import asyncio
import functools
import http
import ipaddress
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence, Union

from ..metrics import host_answers
from ..metrics.host_answers import HEALTH, HOST
from ..proxy.pending import PendingUpstream
from .chain import Chain, Response, json_response, log_failure

if TYPE_CHECKING:
    from ..config.model import ServerSpec as ServerConfig
    from ..proxy.upstream import UpstreamClient
    from .gateway import Gateway

log = logging.getLogger("plughost.gateway")

Header = tuple[bytes, bytes]
#: What a chain run gives: the answer, or the exchange waiting on its upstream request.
Outcome = Union[Response, PendingUpstream]
#: Reads a request's whole body, up to a limit (raises BodyTooLarge above it, ClientGone
#: when the client leaves first).
BodyReader = Callable[[int], Awaitable[bytes]]

#: The answer to a request that failed in the host itself (logged with its traceback).
INTERNAL_ERROR = json_response(500, b'{"error":"internal error","status":500}')
#: The answer to a request body over ``bodyLimit``.
TOO_LARGE = json_response(413, b'{"error":"request body too large","status":413}')
#: The default ``bodyLimit`` (Fiber's): 4 MiB.
DEFAULT_BODY_LIMIT = 4 * 1024 * 1024
#: The default limit on a request head (request line and header fields) when
#: ``readBufferSize`` does not set one: nginx's (4 buffers of 8 KiB). Fiber's 4 KiB refuses
#: requests with the large cookies and tokens real clients send.
DEFAULT_HEAD_LIMIT = 32 * 1024
#: ``readTimeout`` and ``writeTimeout`` when Seam's 0 (none) is set or left: nginx's
#: client_header_timeout, client_body_timeout and send_timeout.
DEFAULT_TIMEOUT = 60.0


def too_large(method: str) -> Response:
    """The answer to a request body over ``bodyLimit`` (counted for the metrics)."""
    host_answers.record(HOST, method, 413)
    return TOO_LARGE


class BodyTooLarge(Exception):
    """The request body is larger than ``bodyLimit``: the client gets 413."""


class ClientGone(Exception):
    """The client disconnected before its request was complete: nothing of it goes on."""


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


#: Status lines by code, as uvicorn writes them: what the one-call C paths start with.
STATUS_LINES = tuple(_status_line(code) for code in range(600))


#: Header fields every request may carry once. A second one is how a client slips an
#: identity past a plugin that checked the first (a valid token, then an unsigned one the
#: upstream reads): such a request gets 400, whichever path serves it. A gateway adds the
#: names its plugins read as an identity (ph_require_single_header: an API key, a session id).
SINGLE_FIELDS = frozenset({b"host", b"authorization", b"proxy-authorization", b"content-length"})

#: The most names a gateway may require once (the one-call C paths keep one bit per name).
MAX_SINGLE_FIELDS = 64


def repeated_field(
    headers: Sequence[Header], single: frozenset[bytes] = SINGLE_FIELDS
) -> bytes | None:
    """The first name of ``single`` that ``headers`` (lower-case names) hold twice."""
    seen: set[bytes] = set()
    for name, _ in headers:
        if name in single:
            if name in seen:
                return name
            seen.add(name)
    return None


#: Connection options that name no other header field.
_CONNECTION_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade"})


def drop_connection_options(headers: list[Header]) -> list[Header]:
    """The client's header fields without those its Connection header names (hop-by-hop,
    RFC 9110 section 7.6.1), dropped when the request arrives: before any plugin reads them
    and before an action adds its own (``Connection: X-Forwarded-For`` removes the client's
    X-Forwarded-For, never the one httpfw adds). Upgrade stays for WebSocket handshakes."""
    listed: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            listed.update(t.strip().lower() for t in value.split(b","))
    listed -= _CONNECTION_TOKENS
    listed.discard(b"")
    if not listed:
        return headers
    return [(name, value) for name, value in headers if name not in listed]


def for_method(response: Response, method: str) -> Response:
    """The response as it goes to the client: without its body for HEAD (its headers,
    Content-Length included, stay those of the GET). The C paths do the same in C."""
    if method == "HEAD" and response.body:
        return replace(response, body=b"")
    return response


def body_framing(headers: Sequence[Header]) -> tuple[bool, int | None]:
    """Whether a request has a body, and its Content-Length (None: chunked or absent)."""
    for name, value in headers:
        if name == b"transfer-encoding":
            return True, None
        if name == b"content-length":
            try:
                return True, int(value)
            except ValueError:
                return True, None
    return False, None


@dataclass(frozen=True, slots=True)
class Request:
    """A request as the pipeline sees it; its body travels beside it."""

    method: str
    #: The decoded path (as an ASGI scope holds it).
    path: str
    #: (lower-case name, value) pairs, as received.
    headers: Sequence[Header] = ()
    #: The raw query string.
    query: bytes = b""
    #: The client's address (after the proxy-header rule).
    client: bytes = b""
    #: The path as the client wrote it (percent-escapes kept), when known.
    raw_path: bytes | None = None


@dataclass(frozen=True, slots=True)
class ServingRules:
    """The rules ``server.yaml`` sets for every request (Seam's and Fiber's keys)."""

    live_route: str | None = "/health/live"
    ready_route: str | None = "/health/ready"
    #: ``getOnly``: only GET and HEAD are served; anything else gets 405.
    get_only: bool = False
    body_limit: int = DEFAULT_BODY_LIMIT
    #: ``serverHeader``: added to every response of the HTTP server.
    server_headers: tuple[Header, ...] = ()
    #: ``proxyHeader`` (lower case): the client address comes from this header ...
    proxy_header: bytes = b""
    #: ... sent by any peer (None) or, with ``enableTrustedProxyCheck``, by these.
    trusted_proxies: tuple[Any, ...] | None = None
    #: ``enableIPValidation``: a proxy header's address must parse as one.
    validate_ip: bool = False
    #: ``readBufferSize`` (as in Fiber) or DEFAULT_HEAD_LIMIT: the most bytes a request
    #: head (request line and header fields) may take; more gets 431.
    head_limit: int = DEFAULT_HEAD_LIMIT
    #: ``uriLimit``: the longest request target; longer gets 414.
    uri_limit: int = 8 * 1024
    #: ``headerCountLimit``: the most header fields; more gets 431.
    header_count_limit: int = 100
    #: ``allowUnderscoresInHeaders`` (plughost's): keep header fields whose names hold "_";
    #: by default they are dropped (nginx's underscores_in_headers off), since CGI-style
    #: upstreams read X_User_Id as X-User-Id, a header a plugin may have removed or set.
    allow_underscores: bool = False
    #: ``readTimeout`` (seconds; Seam's 0 means DEFAULT_TIMEOUT): the longest a request may
    #: take to arrive, head and body; then 408 and the connection is closed.
    read_timeout: float = 60.0
    #: ``writeTimeout`` (seconds; 0 means DEFAULT_TIMEOUT): the longest the client may take
    #: nothing of a response; then the connection is closed.
    write_timeout: float = 60.0

    @classmethod
    def from_server(cls, server: "ServerConfig | None") -> "ServingRules":
        if server is None:
            return cls()
        live: str | None = server.health_live_route
        ready: str | None = server.health_ready_route
        if server.disable_health_check:
            live = ready = None
        return cls(
            live_route=live,
            ready_route=ready,
            get_only=bool(server.get_only),
            body_limit=server.body_limit,
            server_headers=((b"server", server.server_header.encode("latin-1")),)
            if server.server_header
            else (),
            proxy_header=server.proxy_header.lower().encode() if server.proxy_header else b"",
            trusted_proxies=tuple(
                ipaddress.ip_network(p, strict=False) for p in server.trusted_proxies
            )
            if server.enable_trusted_proxy_check
            else None,
            validate_ip=bool(server.enable_ip_validation),
            head_limit=server.read_buffer_size
            if "readBufferSize" in server.key_where
            else DEFAULT_HEAD_LIMIT,
            uri_limit=server.uri_limit,
            header_count_limit=server.header_count_limit,
            allow_underscores=server.allow_underscores_in_headers,
            read_timeout=server.read_timeout or DEFAULT_TIMEOUT,
            write_timeout=server.write_timeout or DEFAULT_TIMEOUT,
        )

    @property
    def native_ok(self) -> bool:
        """Whether the one-call C paths may answer (no rule that needs Python applies)."""
        return not (self.server_headers or self.proxy_header or self.get_only)

    def client_address(self, headers: Sequence[Header], peer: bytes) -> bytes:
        """The client's address: the peer's, or the one ``proxyHeader`` gives when the peer
        may set it. Behind trusted proxies (``enableTrustedProxyCheck``) the header is read
        from the right, skipping the trusted proxies' own addresses, as nginx's
        ``real_ip_recursive``: an appending proxy puts the client it saw last, after
        whatever the client wrote itself. Trusting every peer, the leftmost entry is taken
        (Fiber's rule). Every plugin and the logger see this one address."""
        if not self.proxy_header:
            return peer
        trusted = self.trusted_proxies
        if trusted is not None and not _within(peer, trusted):
            return peer
        entries = [
            entry.strip()
            for name, value in headers
            if name == self.proxy_header
            for entry in value.split(b",")
            if entry.strip()
        ]
        if not entries:
            return peer
        if trusted is None:
            chosen = entries[0]
        else:
            chosen = entries[0]  # every entry a trusted proxy: the first is the client
            for entry in reversed(entries):
                if not _within(entry, trusted):
                    chosen = entry
                    break
        if self.validate_ip and not _is_address(chosen):
            return peer
        return chosen


def _is_address(text: bytes) -> bool:
    try:
        ipaddress.ip_address(text.decode("latin-1"))
        return True
    except ValueError:
        return False


def _within(text: bytes, networks: tuple[Any, ...]) -> bool:
    """Whether ``text`` is an address inside one of ``networks`` (False when it is none)."""
    try:
        address = ipaddress.ip_address(text.decode("latin-1"))
    except ValueError:
        return False
    return any(address in network for network in networks)


class Pipeline:
    """How a gateway serves requests (see the module's docstring). Built by the gateway;
    the ASGI application gives it its worker threads and its upstream client."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self.routes = gateway.routes
        self.runner = gateway.runner
        server = gateway.config.server if gateway.config else None
        self.rules = ServingRules.from_server(server)
        #: Header fields a request may carry once: SINGLE_FIELDS and the names the
        #: gateway's instances read as an identity.
        self.single_fields = SINGLE_FIELDS.union(
            *(getattr(instance, "single_headers", ()) for instance in gateway.instances.values())
        )
        #: Runs may-block chains (None: the event loop's default executor).
        self.executor: Executor | None = None
        #: Performs upstream requests (None: a client made for the request, in-process).
        self.upstream: "UpstreamClient | None" = None
        self._serve = self.runner.serve_chain
        #: The one-call C paths' view of this pipeline, when they may answer.
        self.native: Any = None
        self.plain: Callable[..., Any] | None = None
        self.scope: Callable[..., Any] | None = None
        if self.runner.native is not None and self.rules.native_ok:
            self._compile()

    def _compile(self) -> None:
        from .. import _fastpath

        rules, routes = self.rules, self.routes
        self.native = self.runner.make_native(
            routes.static,
            routes.case_sensitive,
            rules.live_route,
            rules.ready_route,
            STATUS_LINES,
            routes.prefixes,
            routes.inline_route,
            tuple(sorted(self.single_fields)),
        )
        #: plain(method, target, headers, client, date lines): a plain request as
        #: plughost's protocol received it (no body, HTTP/1.1 keep-alive) -> the whole
        #: HTTP/1.1 response, the PendingUpstream of a proxied one, or None when the Python
        #: steps must take it (``_fastpath.serve_raw``).
        self.plain = functools.partial(_fastpath.serve_raw, self.native)
        #: scope(scope): the same for an ASGI scope on a static route -> the two ASGI
        #: messages, a PendingUpstream or None (``_fastpath.serve_scope``).
        self.scope = functools.partial(_fastpath.serve_scope, self.native)

    # ------------------------------------------------------------------ steps
    def early(self, request: Request) -> Response | None:
        """The answer of a serving rule that applies before routing, if one does."""
        repeated = repeated_field(request.headers, self.single_fields)
        if repeated is not None:
            return json_response(
                400, b'{"error":"more than one %s header","status":400}' % repeated
            )
        rules, path = self.rules, request.path
        if path == rules.live_route:
            return json_response(200, b'{"status":"live"}')
        if path == rules.ready_route:
            if self.gateway.ready:
                return json_response(200, b'{"status":"ready"}')
            return json_response(503, b'{"status":"starting"}')
        if rules.get_only and request.method != "GET" and request.method != "HEAD":
            return json_response(
                405, b'{"error":"method not allowed","status":405}', [(b"allow", b"GET, HEAD")]
            )
        return None

    def route(self, request: Request) -> tuple[Chain, bytes] | Response:
        """The request's chain and packed route parameters, or the router's 404/405."""
        return self.routes.route(request.method, request.path, request.raw_path)

    def run(
        self,
        chain: Chain,
        params: bytes,
        request: Request,
        body: bytes = b"",
        release_gil: bool | None = None,
    ) -> Outcome:
        """Runs ``chain`` on this thread (one C call)."""
        return self._serve(
            chain,
            request.method.encode(),
            request.path.encode("utf-8", "surrogateescape"),
            request.query,
            request.client,
            request.headers,
            body,
            params,
            chain.release_gil if release_gil is None else release_gil,
        )

    async def run_async(
        self, chain: Chain, params: bytes, request: Request, body: bytes = b""
    ) -> Outcome:
        """Runs ``chain``: inline, or in a worker thread with the GIL released when an
        element may block."""
        if not chain.may_block:
            return self.run(chain, params, request, body)
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, self.run, chain, params, request, body, True
        )

    def prepare(
        self, request: Request, body: bytes | BodyReader
    ) -> Response | tuple[Chain, bytes, bool]:
        """Steps 1-2: the answer of a serving rule or of the router, else the chain, its
        route parameters and whether the body must be read whole first."""
        answer = self.early(request)
        if answer is not None:
            health = request.path in (self.rules.live_route, self.rules.ready_route)
            host_answers.record(HEALTH if health else HOST, request.method, answer.status)
            return answer
        routed = self.route(request)
        if type(routed) is Response:
            return routed
        chain, params = routed  # type: ignore[misc]
        if isinstance(body, bytes):
            if len(body) > self.rules.body_limit:
                return too_large(request.method)
            return chain, params, False
        has_body, length = body_framing(request.headers)
        if length is not None and length > self.rules.body_limit:
            return too_large(request.method)
        return chain, params, has_body and not chain.streams

    async def start(self, request: Request, body: bytes | BodyReader = b"") -> Outcome:
        """Steps 1-3: the serving rules, routing, the chain. ``body`` is the whole body, or
        reads it when the chain needs it whole (a chain whose bodies stream runs on the
        request's head; its caller streams the body to the upstream). ClientGone when the
        client leaves before its body is complete."""
        prepared = self.prepare(request, body)
        if type(prepared) is Response:
            return prepared
        chain, params, read = prepared  # type: ignore[misc]
        if read:
            try:
                body = await body(self.rules.body_limit)  # type: ignore[operator]
            except BodyTooLarge:
                return too_large(request.method)
        elif not isinstance(body, bytes):
            body = b""
        return await self.run_async(chain, params, request, body)

    async def complete(self, pending: PendingUpstream) -> Response:
        """Step 4, held whole: performs the upstream request and runs the response phase on
        its answer (``pending`` is finished either way)."""
        try:
            directive = pending.directive()
            if self.upstream is not None:
                answer = await self.upstream.perform(directive)
            else:
                from ..proxy.upstream import UpstreamClient

                client = UpstreamClient()
                try:
                    answer = await client.perform(directive)
                finally:
                    await client.close()
        except BaseException:
            pending.discard()
            raise
        return pending.finish(answer)

    async def serve(self, request: Request, body: bytes | BodyReader = b"") -> Response:
        """Steps 1-5 for a request answered whole: the response as it goes to the client
        (the host's own failures are logged and answered 500)."""
        try:
            outcome = await self.start(request, body)
            if type(outcome) is not Response:
                outcome = await self.complete(outcome)  # type: ignore[arg-type]
        except ClientGone:
            raise
        except Exception:
            outcome = self.failed(request)
        return for_method(outcome, request.method)

    def serve_now(self, request: Request, body: bytes = b"") -> Response:
        """:meth:`serve` for a caller without an event loop (in-process): the chain runs on
        this thread whatever its flags; an upstream request runs on a loop of its own."""
        try:
            prepared = self.prepare(request, body)
            if type(prepared) is Response:
                outcome: Outcome = prepared
            else:
                chain, params, _ = prepared  # type: ignore[misc]
                outcome = self.run(chain, params, request, body)
                if type(outcome) is not Response:
                    outcome = asyncio.run(self.complete(outcome))  # type: ignore[arg-type]
        except Exception:
            outcome = self.failed(request)
        return for_method(outcome, request.method)  # type: ignore[arg-type]

    @staticmethod
    def failed(request: Request) -> Response:
        """The answer when the host itself failed on ``request`` (logged with the
        traceback of the exception being handled)."""
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return INTERNAL_ERROR

    async def handshake(self, request: Request) -> Outcome:
        """A WebSocket handshake (a GET without a body) through steps 1-3: the answer, or
        the exchange waiting on the action's directive (a WebSocket session, or an HTTP
        answer on a WebSocket route)."""
        return await self.start(replace(request, method="GET"), b"")


__all__ = [
    "BodyReader",
    "BodyTooLarge",
    "ClientGone",
    "INTERNAL_ERROR",
    "Outcome",
    "Pipeline",
    "Request",
    "ServingRules",
    "STATUS_LINES",
    "TOO_LARGE",
    "too_large",
    "body_framing",
    "for_method",
    "log_failure",
]
