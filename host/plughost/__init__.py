"""plughost: an API-gateway host whose middlewares, actions and storages are native C plugins.

Plugins are shared objects compiled against one versioned header, ``abi/plugin.h``; the host
checks their ABI and platform before loading them with cffi and drives them from Python::

    import plughost

    host = plughost.Host()
    plugin = host.load_plugin("build/plugins/memory.so")
    sessions = host.create_storage("Sessions", "plugins.memory.storages.MemoryStorage")
    sessions.set(b"k", b"v", ttl=60)

    gateway = plughost.Host.from_config("configs/")      # routes, chains, storages
    response = gateway.handle("GET", "/api/v1/users/7")
"""

from .errors import (ConfigError, DuplicateTypeError, PlughostError, PluginInitError,
                     PluginLoadError, StorageError, UnknownTypeError)
from .loader import Host, Plugin, load_plugin
from .plugintypes import Next, Storage
from .pyelements import PythonAction, PythonMiddleware

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DuplicateTypeError", "Host", "Next", "PlughostError", "Plugin",
    "PluginInitError", "PluginLoadError", "PythonAction", "PythonMiddleware", "Storage",
    "StorageError", "UnknownTypeError",
    "load_plugin", "__version__",
]
