"""plughost: an API-gateway host whose middlewares, actions and storages are native C plugins.

Plugins are shared objects compiled against one versioned header, ``abi/plugin.h``; the host
checks their ABI and platform before loading them with cffi and drives them from Python::

    import plughost

    host = plughost.Host()
    plugin = host.load_plugin("build/plugins/memory.so")
    sessions = host.create_storage("Sessions", "plugins.memory.storages.MemoryStorage")
    sessions.set(b"k", b"v", ttl=60)

    gateway = plughost.Gateway.from_config("configs/")   # routes, chains, storages
    response = gateway.handle("GET", "/api/v1/users/7")

The package's folders follow the architecture: ``loading`` (plugins, the ABI and platform
checks, the C runtime), ``checking`` (``plughost check``), ``config`` (Seam's configuration
files), ``serving`` (the gateway, its request pipeline, the ASGI app and HTTP protocol),
``proxy`` (the upstream client) and ``sdk`` (for plugin authors).
"""

__version__ = "0.1.0"  # first: the modules imported below read it

from .errors import (
    ConfigError,
    DuplicateTypeError,
    PlughostError,
    PluginInitError,
    PluginLoadError,
    StorageError,
    UnknownTypeError,
)
from .loading.loader import Host, Plugin, load_plugin
from .loading.plugintypes import Next, Storage
from .sdk.exchange import Exchange
from .sdk.pyelements import PythonAction, PythonMiddleware
from .serving.chain import Response
from .serving.gateway import Gateway

__all__ = [
    "ConfigError",
    "DuplicateTypeError",
    "Exchange",
    "Gateway",
    "Host",
    "Next",
    "PlughostError",
    "Plugin",
    "PluginInitError",
    "PluginLoadError",
    "PythonAction",
    "PythonMiddleware",
    "Response",
    "Storage",
    "StorageError",
    "UnknownTypeError",
    "load_plugin",
    "__version__",
]
