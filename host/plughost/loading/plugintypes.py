"""The types a plugin declares (middlewares, actions, storages) and their instances."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from .cconfig import ConfigTree
from .optionschema import table_options
from ..config.options import Option, check_block
from ..config.problems import ConfigErrors
from ..errors import ConfigError, StorageError
from ..sdk.exchange import Exchange

if TYPE_CHECKING:
    from .loader import Plugin

THREAD_SAFE = 0x1
MAY_BLOCK = 0x2
BLOCKS_VIA_STORAGES = 0x4  # ABI 1.1
STREAMS_BODIES = 0x8  # ABI 1.2


class Next(enum.IntEnum):
    """What a request-phase hook asks for next (ph_next)."""

    CONTINUE = 0
    RESPOND = 1
    UPSTREAM = 2
    ERROR = -1


class PluginType:
    """A middleware, action or storage type declared by a loaded plugin."""

    kind: str = ""
    ctype: str = ""  # the C type of its table

    def __init__(self, plugin: "Plugin", table: Any) -> None:
        """Reads the table; a schema the host cannot use raises optionschema.SchemaError."""
        rt = plugin.host.runtime
        self.plugin = plugin
        self.table = table
        self.id: str = rt.string(table.id) or ""
        self.description: str = rt.string(table.description) or ""
        self.flags: int = int(table.flags)
        #: The options the type declares (ABI 1.2), or None: its create alone checks.
        self.options: tuple[Option, ...] | None = table_options(rt, table, self.ctype)

    @property
    def thread_safe(self) -> bool:
        return bool(self.flags & THREAD_SAFE)

    @property
    def may_block(self) -> bool:
        return bool(self.flags & MAY_BLOCK)

    def _create(
        self, name: str, config: Any, source: str | None, path: str | None
    ) -> tuple[ConfigTree, Any]:
        """Checks ``config`` against the type's schema (ConfigErrors with every problem),
        then runs the create hook; returns the config tree (kept alive) and ``self``."""
        host = self.plugin.host
        rt = host.runtime
        if self.options is not None:
            problems = check_block(
                config,
                self.options,
                source or f"{self.kind} '{name}'",
                path or f"{self.kind}s.{name}.config",
                self.id,
            )
            if problems:
                raise ConfigErrors(problems)
        tree = ConfigTree(
            rt,
            host.ptr,
            config,
            label=f"{self.kind} '{name}' ({self.id})",
            path=path or f"{self.kind}s.{name}.config",
            source=source,
        )
        tree.set_plugin_state(self.plugin.state)
        tree.set_owner(self.plugin.name, name)
        self_out = rt.ffi.new("void **")
        status = rt.lib.rt_call_create(self.table.create, tree.ptr, self_out)
        if status != rt.lib.PH_OK:
            message = tree.error or (
                f"{self.id} refused its configuration without saying why "
                "(a plugin bug: call ph_config_error before failing)"
            )
            rt.lib.rt_call_destroy(self._destroy_hook(), self_out[0])
            tree.close()
            raise ConfigError(message)
        return tree, self_out[0]

    def _destroy_hook(self) -> Any:
        return self.table.destroy

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


class _Instance:
    """A configured instance: owns its config tree, the plugin's ``self`` pointer and the
    runtime's rt_instance (which serialises hooks of types that are not thread-safe)."""

    rt_kind = "RT_MIDDLEWARE"

    def __init__(self, ptype: PluginType, name: str, tree: ConfigTree, self_ptr: Any) -> None:
        self.type = ptype
        self.name = name
        self._tree = tree
        self._self = self_ptr
        self._rt = ptype.plugin.host.runtime
        lib = self._rt.lib
        self.label = f"{ptype.kind} '{name}' ({ptype.id})"
        # A type that blocks only inside the storages it looked up is may-block only when
        # one of them is (a session on a MemoryStorage runs on the event loop).
        self.may_block = ptype.may_block and not (
            ptype.flags & BLOCKS_VIA_STORAGES and not tree.storage_may_block
        )
        #: Header names this instance reads as an identity: a request carries each once.
        self.single_headers = tree.single_headers
        #: Never reads a body (PH_TYPE_STREAMS_BODIES): bodies may stream past it.
        self.streams_bodies = bool(ptype.flags & STREAMS_BODIES)
        self.ptr = lib.rt_instance_new(
            getattr(lib, self.rt_kind),
            ptype.table,
            self_ptr,
            self.label.encode(),
            int(ptype.thread_safe),
            int(self.may_block),
        )
        if self.ptr == self._rt.ffi.NULL:
            lib.rt_call_destroy(ptype._destroy_hook(), self_ptr)
            tree.close()
            raise MemoryError("cannot allocate an instance")
        plugin = ptype.plugin
        lib.rt_instance_set_plugin(
            self.ptr, f"{plugin.name} ({plugin.path})".encode("utf-8", "surrogateescape")
        )
        self.closed = False

    def close(self) -> None:
        """Calls the destroy hook once and frees the configuration."""
        if self.closed:
            return
        self.closed = True
        self._rt.lib.rt_call_destroy(self.type._destroy_hook(), self._self)
        self._rt.lib.rt_instance_free(self.ptr)
        self._tree.close()


class MiddlewareType(PluginType):
    kind = "middleware"
    ctype = "ph_middleware_type"

    def create(
        self,
        config: Any = None,
        *,
        name: str | None = None,
        source: str | None = None,
        path: str | None = None,
    ) -> "MiddlewareInstance":
        """Creates an instance with ``config`` (a map); raises ConfigError with the
        plugin's message when it refuses the configuration."""
        name = name or self.id.rsplit(".", 1)[-1]
        tree, self_ptr = self._create(name, config, source, path)
        return MiddlewareInstance(self, name, tree, self_ptr)


class MiddlewareInstance(_Instance):
    rt_kind = "RT_MIDDLEWARE"

    def on_request(self, ex: Exchange) -> Next:
        """Runs the request phase on ``ex``."""
        return Next(self._rt.lib.rt_instance_request(self.ptr, ex.ptr))

    def on_response(self, ex: Exchange) -> bool:
        """Runs the response phase on ``ex``; False when the hook failed."""
        lib = self._rt.lib
        return lib.rt_instance_response(self.ptr, ex.ptr) == lib.PH_OK


class ActionType(PluginType):
    kind = "action"
    ctype = "ph_action_type"

    def create(
        self,
        config: Any = None,
        *,
        name: str | None = None,
        source: str | None = None,
        path: str | None = None,
    ) -> "ActionInstance":
        name = name or self.id.rsplit(".", 1)[-1]
        tree, self_ptr = self._create(name, config, source, path)
        return ActionInstance(self, name, tree, self_ptr)


class ActionInstance(_Instance):
    rt_kind = "RT_ACTION"

    def handle(self, ex: Exchange) -> Next:
        """Runs the action on ``ex``."""
        return Next(self._rt.lib.rt_instance_handle(self.ptr, ex.ptr))


class StorageType(PluginType):
    kind = "storage"
    ctype = "ph_storage_type"

    def _destroy_hook(self) -> Any:
        return self.table.close

    def create(
        self, config: Any = None, *, name: str, source: str | None = None, path: str | None = None
    ) -> "Storage":
        """Creates a storage instance registered under ``name`` (what other plugins look
        up with ph_storage_lookup)."""
        host = self.plugin.host
        if name in host.storages:
            raise ConfigError(
                f"a storage named '{name}' already exists: give this one another name"
            )
        tree, self_ptr = self._create(name, config, source, path)
        handle = host.runtime.lib.rt_storage_register(host.ptr, name.encode(), self.table, self_ptr)
        if handle == host.runtime.ffi.NULL:
            host.runtime.lib.rt_call_destroy(self.table.close, self_ptr)
            tree.close()
            raise MemoryError("cannot register the storage")
        storage = Storage(self, name, tree, handle)
        host.storages[name] = storage
        return storage


class Storage:
    """A configured storage, usable from Python: bytes keys and values, TTL in seconds."""

    def __init__(self, stype: StorageType, name: str, tree: ConfigTree, handle: Any) -> None:
        self.type = stype
        self.name = name
        self._tree = tree
        self._handle = handle
        self._rt = stype.plugin.host.runtime
        self.closed = False

    def _check(self) -> None:
        if self.closed:
            raise StorageError(f"storage '{self.name}' is closed")

    @staticmethod
    def _ttl_ms(ttl: float | None) -> int:
        if ttl is None:
            return 0
        if ttl <= 0:
            raise ValueError("ttl must be positive (seconds), or None for no expiry")
        return max(1, round(ttl * 1000))

    def get(self, key: bytes) -> bytes | None:
        """The value under ``key``, or None when absent or expired."""
        self._check()
        ffi, lib = self._rt.ffi, self._rt.lib
        value, length, err = ffi.new("uint8_t **"), ffi.new("size_t *"), ffi.new("char **")
        status = lib.rt_storage_get(self._handle, key, len(key), value, length, err)
        if status == lib.PH_ERROR:
            raise StorageError(self._rt.take_error(err))
        if status == lib.PH_NOT_FOUND:
            return None
        data = bytes(ffi.buffer(value[0], length[0]))
        lib.rt_free(value[0])
        return data

    def set(self, key: bytes, value: bytes, ttl: float | None = None) -> None:
        """Stores ``value`` under ``key``; ``ttl`` in seconds (None: no expiry)."""
        self._check()
        ffi, lib = self._rt.ffi, self._rt.lib
        err = ffi.new("char **")
        if (
            lib.rt_storage_set(
                self._handle, key, len(key), value, len(value), self._ttl_ms(ttl), err
            )
            != lib.PH_OK
        ):
            raise StorageError(self._rt.take_error(err))

    def delete(self, key: bytes) -> bool:
        """Removes ``key``; True if it existed."""
        self._check()
        ffi, lib = self._rt.ffi, self._rt.lib
        err = ffi.new("char **")
        status = lib.rt_storage_del(self._handle, key, len(key), err)
        if status == lib.PH_ERROR:
            raise StorageError(self._rt.take_error(err))
        return status == lib.PH_OK

    def incr_with_ttl(
        self, key: bytes, delta: int = 1, ttl: float | None = None
    ) -> tuple[int, float | None]:
        """Atomically adds ``delta``; returns (new value, seconds left or None)."""
        self._check()
        ffi, lib = self._rt.ffi, self._rt.lib
        value, left, err = ffi.new("int64_t *"), ffi.new("int64_t *"), ffi.new("char **")
        if (
            lib.rt_storage_incr(
                self._handle, key, len(key), delta, self._ttl_ms(ttl), value, left, err
            )
            != lib.PH_OK
        ):
            raise StorageError(self._rt.take_error(err))
        return int(value[0]), (None if left[0] < 0 else left[0] / 1000.0)

    def incr(self, key: bytes, delta: int = 1, ttl: float | None = None) -> int:
        """Atomically adds ``delta`` to the integer under ``key`` and returns the new value;
        a new key gets ``ttl`` seconds to live."""
        return self.incr_with_ttl(key, delta, ttl)[0]

    def reset(self) -> None:
        """Removes every key of this storage."""
        self._check()
        ffi, lib = self._rt.ffi, self._rt.lib
        err = ffi.new("char **")
        if lib.rt_storage_reset(self._handle, err) != lib.PH_OK:
            raise StorageError(self._rt.take_error(err))

    def close(self) -> None:
        """Closes the storage (its close hook) and unregisters its name."""
        if self.closed:
            return
        self.closed = True
        self._rt.lib.rt_storage_close(self._handle)
        self._tree.close()
        self.type.plugin.host.storages.pop(self.name, None)

    def __enter__(self) -> "Storage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Storage {self.name!r} ({self.type.id})>"
