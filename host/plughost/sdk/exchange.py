"""A Python view of one request/response exchange held by the C runtime."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..loading.runtime import Runtime

__all__ = ["Exchange"]


class Exchange:
    """One HTTP request and its response, as plugins see them.

    Built once per request; hooks read and modify it in C. Python reads the result back
    through the properties below. Close it (or use ``with``) to free it.
    """

    def __init__(
        self,
        runtime: Runtime,
        host_ptr: Any,
        method: str = "GET",
        path: str = "/",
        *,
        query: str = "",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        client_ip: str = "",
        route: str = "",
        params: Mapping[str, str] | None = None,
    ) -> None:
        self._rt = runtime
        ffi, lib = runtime.ffi, runtime.lib
        self.ptr = lib.rt_exchange_new(
            host_ptr, method.encode(), path.encode(), query.encode(), client_ip.encode()
        )
        if self.ptr == ffi.NULL:
            raise MemoryError("cannot allocate an exchange")
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in pairs:
            if (
                lib.rt_api_header_add(
                    self.ptr, lib.PH_REQUEST, name.encode(), value.encode("latin-1")
                )
                != lib.PH_OK
            ):
                raise ValueError(self.error or f"invalid header {name!r}")
        if body:
            lib.rt_api_body_set(self.ptr, lib.PH_REQUEST, body, len(body))
        if route:
            lib.rt_exchange_set_route(self.ptr, route.encode())
        for name, value in (params or {}).items():
            lib.rt_exchange_add_param(self.ptr, name.encode(), value.encode())

    @classmethod
    def borrow(cls, runtime: Runtime, ptr: Any) -> "Exchange":
        """A view of an exchange the host owns (for Python elements); never frees it."""
        ex = cls.__new__(cls)
        ex._rt = runtime
        ex.ptr = ptr
        ex._borrowed = True
        return ex

    @property
    def method(self) -> str:
        return self._rt.string(self._rt.lib.rt_api_method(self.ptr)) or ""

    @property
    def path(self) -> str:
        return self._rt.string(self._rt.lib.rt_api_path(self.ptr)) or ""

    def set_request_header(self, name: str, value: str) -> None:
        lib = self._rt.lib
        if (
            lib.rt_api_header_set(self.ptr, lib.PH_REQUEST, name.encode(), value.encode("latin-1"))
            != lib.PH_OK
        ):
            raise ValueError(self.error or f"invalid header {name!r}")

    def set_response_header(self, name: str, value: str) -> None:
        lib = self._rt.lib
        if (
            lib.rt_api_header_set(self.ptr, lib.PH_RESPONSE, name.encode(), value.encode("latin-1"))
            != lib.PH_OK
        ):
            raise ValueError(self.error or f"invalid header {name!r}")

    def add_response_header(self, name: str, value: str) -> None:
        lib = self._rt.lib
        if (
            lib.rt_api_header_add(self.ptr, lib.PH_RESPONSE, name.encode(), value.encode("latin-1"))
            != lib.PH_OK
        ):
            raise ValueError(self.error or f"invalid header {name!r}")

    def respond(self, status: int, body: bytes = b"", content_type: str | None = None) -> None:
        """Sets the response status and body (and Content-Type, if given)."""
        lib = self._rt.lib
        if lib.rt_api_status_set(self.ptr, status) != lib.PH_OK:
            raise ValueError(self.error or f"invalid status {status}")
        lib.rt_api_body_set(self.ptr, lib.PH_RESPONSE, body, len(body))
        if content_type:
            self.set_response_header("Content-Type", content_type)

    def route_param(self, name: str) -> str | None:
        """The value of route parameter ``name`` (``:id`` in the route's path), or None."""
        return self._rt.string(self._rt.lib.rt_api_route_param(self.ptr, name.encode()))

    def _headers(self, side: int) -> list[tuple[str, str]]:
        ffi, lib = self._rt.ffi, self._rt.lib
        name, value = ffi.new("const char **"), ffi.new("const char **")
        out = []
        for i in range(lib.rt_api_header_count(self.ptr, side)):
            lib.rt_api_header_at(self.ptr, side, i, name, value)
            out.append(
                (ffi.string(name[0]).decode("latin-1"), ffi.string(value[0]).decode("latin-1"))
            )
        return out

    def _body(self, side: int) -> bytes:
        ffi = self._rt.ffi
        length = ffi.new("size_t *")
        data = self._rt.lib.rt_api_body(self.ptr, side, length)
        return bytes(ffi.buffer(data, length[0])) if length[0] else b""

    @property
    def request_headers(self) -> list[tuple[str, str]]:
        return self._headers(self._rt.lib.PH_REQUEST)

    @property
    def response_headers(self) -> list[tuple[str, str]]:
        return self._headers(self._rt.lib.PH_RESPONSE)

    def request_header(self, name: str) -> str | None:
        lib = self._rt.lib
        return self._latin1(lib.rt_api_header_get(self.ptr, lib.PH_REQUEST, name.encode()))

    def response_header(self, name: str) -> str | None:
        lib = self._rt.lib
        return self._latin1(lib.rt_api_header_get(self.ptr, lib.PH_RESPONSE, name.encode()))

    def _latin1(self, ptr: Any) -> str | None:
        return None if ptr == self._rt.ffi.NULL else self._rt.ffi.string(ptr).decode("latin-1")

    @property
    def request_body(self) -> bytes:
        return self._body(self._rt.lib.PH_REQUEST)

    @property
    def response_body(self) -> bytes:
        return self._body(self._rt.lib.PH_RESPONSE)

    @property
    def status(self) -> int:
        return int(self._rt.lib.rt_api_status(self.ptr))

    @property
    def locals(self) -> dict[str, bytes]:
        ffi, lib = self._rt.ffi, self._rt.lib
        value, length = ffi.new("const uint8_t **"), ffi.new("size_t *")
        out = {}
        for i in range(lib.rt_local_count(self.ptr)):
            key = lib.rt_local_at(self.ptr, i, value, length)
            out[ffi.string(key).decode()] = bytes(ffi.buffer(value[0], length[0]))
        return out

    def set_local(self, key: str, value: bytes) -> None:
        self._rt.lib.rt_api_local_set(self.ptr, key.encode(), value, len(value))

    @property
    def upstream(self) -> dict[str, Any] | None:
        """The upstream request an action asked for, or None."""
        spec = self._rt.lib.rt_exchange_upstream(self.ptr)
        if spec == self._rt.ffi.NULL:
            return None
        return {
            "url": self._rt.string(spec.url),
            "method": self._rt.string(spec.method),
            "flags": int(spec.flags),
            "connect_timeout_ms": int(spec.connect_timeout_ms),
            "timeout_ms": int(spec.timeout_ms),
        }

    @property
    def error(self) -> str | None:
        """The message the last failing hook recorded with ph_error()."""
        return self._rt.string(self._rt.lib.rt_exchange_error(self.ptr))

    _borrowed = False

    def close(self) -> None:
        if self.ptr is not None and not self._borrowed:
            self._rt.lib.rt_exchange_free(self.ptr)
            self.ptr = None

    def __enter__(self) -> "Exchange":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
