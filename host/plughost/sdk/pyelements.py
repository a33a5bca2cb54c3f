"""Middlewares and actions written in Python, usable in the same chains as native ones.

Subclass :class:`PythonMiddleware` or :class:`PythonAction`, then either declare the classes
in a module the configuration lists (``- module: pkg.mod``, see :mod:`plughost.sdk.pymodules`:
their instances are configured in middlewares.yaml/actions.yaml like native ones), or, from a
script, hand instances to ``Gateway.from_config(config, python_elements={"Name": obj})``.
Routes name them like native elements. Inside a native chain the C runner calls back into
Python for these elements only.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ..loading.plugintypes import Next
from .exchange import Exchange

if TYPE_CHECKING:
    from ..loading.runtime import Runtime

log = logging.getLogger("plughost.python")


class PythonMiddleware:
    """Base class of a middleware written in Python.

    ``on_request`` returns None or ``Next.CONTINUE`` to go on, ``Next.RESPOND`` after setting
    the response with ``ex.respond(...)``; ``on_response`` may change the response. An
    exception fails the request with 500, like a native PH_NEXT_ERROR.
    """

    thread_safe: bool = True  # False: the host never runs two of its calls at once
    may_block: bool = False  # True: chains containing it run off the event loop

    def on_request(self, ex: Exchange) -> Next | None:
        return None

    def on_response(self, ex: Exchange) -> None:
        return None


class PythonAction:
    """Base class of an action written in Python: ``handle`` sets the response."""

    thread_safe: bool = True
    may_block: bool = False

    def handle(self, ex: Exchange) -> Next | None:
        raise NotImplementedError("a PythonAction must implement handle()")


class PythonInstance:
    """A Python element registered with the runtime (an rt_instance with a cffi handle)."""

    def __init__(
        self, runtime: "Runtime", name: str, obj: PythonMiddleware | PythonAction, kind: str
    ) -> None:
        self.name = name
        self.obj = obj
        self.kind = kind
        self._rt = runtime
        self.label = f"python {kind} '{name}' ({type(obj).__qualname__})"
        self.may_block = bool(getattr(obj, "may_block", False))
        self.streams_bodies = False  # Python elements may read bodies whole
        self._handle = runtime.ffi.new_handle(self)
        # An element that is not thread-safe is serialised here, with a Python lock (which
        # lets go of the GIL while it waits), never with the runtime's C lock: a thread
        # holding a C lock while it waits for the GIL could deadlock the event loop.
        self._lock = None if getattr(obj, "thread_safe", True) else threading.Lock()
        lib = runtime.lib
        rt_kind = lib.RT_PY_ACTION if kind == "action" else lib.RT_PY_MIDDLEWARE
        self.ptr = lib.rt_instance_new(
            rt_kind, runtime.ffi.NULL, self._handle, self.label.encode(), 1, int(self.may_block)
        )
        self.closed = False

    def call(self, phase: int, ex_ptr: Any) -> int:
        """Called by the C runner: runs the element's hook on a borrowed exchange."""
        if self._lock is None:
            return self._call(phase, ex_ptr)
        with self._lock:
            return self._call(phase, ex_ptr)

    def _call(self, phase: int, ex_ptr: Any) -> int:
        lib = self._rt.lib
        ex = Exchange.borrow(self._rt, ex_ptr)
        try:
            if self.kind == "action":
                result = self.obj.handle(ex)  # type: ignore[union-attr]
                return int(Next.RESPOND if result is None else result)
            if phase == lib.RT_PHASE_REQUEST:
                result = self.obj.on_request(ex)  # type: ignore[union-attr]
                return int(Next.CONTINUE if result is None else result)
            self.obj.on_response(ex)  # type: ignore[union-attr]
            return lib.PH_OK
        except Exception as exc:
            log.exception("%s failed", self.label)
            lib.rt_exchange_fail(
                ex_ptr,
                500,
                self.label.encode(),
                f"{type(exc).__name__}: {exc}".encode("utf-8", "replace"),
            )
            return int(Next.ERROR)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._rt.lib.rt_instance_free(self.ptr)
