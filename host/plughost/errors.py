"""Exceptions plughost raises. Every message is one sentence a user can act on."""

from __future__ import annotations


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
