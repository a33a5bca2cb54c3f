"""The compiled C runtime (``plughost._runtime``) and the Python end of its log sink."""

from __future__ import annotations

import functools
import logging
from types import ModuleType
from typing import Any

plugin_log = logging.getLogger("plughost.plugin")


class Runtime:
    """One compiled copy of the host's C runtime: its cffi ``ffi`` and ``lib``.

    The host normally uses :func:`default_runtime`; tests build the same C sources against
    another header (a simulated newer ABI) and pass that module here.
    """

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.ffi: Any = module.ffi
        self.lib: Any = module.lib
        self.abi = (int(self.lib.rt_abi_major()), int(self.lib.rt_abi_minor()))
        ffi = self.ffi

        @ffi.def_extern(name="plughost_log_sink")
        def _log_sink(level: int, label: Any, message: Any) -> None:
            # Called from C, on any thread; never let an exception cross back into C.
            try:
                plugin_log.log(level, "[%s] %s", self.string(label), self.string(message))
            except Exception:
                pass

        @ffi.def_extern(name="plughost_py_call", error=-1)
        def _py_call(handle: Any, phase: int, ex_ptr: Any) -> int:
            # A Python-written middleware or action inside a native chain.
            return ffi.from_handle(handle).call(phase, ex_ptr)

        self._log_sink = _log_sink
        self._py_call = _py_call
        self.lib.rt_set_py_call(self.lib.plughost_py_call)

    def string(self, ptr: Any) -> str | None:
        """A NUL-terminated C string as ``str`` (invalid UTF-8 replaced), or None for NULL."""
        if ptr == self.ffi.NULL:
            return None
        return self.ffi.string(ptr).decode("utf-8", "replace")

    def take_error(self, err_ptr: Any) -> str:
        """Reads and frees an error message the runtime allocated into ``char **``."""
        message = self.string(err_ptr[0]) or "unknown error"
        self.lib.rt_free(err_ptr[0])
        err_ptr[0] = self.ffi.NULL
        return message


@functools.cache
def default_runtime() -> Runtime:
    """The runtime compiled at install time (``plughost._runtime``)."""
    from .. import _runtime

    return Runtime(_runtime)
