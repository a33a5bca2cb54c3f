"""Exceptions plughost raises. Every message is one sentence a user can act on."""

from __future__ import annotations

import re

#: C0 and C1 control characters, DEL, and the lone surrogates undecodable bytes become.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with every control character and undecodable byte escaped (``\\x1b``,
    ``\\x0a``, ``\\udcff``): a name read from an untrusted file (a symbol, a library, a
    path) then cannot end a line, move the cursor or colour the terminal it is printed on."""
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class PlughostError(Exception):
    """Base class of every error plughost raises on purpose."""


class PluginLoadError(PlughostError):
    """A plugin file cannot be loaded: the static check, dlopen or the entry failed.

    ``code`` names the reason for tools (``arch``, ``abi-major``, ``dlopen`` ...).
    """

    def __init__(self, path: str, code: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.code = code
        self.reason = message


class PluginInitError(PluginLoadError):
    """The plugin's init hook failed; ``reason`` is the plugin's own message."""


class DuplicateTypeError(PluginLoadError):
    """Two loaded plugins declare the same type id."""


class ConfigError(PlughostError):
    """A configuration value is wrong; the message names the file, line and key."""


class StorageError(PlughostError):
    """A storage operation failed; the message is the storage's own reason."""


class UnknownTypeError(PlughostError, KeyError):
    """No loaded plugin provides the requested type id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
