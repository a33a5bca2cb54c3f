"""plughost's ASGI application.

``plughost.asgi:app`` builds its gateway at lifespan start-up from the configuration named
by $PLUGHOST_CONFIG (the embedded default when unset), so it runs under any ASGI server:
``uvicorn plughost.asgi:app``, gunicorn with uvicorn workers, granian. ``plughost serve``
starts it with uvicorn, uvloop and httptools.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import http
import ipaddress
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from .chain import Response, json_response
from .gateway import Gateway
from .proxy.client import UpstreamPool
from .proxy.direct import DirectUpstreamRequest, NativeCalls
from .proxy.relay import TOO_LARGE, AsgiUpstreamRelay, BodyTooLarge
from .upstream import UpstreamClient
from .wsproxy import WebSocketProxy

log = logging.getLogger("plughost.asgi")

_METHODS = {m: m.encode() for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                      "OPTIONS")}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CONFIG_VARIABLE = "PLUGHOST_CONFIG"


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


#: Status lines by code, as uvicorn writes them: what _fastpath.serve_raw starts a response with.
STATUS_LINES = tuple(_status_line(code) for code in range(600))
#: Worker threads that run may-block chains (see GatewayApp).
BLOCKING_THREADS = max(16, 4 * (os.cpu_count() or 1))


class GatewayApp:
    """An ASGI application serving a :class:`Gateway`.

    ``factory`` builds the gateway (called at lifespan start-up, or on the first request
    when the server runs without lifespan).
    """

    def __init__(self, factory: Callable[[], Gateway] | None = None, *,
                 gateway: Gateway | None = None) -> None:
        self._factory = factory
        self.gateway = gateway
        self._client = UpstreamClient()
        self._websockets = WebSocketProxy(self._client.session)
        self._building = asyncio.Lock()
        # Worker threads for chains holding a may-block element (a storage on the network):
        # they spend their time in C with the GIL released, waiting on I/O, so there are
        # more of them than cores.
        self._blocking = ThreadPoolExecutor(max_workers=BLOCKING_THREADS,
                                            thread_name_prefix="plughost-blocking")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scope_fast: Callable[..., Any] | None = None  # set once the gateway is built
        self._raw: Callable[..., Any] | None = None         # the same, for plughost.protocol
        self._routed_raw: Callable[..., Any] | None = None
        self._scope_state: Any = None  # a plughost._fastpath.Native, once configured
        self._native: NativeCalls | None = None
        if gateway is not None:
            self._configure(gateway)

    def _configure(self, gateway: Gateway) -> None:
        gateway.upstream = self._client.perform
        gateway.executor = self._blocking
        server = gateway.config.server if gateway.config else None
        runner = gateway.runner
        self._static = gateway.routes.static
        self._fast = runner._fast_serve
        self._runner_native = runner.native
        self._case_sensitive = gateway.routes.case_sensitive
        self._get_only = bool(server and server.get_only)
        # server.proxyHeader: the client address comes from this header, from any peer or
        # (enableTrustedProxyCheck) only from trustedProxies (addresses or CIDR blocks).
        self._proxy_header = server.proxy_header.lower().encode() \
            if server and server.proxy_header else b""
        self._trust_all = not (server and server.enable_trusted_proxy_check)
        self._trusted = [ipaddress.ip_network(p, strict=False)
                         for p in (server.trusted_proxies if server else ())]
        self._validate_ip = bool(server and server.enable_ip_validation)
        self.body_limit = server.body_limit if server else 4 * 1024 * 1024
        self.live_route: str | None
        self.ready_route: str | None
        self.live_route = server.health_live_route if server else "/health/live"
        self.ready_route = server.health_ready_route if server else "/health/ready"
        if server and server.disable_health_check:
            self.live_route = self.ready_route = None
        self.server_header = [(b"server", server.server_header.encode("latin-1"))] \
            if server and server.server_header else []
        # The one-call path of plain requests, unless an option needs the Python path.
        if self._fast is not None and not (self.server_header or self._proxy_header or
                                           self._get_only):
            from . import _fastpath

            self._scope_state = runner.make_native(self._static, self._case_sensitive,
                                                   self.live_route, self.ready_route,
                                                   STATUS_LINES, gateway.routes.prefixes)
            self._scope_fast = _fastpath.serve_scope
            self._native = NativeCalls(self._scope_state, _fastpath.upstream_request,
                                       _fastpath.finish_raw, _fastpath.finish_head)
            # plughost's HTTP protocol asks for these once per connection: built here, once.
            self._raw = functools.partial(_fastpath.serve_raw, self._scope_state)
            self._routed_raw = self._make_routed_raw(gateway)

    def raw_handler(self) -> Callable[..., Any] | None:
        """For plughost's HTTP protocol (plughost.protocol): the one C call that serves a
        plain request on a static inline route from the request line and headers, answering
        the whole HTTP/1.1 response (``_fastpath.serve_raw``); None until the gateway is
        built, or when an option needs the ASGI path."""
        return self._raw

    def routed_raw_handler(self) -> Callable[..., Any] | None:
        """Like raw_handler, for the requests it leaves because their route is not static
        (``:param``, ``*``): routed here in Python, then served by one C call
        (``_fastpath.serve_raw_routed``). None when raw_handler is."""
        return self._routed_raw

    def _make_routed_raw(self, gateway: Gateway) -> Callable[..., Any]:
        from ._fastpath import serve_raw_routed

        state = self._scope_state
        health = {self.live_route, self.ready_route}

        def serve(method: bytes, target: bytes, headers: list[Any], client: str | None,
                  date: bytes) -> Any:
            raw_path, _, query = target.partition(b"?")
            if b"%" in raw_path or b"#" in target or raw_path[:1] != b"/":
                return None
            for name, _ in headers:  # a body comes only with one of these two
                if name == b"content-length" or name == b"transfer-encoding":
                    return None
            try:
                path = raw_path.decode("ascii")
            except UnicodeDecodeError:
                return None
            if path in health:
                return None
            routed = gateway.route(method.decode("ascii", "replace"), path)
            if type(routed) is Response:
                return None  # 404/405: the ASGI path answers them
            chain, params = routed  # type: ignore[misc]
            if chain.may_block or chain is gateway.routes.unrouted:
                return None
            return serve_raw_routed(state, chain, chain.address, chain.release_gil, method,
                                    raw_path, query, headers, client, date, params)
        return serve

    @property
    def upstream_pool(self) -> UpstreamPool:
        """The pooled upstream connections of this process."""
        return self._client.pool

    def direct_upstream(self, protocol: Any, pending: tuple[Any, ...], head: bool,
                        keep_alive: bool) -> DirectUpstreamRequest:
        """For plughost's HTTP protocol: the request that performs the upstream request a
        chain run by raw_handler left pending (``(None, exchange, passed, chain)``) and
        answers on ``protocol``'s transport; the caller starts it."""
        assert self.gateway is not None and self._native is not None
        return DirectUpstreamRequest(protocol, self._native,
                                     self.gateway.pending(pending[3], pending[1], pending[2]),
                                     head, keep_alive)

    async def _ensure_gateway(self) -> Gateway:
        if self.gateway is None:
            async with self._building:
                if self.gateway is None:
                    assert self._factory is not None
                    gateway = await asyncio.to_thread(self._factory)
                    self._configure(gateway)
                    self.gateway = gateway
        return self.gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self._scope_fast is not None:
                # The common case in one C call: a static inline route, no body, no option
                # that needs Python (None otherwise: the general path below).
                out = self._scope_fast(self._scope_state, scope)
                if out is not None:
                    if out[0] is None:  # the action asked for an upstream request
                        pending = self.gateway.pending(out[3], out[1], out[2])
                        head = scope["method"] == "HEAD"
                        if pending.chain.streams:
                            relay = AsgiUpstreamRelay(self.gateway, self._client.pool, pending,
                                                      head)
                            return await relay.run(receive, send, None, False, self.body_limit)
                        response = await self.gateway.perform_upstream(pending)
                        return await _send(send, response, head)
                    if out[2] is not None:
                        self.gateway.log_failure(out[3], out[2])
                    await send(out[0])
                    await send(out[1])
                    return
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._ensure_gateway()
                except Exception as exc:  # the problems were printed by the loader's caller
                    log.error("plughost could not start: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                # Everything built at start-up lives until shutdown: keep it out of the
                # collector's way, so requests pay only for their own short-lived objects.
                gc.collect()
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Graceful shutdown: closes the upstream pool, destroys every instance, shuts the
        plugins down."""
        await self._client.close()
        self._blocking.shutdown(wait=True)  # no chain still running when instances go
        if self.gateway is not None:
            self.gateway.close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The hot path: kept flat on purpose (every coroutine and call costs here).
        gateway = self.gateway or await self._ensure_gateway()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        path: str = scope["path"]
        if path == self.live_route or path == self.ready_route:
            return await self._health(gateway, path, send)
        if self.server_header:
            send = _with_headers(send, self.server_header)
        headers = scope["headers"]
        method: str = scope["method"]
        routed = gateway.route(method, path, scope.get("raw_path"))
        if type(routed) is not Response and routed[0].streams and not self._get_only:  # type: ignore[index]
            return await self._relay(gateway, routed, scope, receive, send)  # type: ignore[arg-type]
        body = b""
        for name, _ in headers:  # a body comes only with one of these two headers
            if name == b"content-length" or name == b"transfer-encoding":
                try:
                    body = await _read_body(receive, headers, self.body_limit)
                except ClientGone:
                    return
                break
        if body is None:
            response = json_response(413, b'{"error":"request body too large","status":413}')
        else:
            client = scope.get("client")
            query = scope.get("query_string", b"")
            client_ip = client[0].encode() if client else b""
            if self._proxy_header:
                client_ip = self._client_from_proxy(headers, client_ip)
            if self._get_only and method != "GET" and method != "HEAD":
                return await _send(send, json_response(
                    405, b'{"error":"method not allowed","status":405}',
                    [(b"allow", b"GET, HEAD")]))
            hit = self._static.get((method, path if self._case_sensitive else path.lower()))
            try:
                if hit is not None and self._fast is not None:
                    # The common case, flattened: a static route run in one C call, inline
                    # or (a may-block chain) in a worker thread with the GIL released.
                    chain = hit[0]
                    args = (self._runner_native, chain.address,
                            _METHODS.get(method) or method.encode(), hit[2], query, client_ip,
                            headers, body, b"")
                    if chain.may_block:
                        status, a, b, failure = await self._loop.run_in_executor(
                            self._blocking, self._fast, *args, True)
                    else:
                        status, a, b, failure = self._fast(*args, chain.release_gil)
                    if status:
                        if failure is not None:
                            gateway.log_failure(chain, failure)
                        await send({"type": "http.response.start", "status": status,
                                    "headers": a})
                        await send({"type": "http.response.body",
                                    "body": b"" if method == "HEAD" else b})
                        return
                    response = await gateway.perform_upstream(gateway.pending(chain, a, b))
                else:
                    result = gateway.dispatch(method, path, headers, body, query, client_ip,
                                              routed=routed)
                    response = result if type(result) is Response else await result
            except Exception:
                log.exception("unexpected error handling %s %s", method, path)
                response = json_response(500, b'{"error":"internal error","status":500}')
        await send({"type": "http.response.start", "status": response.status,
                    "headers": response.headers})
        await send({"type": "http.response.body",
                    "body": b"" if method == "HEAD" else response.body})

    async def _relay(self, gateway: Gateway, routed: tuple[Any, bytes], scope: Scope,
                     receive: Receive, send: Send) -> None:
        """A request on a route whose bodies stream (PH_TYPE_STREAMS_BODIES): the chain runs
        on its head, and an upstream request it asks for streams both ways
        (plughost.proxy.relay)."""
        chain, params = routed
        headers = scope["headers"]
        method: str = scope["method"]
        has_body, length = _body_framing(headers)
        if length is not None and length > self.body_limit:
            return await _send(send, TOO_LARGE)
        client = scope.get("client")
        client_ip = client[0].encode() if client else b""
        if self._proxy_header:
            client_ip = self._client_from_proxy(headers, client_ip)
        args = (chain, method.encode(), scope["path"].encode("utf-8", "surrogateescape"),
                scope.get("query_string", b""), client_ip, headers, b"", params)
        try:
            if chain.may_block:
                result = await asyncio.get_running_loop().run_in_executor(
                    self._blocking, gateway._run, *args, True)
            else:
                result = gateway._run(*args, chain.release_gil)
        except Exception:
            log.exception("unexpected error handling %s %s", method, scope["path"])
            result = json_response(500, b'{"error":"internal error","status":500}')
        if type(result) is Response:
            return await _send(send, result, method == "HEAD")
        relay = AsgiUpstreamRelay(gateway, self._client.pool, result,  # type: ignore[arg-type]
                                  method == "HEAD")
        try:
            await relay.run(receive, send, length, has_body, self.body_limit)
        except BodyTooLarge:
            await _send(send, TOO_LARGE)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.gateway or await self._ensure_gateway()
        client = scope.get("client")
        client_ip = client[0].encode() if client else b""
        if self._proxy_header:
            client_ip = self._client_from_proxy(scope["headers"], client_ip)
        try:
            await self._websockets.serve(gateway, scope, receive, send, client_ip)
        except Exception:
            log.exception("unexpected error in the WebSocket session of %s", scope["path"])
            raise

    def _client_from_proxy(self, headers: list[Any], peer: bytes) -> bytes:
        if not self._trust_all:
            try:
                address = ipaddress.ip_address(peer.decode())
            except ValueError:
                return peer
            if not any(address in network for network in self._trusted):
                return peer
        for name, value in headers:
            if name == self._proxy_header:
                first = value.split(b",", 1)[0].strip()
                if self._validate_ip:
                    try:
                        ipaddress.ip_address(first.decode("latin-1"))
                    except ValueError:
                        return peer
                return first or peer
        return peer

    async def _health(self, gateway: Gateway, path: str, send: Send) -> None:
        if path == self.live_route:
            response = json_response(200, b'{"status":"live"}')
        elif gateway.ready:
            response = json_response(200, b'{"status":"ready"}')
        else:
            response = json_response(503, b'{"status":"starting"}')
        await _send(send, response)


def _body_framing(headers: list[Any]) -> tuple[bool, int | None]:
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


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], *extra]}
        await send(message)
    return wrapped


class ClientGone(Exception):
    """The client disconnected before its request was complete: nothing of it goes on."""


async def _read_body(receive: Receive, headers: list[Any], limit: int) -> bytes | None:
    """The whole request body, or None when it is larger than ``limit``; ClientGone when
    the client disconnects before the body is complete (a truncated body is never passed
    on as if it were whole)."""
    for name, value in headers:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    return None
            except ValueError:
                pass
            break
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        if chunk:
            chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _send(send: Send, response: Response, head: bool = False) -> None:
    # Every response carries content-length already: the C runtime adds it to chain
    # responses, json_response to the host's own.
    await send({"type": "http.response.start", "status": response.status,
                "headers": response.headers})
    await send({"type": "http.response.body", "body": b"" if head else response.body})


def _from_environment() -> Gateway:
    source = os.environ.get(CONFIG_VARIABLE)
    if source:
        return Gateway.from_config(source)
    from .defaults import default_config

    return Gateway.from_config(default_config())


app = GatewayApp(_from_environment)
