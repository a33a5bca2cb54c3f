"""Loading plugins: static check, dlopen through cffi, entry verification, init.

The host reads and verifies the entry's fixed header before it trusts anything else in
the file, reads only the fields the plugin's declared size covers, and refuses a plugin
built for another ABI major or a newer minor than its own.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import shutil
import tempfile
import threading
from typing import Any, Iterator

import cffi

from .. import abi
from ..errors import (
    ConfigError,
    DuplicateTypeError,
    PluginInitError,
    PluginLoadError,
    UnknownTypeError,
)
from ..config.options import Option, check_block
from ..config.problems import ConfigErrors
from .cconfig import ConfigTree
from .optionschema import SchemaError, table_options
from .plugintypes import (
    ActionInstance,
    ActionType,
    MiddlewareInstance,
    MiddlewareType,
    PluginType,
    Storage,
    StorageType,
)
from .runtime import Runtime, default_runtime

_dl_ffi = cffi.FFI()
_dl_ffi.cdef(f"extern char {abi.ENTRY_SYMBOL}[];")

PLUGIN_NAME = re.compile(r"^[a-z0-9_]+$")
#: The host's default storage (what ph_storage_lookup finds for an empty name): a
#: MemoryStorage created as soon as a plugin providing DEFAULT_STORAGE_TYPE is loaded.
DEFAULT_STORAGE = "(default)"
DEFAULT_STORAGE_TYPE = "plugins.memory.storages.MemoryStorage"
TYPE_ID = re.compile(r"^plugins\.[A-Za-z0-9_-]+\.(middlewares|actions|storages)\.[A-Za-z_]\w*$")

# Minimum sizes of the ABI 1.0 type tables, by pointer size (all fields are 4-byte or
# pointer-sized): size+flags, id, description, create, destroy/close, then the hooks.
_MIN_TABLE_POINTERS = {"middleware": 6, "action": 5, "storage": 9}


def _min_table_size(kind: str) -> int:
    return 8 + _MIN_TABLE_POINTERS[kind] * _dl_ffi.sizeof("void *")


class Plugin:
    """A loaded and initialised plugin: its metadata and the types it declares."""

    def __init__(self, host: "Host", path: str, entry: Any, library: Any) -> None:
        rt = host.runtime
        self.host = host
        self.path = path
        self.entry = entry
        self._library = library  # keeps the shared object mapped
        header = entry.header
        self.abi = (int(header.abi_major), int(header.abi_minor))
        self.name: str = rt.string(entry.name) or ""
        self.version: str = rt.string(entry.version) or ""
        self.description: str = rt.string(entry.description) or ""
        self.state: Any = rt.ffi.NULL
        self._config: ConfigTree | None = None
        self.middlewares: dict[str, MiddlewareType] = {}
        self.actions: dict[str, ActionType] = {}
        self.storages: dict[str, StorageType] = {}
        #: The options of the plugin's own config (ABI 1.2), or None.
        self.options: tuple[Option, ...] | None = None

    @property
    def types(self) -> dict[str, PluginType]:
        """Every type the plugin declares, by id."""
        return {**self.middlewares, **self.actions, **self.storages}

    def __repr__(self) -> str:
        return f"<Plugin {self.name} {self.version} ABI {self.abi[0]}.{self.abi[1]} {self.path}>"


class Host:
    """A set of loaded plugins, their types by id and the storages configured with them.

    Close it (or use ``with``) to destroy every instance, close the storages and shut the
    plugins down in reverse order.
    """

    def __init__(self, runtime: Runtime | None = None, *, static_check: bool = True) -> None:
        self.runtime = runtime or default_runtime()
        self.ptr = self.runtime.lib.rt_host_new(self.runtime.lib.plughost_log_sink)
        self.plugins: list[Plugin] = []
        self.types: dict[str, PluginType] = {}
        self.storages: dict[str, Storage] = {}
        self._instances: list[MiddlewareInstance | ActionInstance] = []
        self._static_check = static_check
        self._lock = threading.Lock()
        self.closed = False

    @property
    def abi(self) -> tuple[int, int]:
        return self.runtime.abi

    @classmethod
    def from_config(cls, source: Any, **kwargs: Any) -> "Host":
        """A gateway (a Host with routes and chains) built from a Seam configuration folder,
        file or loaded GatewayConfig; see :class:`plughost.gateway.Gateway`."""
        from ..serving.gateway import Gateway

        return Gateway.from_config(source, **kwargs)

    # ------------------------------------------------------------------ loading
    def load_plugin(
        self,
        path: str | os.PathLike[str],
        config: Any = None,
        *,
        source: str | None = None,
        config_path: str | None = None,
    ) -> Plugin:
        """Checks, loads and initialises the plugin at ``path`` with its ``config``.

        Raises PluginLoadError (or PluginInitError, DuplicateTypeError) whose message says
        what is wrong with the file and what to do.
        """
        spath = str(path)
        if self._static_check:
            self._check_statically(spath)
        library, entry = self._open(spath)
        self._verify_header(spath, entry)
        plugin = Plugin(self, spath, entry, library)
        if not PLUGIN_NAME.match(plugin.name):
            raise PluginLoadError(
                spath,
                "plugin-name",
                f"plugin name {plugin.name!r} is not [a-z0-9_]+: fix .name in PH_PLUGIN_DEFINE",
            )
        try:
            plugin.options = table_options(self.runtime, entry, "ph_plugin")
        except SchemaError as exc:
            raise PluginLoadError(spath, "option-schema", f"plugin {plugin.name}: {exc}") from None
        self._read_types(plugin)
        self._init(plugin, config, source, config_path)
        with self._lock:
            self.plugins.append(plugin)
            self.types.update(plugin.types)
        memory = plugin.storages.get(DEFAULT_STORAGE_TYPE)
        if memory is not None and DEFAULT_STORAGE not in self.storages:
            # What plugins get for ph_storage_lookup(cfg, key, ""): Seam's "no storage
            # named: process memory" (the session plugin's default, for one).
            memory.create(None, name=DEFAULT_STORAGE)
        return plugin

    def describe_plugin(self, path: str | os.PathLike[str]) -> Plugin:
        """The plugin at ``path`` with its types and option schemas, after the same checks
        as :meth:`load_plugin` but without running its init: for ``plughost describe``.
        The plugin is neither initialised nor added to this host."""
        spath = str(path)
        if self._static_check:
            self._check_statically(spath)
        library, entry = self._open(spath)
        self._verify_header(spath, entry)
        plugin = Plugin(self, spath, entry, library)
        try:
            plugin.options = table_options(self.runtime, entry, "ph_plugin")
        except SchemaError as exc:
            raise PluginLoadError(spath, "option-schema", f"plugin {plugin.name}: {exc}") from None
        self._read_types(plugin)
        return plugin

    def _check_statically(self, path: str) -> None:
        from ..checking.staticcheck import static_check
        from ..checking.targets import host_platform

        report = static_check(path, host_platform(), host_abi=self.abi)
        if report.problems:
            first = report.problems[0]
            raise PluginLoadError(path, first.code, first.message)

    def _open(self, path: str) -> tuple[Any, Any]:
        if not os.path.isfile(path):
            raise PluginLoadError(path, "missing", "no such plugin file: check the path")
        try:
            library = _dlopen_current(os.path.abspath(path))
        except OSError as exc:
            detail = str(exc).split(": ", 1)[-1] if "undefined symbol" in str(exc) else str(exc)
            code = "unresolved-symbol" if "undefined symbol" in str(exc) else "dlopen"
            raise PluginLoadError(
                path,
                code,
                f"the dynamic loader refused it ({detail}): "
                "link the libraries it needs, or rebuild it on this host",
            ) from None
        try:
            address = _dl_ffi.cast("uintptr_t", getattr(library, abi.ENTRY_SYMBOL))
        except (AttributeError, KeyError, OSError):
            raise PluginLoadError(
                path,
                "no-entry",
                f"no {abi.ENTRY_SYMBOL} symbol: define the "
                "entry with PH_PLUGIN_DEFINE from abi/plugin.h",
            ) from None
        entry = self.runtime.ffi.cast("const ph_plugin *", int(address))
        return library, entry

    def _verify_header(self, path: str, entry: Any) -> None:
        header = entry.header
        host_major, host_minor = self.abi
        if header.magic != abi.PLUGIN_MAGIC:
            raise PluginLoadError(
                path,
                "entry-magic",
                f"the entry's magic is "
                f"{int(header.magic):#010x}, not {abi.PLUGIN_MAGIC:#010x}: "
                "define the entry with PH_PLUGIN_DEFINE",
            )
        major, minor = int(header.abi_major), int(header.abi_minor)
        if major != host_major:
            raise PluginLoadError(
                path,
                "abi-major",
                f"built for ABI {major}.{minor}, this host "
                f"implements ABI {host_major}.{host_minor}: rebuild the plugin "
                f"against the ABI {host_major} header (plughost info "
                "--cmake-dir)",
            )
        if minor > host_minor:
            raise PluginLoadError(
                path,
                "abi-minor-newer",
                f"built for ABI {major}.{minor}, this "
                f"host implements {host_major}.{host_minor}: upgrade plughost "
                f"or rebuild against the {host_major}.{host_minor} header",
            )
        minimum = self.runtime.lib.rt_offsetof_plugin_storages() + _dl_ffi.sizeof("void *")
        if header.size < minimum:
            raise PluginLoadError(
                path,
                "entry-size",
                f"the entry declares a size of "
                f"{int(header.size)} bytes, less than the {minimum} of every "
                "ABI 1.x entry: the file is corrupt or its entry was not "
                "defined with PH_PLUGIN_DEFINE",
            )

    def _read_types(self, plugin: Plugin) -> None:
        rt = self.runtime
        tables: tuple[tuple[Any, str, type[PluginType], dict[str, Any]], ...] = (
            (plugin.entry.middlewares, "middleware", MiddlewareType, plugin.middlewares),
            (plugin.entry.actions, "action", ActionType, plugin.actions),
            (plugin.entry.storages, "storage", StorageType, plugin.storages),
        )
        for array, kind, cls, into in tables:
            for table in _null_terminated(rt, array):
                if table.size < _min_table_size(kind):
                    raise PluginLoadError(
                        plugin.path,
                        "type-size",
                        f"a {kind} table declares "
                        f"a size of {int(table.size)} bytes, less than ABI "
                        "1.0's: set .size = sizeof(ph_" + kind + "_type)",
                    )
                try:
                    ptype = cls(plugin, table)
                except SchemaError as exc:
                    raise PluginLoadError(
                        plugin.path, "option-schema", f"{kind} type {rt.string(table.id)}: {exc}"
                    ) from None
                self._validate_type(plugin, kind, ptype)
                if ptype.id in into:
                    raise DuplicateTypeError(
                        plugin.path,
                        "duplicate-type",
                        f"declares type id '{ptype.id}' twice: give each type its own id",
                    )
                into[ptype.id] = ptype

    def _validate_type(self, plugin: Plugin, kind: str, ptype: PluginType) -> None:
        match = TYPE_ID.match(ptype.id)
        if not match or match.group(1) != kind + "s":
            raise PluginLoadError(
                plugin.path,
                "type-id",
                f"{kind} type id {ptype.id!r} does not "
                f"look like plugins.{plugin.name}.{kind}s.<Name>: fix its .id",
            )
        table = ptype.table
        missing = [
            hook for hook in _required_hooks(kind) if getattr(table, hook) == self.runtime.ffi.NULL
        ]
        if missing:
            raise PluginLoadError(
                plugin.path,
                "missing-hook",
                f"{kind} type {ptype.id} has no "
                f"{', '.join(missing)} hook: every {kind} must provide it",
            )
        with self._lock:
            owner = self.types.get(ptype.id)
        if owner is not None:
            raise DuplicateTypeError(
                plugin.path,
                "duplicate-type",
                f"declares type id "
                f"'{ptype.id}', already declared by {owner.plugin.path}: "
                "load only one of the two plugins, or rename the type",
            )

    def _init(
        self, plugin: Plugin, config: Any, source: str | None, config_path: str | None
    ) -> None:
        rt = self.runtime
        if plugin.options is not None:
            problems = check_block(
                config,
                plugin.options,
                source or f"plugin {plugin.name}",
                config_path or f"plugins.{plugin.name}.config",
                f"plugin {plugin.name}",
            )
            if problems:
                raise ConfigErrors(problems)
        tree = ConfigTree(
            rt,
            self.ptr,
            config,
            label=f"plugin {plugin.name}",
            path=config_path or f"plugins.{plugin.name}.config",
            source=source,
        )
        tree.set_owner(plugin.name)
        state = rt.ffi.new("void **")
        if rt.lib.rt_call_init(plugin.entry, tree.ptr, state) != rt.lib.PH_OK:
            message = (
                tree.error
                or "init failed without saying why (a plugin bug: call "
                "ph_config_error before returning PH_ERROR)"
            )
            tree.close()
            raise PluginInitError(plugin.path, "init-failed", f"init failed: {message}")
        plugin.state = state[0]
        plugin._config = tree

    # ---------------------------------------------------------------- using types
    def type(self, type_id: str) -> PluginType:
        """The loaded type with ``type_id``; UnknownTypeError names the closest ids."""
        try:
            return self.types[type_id]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(type_id, self.types, n=1)
            hint = (
                f": did you mean '{close[0]}'?"
                if close
                else ": load the plugin that provides it first"
            )
            raise UnknownTypeError(f"no loaded plugin provides '{type_id}'{hint}") from None

    def _typed(self, type_id: str, cls: "builtins.type[PluginType]") -> Any:
        ptype = self.type(type_id)
        if not isinstance(ptype, cls):
            raise ConfigError(f"'{type_id}' is a {ptype.kind}, not a {cls.kind}")
        return ptype

    def create_middleware(
        self, type_id: str, config: Any = None, *, name: str | None = None, **kwargs: Any
    ) -> MiddlewareInstance:
        """A configured instance of middleware ``type_id``, destroyed when the host closes."""
        instance = self._typed(type_id, MiddlewareType).create(config, name=name, **kwargs)
        self._instances.append(instance)
        return instance

    def create_action(
        self, type_id: str, config: Any = None, *, name: str | None = None, **kwargs: Any
    ) -> ActionInstance:
        """A configured instance of action ``type_id``, destroyed when the host closes."""
        instance = self._typed(type_id, ActionType).create(config, name=name, **kwargs)
        self._instances.append(instance)
        return instance

    def create_storage(self, name: str, type_id: str, config: Any = None, **kwargs: Any) -> Storage:
        """A storage of type ``type_id`` registered as ``name``, closed when the host closes."""
        return self._typed(type_id, StorageType).create(config, name=name, **kwargs)

    def storage(self, name: str) -> Storage:
        """The configured storage called ``name``."""
        try:
            return self.storages[name]
        except KeyError:
            raise UnknownTypeError(f"no storage named '{name}'") from None

    def exchange(self, method: str = "GET", path: str = "/", **kwargs: Any) -> "Exchange":
        """A new exchange (request) for driving middlewares and actions from Python."""
        from ..sdk.exchange import Exchange

        return Exchange(self.runtime, self.ptr, method, path, **kwargs)

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Destroys instances (newest first), closes storages, shuts plugins down."""
        if self.closed:
            return
        self.closed = True
        for instance in reversed(self._instances):
            instance.close()
        for storage in reversed(list(self.storages.values())):
            storage.close()
        for plugin in reversed(self.plugins):
            self.runtime.lib.rt_call_shutdown(plugin.entry, plugin.state)
            if plugin._config is not None:
                plugin._config.close()
        self.runtime.lib.rt_host_free(self.ptr)

    def __enter__(self) -> "Host":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _required_hooks(kind: str) -> tuple[str, ...]:
    return {
        "middleware": ("create",),
        "action": ("create", "handle"),
        "storage": ("create", "close", "get", "set", "del", "incr", "reset"),
    }[kind]


def _null_terminated(rt: Runtime, array: Any) -> Iterator[Any]:
    if array == rt.ffi.NULL:
        return
    i = 0
    while array[i] != rt.ffi.NULL:
        yield array[i]
        i += 1


#: What each plugin path held when this process first loaded it (device, inode, size,
#: mtime): what dlopen of that name gives back for as long as the library stays loaded.
_loaded_files: dict[str, tuple[int, int, int, int]] = {}
_loaded_lock = threading.Lock()


def _identity(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _dlopen_current(path: str) -> Any:
    """dlopen ``path`` as the file is now. The dynamic loader hands back the library it
    loaded before under the same name, even after the file was replaced (a reload after a
    plugin upgrade): then the new file is opened under a name of its own — a hard link beside
    it (its $ORIGIN stays the plugin's folder), else a copy in a private folder — which is
    removed once loaded (the mapping stays)."""
    flags = _dl_ffi.RTLD_NOW | _dl_ffi.RTLD_LOCAL
    now = _identity(path)
    with _loaded_lock:
        before = _loaded_files.setdefault(path, now)
    if before == now:
        return _dl_ffi.dlopen(path, flags)
    folder, name = os.path.split(path)
    alias = os.path.join(folder, f".{name}.{now[1]}-{now[3]}.so")  # one name per content
    private = None
    try:
        try:
            os.link(path, alias)
        except OSError:
            private = tempfile.mkdtemp(prefix="plughost-plugin-")
            alias = os.path.join(private, name)
            shutil.copy2(path, alias)
        library = _dl_ffi.dlopen(alias, flags)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(alias)
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
    return library  # (the plain name still means the file as first loaded)


def load_plugin(
    path: str | os.PathLike[str], config: Any = None, *, host: Host | None = None
) -> Plugin:
    """Loads one plugin into ``host`` (a new Host when None) and returns it."""
    return (host or Host()).load_plugin(path, config)


if False:  # for type checkers only
    from ..sdk.exchange import Exchange  # noqa: F401
