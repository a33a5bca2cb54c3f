"""Chains: a route's middlewares (global ones first) and its action, run by the C runner.

One request crosses from Python into C a constant number of times, whatever the length
of the chain: build the exchange (1), run the chain (1), read the response (1), free (1);
plus, for an upstream action, set the upstream's answer (1) and finish the chain (1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .runtime import Runtime


@dataclass
class Response:
    """What goes back to the client."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class Upstream:
    """An upstream request an action asked for."""

    url: str
    method: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connect_timeout: float | None
    timeout: float | None
    websocket: bool


class Chain:
    """A compiled chain. ``elements`` are instances (native or Python) with a ``ptr``."""

    def __init__(self, runtime: Runtime, middlewares: Sequence[Any], action: Any,
                 route_name: str = "") -> None:
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
        self.route_name = route_name

    def close(self) -> None:
        if self.ptr is not None:
            self._rt.lib.rt_chain_free(self.ptr)
            self.ptr = None


def split_packed(blob: bytes) -> list[tuple[bytes, bytes]]:
    """b"name\\0value\\0name\\0value\\0" -> [(name, value), ...]."""
    if not blob:
        return []
    parts = blob.split(b"\0")
    return list(zip(parts[0::2], parts[1::2]))


def pack(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """[(name, value), ...] -> b"name\\0value\\0..." (NUL bytes cannot occur in HTTP headers)."""
    return b"".join(name + b"\0" + value + b"\0" for name, value in headers)


class ChainRun:
    """One request through one chain: holds the C exchange until :meth:`close`."""

    __slots__ = ("_rt", "chain", "ex", "passed", "outcome")

    def __init__(self, runtime: Runtime, host_ptr: Any, chain: Chain, method: bytes, path: bytes,
                 query: bytes, headers_blob: bytes, body: bytes, client_ip: bytes,
                 params: dict[str, str] | None = None) -> None:
        self._rt = runtime
        lib = runtime.lib
        self.chain = chain
        self.ex = lib.rt_exchange_new_packed(host_ptr, method, path, query, client_ip,
                                             headers_blob, len(headers_blob), body, len(body))
        if self.ex == runtime.ffi.NULL:
            raise MemoryError("cannot allocate an exchange")
        if params:
            for name, value in params.items():
                lib.rt_exchange_add_param(self.ex, name.encode(), value.encode())
        self.passed = runtime.ffi.new("size_t *")
        self.outcome = -1

    def run(self) -> bool:
        """Runs the chain; True when an upstream request must be performed first."""
        lib = self._rt.lib
        self.outcome = lib.rt_chain_run(self.chain.ptr, self.ex, self.passed)
        return self.outcome == lib.RT_UPSTREAM

    def upstream(self) -> Upstream:
        ffi, lib = self._rt.ffi, self._rt.lib
        spec = lib.rt_exchange_upstream(self.ex)
        blob = ffi.new("const char **")
        n = lib.rt_exchange_pack_request(self.ex, blob)
        length = ffi.new("size_t *")
        data = lib.rt_api_body(self.ex, lib.PH_REQUEST, length)
        return Upstream(
            url=ffi.string(spec.url).decode("utf-8", "replace"),
            method=ffi.string(spec.method).decode("ascii", "replace"),
            headers=split_packed(ffi.buffer(blob[0], n)[:]),
            body=ffi.buffer(data, length[0])[:] if length[0] else b"",
            connect_timeout=spec.connect_timeout_ms / 1000 if spec.connect_timeout_ms > 0 else None,
            timeout=spec.timeout_ms / 1000 if spec.timeout_ms > 0 else None,
            websocket=bool(spec.flags & lib.PH_UPSTREAM_WEBSOCKET))

    def finish_upstream(self, status: int, headers: Sequence[tuple[bytes, bytes]],
                        body: bytes) -> None:
        """Puts the upstream's answer into the exchange and runs the response phase."""
        lib = self._rt.lib
        blob = pack(headers)
        lib.rt_exchange_set_response_packed(self.ex, status, blob, len(blob), body, len(body))
        lib.rt_chain_finish(self.chain.ptr, self.ex, self.passed[0])

    def fail_upstream(self, status: int, reason: str) -> None:
        """The upstream could not be reached (502) or timed out (504)."""
        lib = self._rt.lib
        lib.rt_exchange_fail(self.ex, status, self.chain.action.label.encode(),
                             reason.encode("utf-8", "replace"))
        lib.rt_chain_finish(self.chain.ptr, self.ex, self.passed[0])

    def response(self) -> Response:
        ffi, lib = self._rt.ffi, self._rt.lib
        blob, status = ffi.new("const char **"), ffi.new("int *")
        body, body_len = ffi.new("const uint8_t **"), ffi.new("size_t *")
        n = lib.rt_exchange_pack_response(self.ex, blob, status, body, body_len)
        return Response(status[0] or 200, split_packed(ffi.buffer(blob[0], n)[:]),
                        ffi.buffer(body[0], body_len[0])[:] if body_len[0] else b"")

    def failure(self) -> tuple[str, str] | None:
        """(element label, reason) when the host answered with an error."""
        ffi, lib = self._rt.ffi, self._rt.lib
        label = ffi.new("const char **")
        reason = ffi.string(lib.rt_exchange_failure(self.ex, label))
        if not reason:
            return None
        return ffi.string(label[0]).decode("utf-8", "replace"), reason.decode("utf-8", "replace")

    def close(self) -> None:
        if self.ex is not None:
            self._rt.lib.rt_exchange_free(self.ex)
            self.ex = None
