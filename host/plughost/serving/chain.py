"""Chains: a route's middlewares (global ones first) and its action, run by the C runner.

A request crosses from Python into C once, whatever the length of the chain: one call into
``plughost._fastpath`` runs ``rt_serve`` (which builds the exchange, runs every request
hook, the action and every response hook), reads the response and frees the exchange. An
action that asks for an upstream request adds two more: reading the request to send, and
``rt_serve_upstream`` with the answer.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..loading.runtime import Runtime
from .generations import InFlight

_flatten = itertools.chain.from_iterable
log = logging.getLogger("plughost.gateway")


@dataclass(slots=True)
class Response:
    """What goes back to the client."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (any case), in order, decoded as Latin-1."""
        wanted = name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == wanted]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        found = self.header_values(name)
        return found[0] if found else None


@dataclass(slots=True)
class Upstream:
    """An upstream request an action asked for."""

    url: str
    method: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connect_timeout: float | None
    timeout: float | None
    websocket: bool
    #: WebSocket sessions (ABI 1.1): seconds, None when off or left to the host.
    ping_interval: float | None = None
    pong_timeout: float | None = None
    max_inactivity: float | None = None
    #: Largest message accepted from either side, bytes (None: the host's default).
    max_message: int | None = None
    #: Subprotocols to offer the upstream (None: those the client offered).
    subprotocols: tuple[str, ...] | None = None


@dataclass(slots=True)
class UpstreamAnswer:
    """What the upstream answered, or why it could not (``error`` with status 502/504)."""

    status: int
    headers: Sequence[tuple[bytes, bytes]] = ()
    body: bytes = b""
    error: str = ""


#: The answer to a WebSocket directive on a plain HTTP request (426 Upgrade Required).
UPGRADE_REQUIRED = UpstreamAnswer(
    426,
    [(b"upgrade", b"websocket"), (b"content-type", b"application/json")],
    b'{"error":"upgrade required","status":426}',
)


def _seconds(ms: int) -> float | None:
    return ms / 1000 if ms > 0 else None


def json_response(status: int, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()) -> Response:
    """A host-made JSON answer (404, 405, 413, health), with its content-length."""
    return Response(
        status,
        [
            (b"content-type", b"application/json"),
            *extra,
            (b"content-length", str(len(body)).encode()),
        ],
        body,
    )


class Chain:
    """A compiled chain. ``middlewares`` and ``action`` are instances with a ``ptr``."""

    def __init__(
        self, runtime: Runtime, middlewares: Sequence[Any], action: Any, route_name: str = ""
    ) -> None:
        self._rt = runtime
        ffi, lib = runtime.ffi, runtime.lib
        self.middlewares = list(middlewares)
        self.action = action
        array = ffi.new("rt_instance *[]", [m.ptr for m in self.middlewares] or [ffi.NULL])
        self.ptr = lib.rt_chain_new(array, len(self.middlewares), action.ptr)
        if self.ptr == ffi.NULL:
            raise MemoryError("cannot allocate a chain")
        if route_name:
            lib.rt_chain_set_route(self.ptr, route_name.encode())
        self.may_block = bool(lib.rt_chain_may_block(self.ptr))
        # Let go of the GIL while it runs (it may block, or takes a lock that a thread
        # waiting for the GIL could hold).
        self.release_gil = bool(lib.rt_chain_release_gil(self.ptr))
        self.route_name = route_name
        #: Every element declares PH_TYPE_STREAMS_BODIES: bodies stream between the client
        #: and the upstream instead of being held whole.
        self.streams = all(getattr(e, "streams_bodies", False) for e in (*self.middlewares, action))
        self.pattern = ""  # the route's path pattern, set by the gateway
        self.address = int(ffi.cast("uintptr_t", self.ptr))

    def close(self) -> None:
        if self.ptr is not None:
            self._rt.lib.rt_chain_free(self.ptr)
            self.ptr = None


def _no_route(method: str, path: str) -> None:
    """The route table of a runner without routes."""
    return None


def log_failure(chain: "Chain", failure: tuple[str, str]) -> None:
    """Logs why an element failed (the client got a JSON error with the request id)."""
    log.error("route %s: %s failed: %s", chain.route_name, failure[0] or "the chain", failure[1])


def pack(headers: Sequence[Sequence[bytes]]) -> bytes:
    """[(name, value), ...] -> b"name\\0value\\0..." (NUL cannot occur in HTTP headers)."""
    if not headers:
        return b""
    return b"\0".join(_flatten(headers)) + b"\0"


def split_packed(blob: bytes) -> list[tuple[bytes, bytes]]:
    """b"name\\0value\\0name\\0value\\0" -> [(name, value), ...]."""
    if not blob:
        return []
    parts = iter(blob.split(b"\0"))
    return list(zip(parts, parts))


class Runner:
    """Runs requests through chains for one host.

    :attr:`serve_chain` is the hot path: one call into ``plughost._fastpath`` packs the
    headers, runs the chain (``rt_serve``) and answers a Response, or the PendingUpstream
    that owns the exchange when the action asked for an upstream request.
    :meth:`serve`/:meth:`read` do the same through cffi alone (two crossings), for
    runtimes built without the fast path.
    """

    def __init__(self, runtime: Runtime, host_ptr: Any) -> None:
        self._rt = runtime
        self._host = host_ptr
        from ..proxy.pending import PendingUpstream

        #: PendingUpstream(chain, exchange address, passed) for this runner.
        self.pending = functools.partial(PendingUpstream, self)
        #: The exchanges waiting on their upstream (PendingUpstream objects still open): a
        #: reload destroys this runner's gateway only once there are none.
        self.held = InFlight()
        try:
            from .. import _fastpath
        except ImportError:  # pragma: no cover - always built by setup.py
            _fastpath = None
        #: What the one-call C paths need of this host (plughost._fastpath.Native): the
        #: runtime's entry points, read once here; a Pipeline makes one with routes too.
        self.native = (
            self.make_native({}, False, None, None, (), {}, _no_route, ())
            if _fastpath is not None
            else None
        )
        #: serve_chain(chain, method, path, query, client, headers, body, params,
        #: release_gil) -> Response | PendingUpstream (bytes arguments; headers as pairs).
        self.serve_chain: Callable[..., Any] = (
            functools.partial(_fastpath.serve, self.native)
            if _fastpath is not None
            else self._serve_cffi
        )
        self._local = threading.local()
        self._serve = runtime.lib.rt_serve
        self._free = runtime.lib.rt_exchange_free
        self._unpack = runtime.ffi.unpack
        self.UPSTREAM = runtime.lib.RT_UPSTREAM

    def _serve_cffi(
        self,
        chain: Chain,
        method: bytes,
        path: bytes,
        query: bytes,
        client: bytes,
        headers: Sequence[Sequence[bytes]],
        body: bytes,
        params: bytes,
        release_gil: bool = False,
    ) -> Any:  # pragma: no cover
        out = self.serve(chain, method, path, query, client, pack(headers), body, params)
        if out.outcome == self.UPSTREAM:
            return self.pending(chain, int(self._rt.ffi.cast("uintptr_t", out.ex)), int(out.passed))
        response, failure = self.read(out)
        if failure is not None:
            log_failure(chain, failure)
        return response

    def make_native(
        self,
        static_routes: dict[Any, Any],
        case_sensitive: bool,
        live: str | None,
        ready: str | None,
        status_lines: tuple[bytes, ...],
        prefixes: dict[str, Any],
        route: Callable[[str, str], Any],
        single_fields: tuple[bytes, ...],
    ) -> Any:
        """A plughost._fastpath.Native for this host: its runtime's entry points (addresses
        taken here, once) with a gateway's route tables (``route``: RouteTable.inline_route),
        health routes, status lines and the header fields a request may carry once (a
        request with two of one goes to the Python steps, which answer 400), and what its
        results are made of (Response, PendingUpstream, log_failure)."""
        from .._fastpath import Native

        ffi, lib = self._rt.ffi, self._rt.lib

        def address(symbol: str) -> int:
            return int(ffi.cast("uintptr_t", ffi.addressof(lib, symbol)))

        return Native(
            address("rt_serve"),
            address("rt_exchange_free"),
            address("rt_serve_upstream"),
            address("rt_serve_upstream_head"),
            int(ffi.cast("uintptr_t", self._host)),
            static_routes,
            case_sensitive,
            live,
            ready,
            status_lines,
            prefixes,
            Response,
            self.pending,
            log_failure,
            route,
            single_fields,
        )

    def exchange(self, address: int) -> Any:
        """The exchange at ``address`` (a PendingUpstream's)."""
        return self._rt.ffi.cast("ph_exchange *", address)

    def result(self) -> Any:
        """This thread's result struct (read it before the thread serves another request)."""
        out = getattr(self._local, "out", None)
        if out is None:
            out = self._local.out = self._rt.ffi.new("rt_result *")
        return out

    def serve(
        self,
        chain: Chain,
        method: bytes,
        path: bytes,
        query: bytes,
        client: bytes,
        headers: bytes,
        body: bytes,
        params: bytes,
    ) -> Any:
        """Runs the chain; returns the filled result struct (outcome RT_DONE or RT_UPSTREAM)."""
        out = self.result()
        self._serve(
            self._host,
            chain.ptr,
            method,
            path,
            query,
            client,
            headers,
            len(headers),
            body,
            len(body),
            params,
            len(params),
            out,
        )
        return out

    def read(self, out: Any) -> tuple[Response, tuple[str, str] | None]:
        """The response of a finished run and its failure (label, reason), then frees it."""
        unpack = self._unpack
        try:
            self._rt.lib.rt_result_pack(out)
            parts = iter(unpack(out.headers, out.headers_len).split(b"\0"))
            response = Response(out.status, list(zip(parts, parts)), unpack(out.body, out.body_len))
            failure = None
            if out.failure_len:
                failure = (
                    self._rt.ffi.string(out.failure_label).decode("utf-8", "replace"),
                    unpack(out.failure, out.failure_len).decode("utf-8", "replace"),
                )
            return response, failure
        finally:
            self._free(out.ex)

    def upstream_of(self, ex: Any) -> Upstream:
        """The upstream request the action set on ``ex``."""
        ffi, lib = self._rt.ffi, self._rt.lib
        spec = lib.rt_exchange_upstream(ex)
        blob = ffi.new("const char **")
        n = lib.rt_exchange_pack_request(ex, blob)
        length = ffi.new("size_t *")
        data = lib.rt_api_body(ex, lib.PH_REQUEST, length)
        return Upstream(
            url=ffi.string(spec.url).decode("utf-8", "replace"),
            method=ffi.string(spec.method).decode("ascii", "replace"),
            headers=split_packed(ffi.buffer(blob[0], n)[:]),
            body=ffi.buffer(data, length[0])[:] if length[0] else b"",
            connect_timeout=_seconds(spec.connect_timeout_ms),
            timeout=_seconds(spec.timeout_ms),
            websocket=bool(spec.flags & lib.PH_UPSTREAM_WEBSOCKET),
            ping_interval=_seconds(spec.ws_ping_interval_ms),
            pong_timeout=_seconds(spec.ws_pong_timeout_ms),
            max_inactivity=_seconds(spec.ws_max_inactivity_ms),
            max_message=spec.ws_max_message_bytes if spec.ws_max_message_bytes > 0 else None,
            subprotocols=None
            if spec.ws_subprotocols == ffi.NULL
            else tuple(
                p.strip()
                for p in ffi.string(spec.ws_subprotocols).decode("utf-8", "replace").split(",")
                if p.strip()
            ),
        )

    def finish_upstream(self, chain: Chain, ex: Any, passed: int, answer: UpstreamAnswer) -> Any:
        """Puts the upstream's answer (or its failure) into ``ex`` and runs the response
        phase; returns the filled result struct."""
        out = self.result()
        blob = pack(answer.headers)
        self._rt.lib.rt_serve_upstream(
            chain.ptr,
            ex,
            passed,
            answer.status,
            blob,
            len(blob),
            answer.body,
            len(answer.body),
            answer.error.encode("utf-8", "replace"),
            out,
        )
        return out

    def finish_head(
        self,
        chain: Chain,
        ex: Any,
        passed: int,
        status: int,
        headers: Sequence[tuple[bytes, bytes]],
    ) -> tuple[bool, Response, tuple[str, str] | None]:
        """Runs the response phase of a streamed answer on the upstream's status and headers
        alone and frees ``ex``: (True, the head to send before the upstream's body, failure),
        or (False, the whole response that replaces the upstream's, failure) when a hook set
        a body. The head carries no framing header: the caller frames the body."""
        out = self.result()
        blob = pack(headers)
        self._rt.lib.rt_serve_upstream_head(chain.ptr, ex, passed, status, blob, len(blob), out)
        streaming = out.outcome == self._rt.lib.RT_STREAM
        response, failure = self.read(out)
        if streaming:
            response.headers = [
                (k, v)
                for k, v in response.headers
                if k.lower() != b"content-length" and k.lower() != b"transfer-encoding"
            ]
        return streaming, response, failure

    def discard(self, ex: Any) -> None:
        self._free(ex)
