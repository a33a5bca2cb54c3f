"""plughost: an API-gateway host whose middlewares, actions and storages are native C plugins.

Plugins are shared objects compiled against one versioned header, ``abi/plugin.h``; the host
checks their ABI and platform before loading them with cffi and drives them from Python.
"""

__version__ = "0.1.0"
