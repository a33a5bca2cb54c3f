"""For plugin authors: Python middlewares and actions, the Python view of an exchange, and
``plughost new``'s project scaffold (the C side is ``abi/plugin.h`` and the CMake package).

Python elements a configuration declares (``- module: pkg.mod``) are subclasses of
:class:`PythonMiddleware` and :class:`PythonAction`, listed in a :class:`PythonPlugin` named
``PLUGHOST_PLUGIN``, their options declared with :class:`Option` (see
:mod:`plughost.sdk.pymodules`)."""

from typing import Any

__all__ = ["Option", "PythonAction", "PythonMiddleware", "PythonPlugin"]


def __getattr__(name: str) -> Any:
    # Imported on first use: plughost.loading imports plughost.sdk.exchange, and
    # pyelements imports plughost.loading.
    if name == "Option":
        from ..config.options import Option

        return Option
    if name in ("PythonAction", "PythonMiddleware"):
        from . import pyelements

        return getattr(pyelements, name)
    if name == "PythonPlugin":
        from .pymodules import PythonPlugin

        return PythonPlugin
    raise AttributeError(f"module 'plughost.sdk' has no attribute {name!r}")
