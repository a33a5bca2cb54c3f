"""Building a gateway from its configuration: plugins, instances, chains, routes.

:class:`GatewayBuilder` fills a :class:`~plughost.gateway.Gateway` from a loaded
configuration and reports every problem it finds at once (ConfigErrors), each with its file,
line and key: a plugin that does not load or refuses its config, a type nobody provides
(with "did you mean"), a dependency listed after its user, a route that conflicts.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from typing import TYPE_CHECKING, Any, Mapping

from ..config import ConfigErrors, ConfigProblem, GatewayConfig, InstanceSpec, Where
from ..config.model import PluginSpec
from ..config.instances import storage_references
from ..config.model import ModuleSpec
from ..config.options import Option, check_block, plain_value, typed_config
from ..errors import ConfigError, PlughostError, PluginInitError
from ..loading.loader import Plugin
from ..loading.plugintypes import ActionType, MiddlewareType, PluginType, StorageType
from ..sdk.pyelements import PythonAction, PythonInstance, PythonMiddleware
from ..sdk.pymodules import ModuleError, PythonType, create_element, load_module
from .chain import Chain
from .router import ANY_METHOD, RouteConflict
from .routing import RouteTable, Unrouted

if TYPE_CHECKING:
    from .gateway import Gateway


class GatewayBuilder:
    """Builds one gateway (see the module's docstring)."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self._failed_plugins: set[str] = set()  # stems of plugins that did not load
        #: Types of plugins that opened but did not initialise: their instances' configs
        #: are still checked against their schemas, so one run reports every problem.
        self._unloaded_types: dict[str, PluginType] = {}
        #: Middleware and action types of the Python modules the configuration lists.
        self._python_types: dict[str, PythonType] = {}
        self._failed_modules = False  # a listed Python module could not be imported

    def build(
        self, config: GatewayConfig, python_elements: Mapping[str, PythonMiddleware | PythonAction]
    ) -> None:
        """Loads the plugins in their listed order, creates the storages (each as soon as
        its plugin is loaded), the Python elements, middlewares and actions, then compiles
        the routes; ConfigErrors with every problem found."""
        problems: list[ConfigProblem] = []
        provider: dict[str, int] = {}  # type id -> index of the plugin that declares it
        pending_storages = dict(config.storages)
        for index, spec in enumerate(config.plugins):
            plugin = self._load(spec, problems)
            if plugin is None:
                continue
            for type_id in plugin.types:
                provider[type_id] = index
            # Storages of this plugin's types exist before the next plugin's init runs, so a
            # plugin listed later can look them up (Seam's rule: dependencies come first).
            for name, st in list(pending_storages.items()):
                if st.use in plugin.storages:
                    del pending_storages[name]
                    self._create_instance(st, StorageType, problems)
        self._check_plugin_order(config, provider, problems)
        for module in config.modules:
            self._load_module(module, config, problems)
        for name, obj in python_elements.items():
            self.gateway._add_python(name, obj)

        for storage in pending_storages.values():
            self._create_instance(storage, StorageType, problems)
        for kind, table in ((MiddlewareType, config.middlewares), (ActionType, config.actions)):
            for element in table.values():
                instance = self._create_instance(element, kind, problems)
                if instance is not None:
                    self.gateway.instances[element.name] = instance
        if not problems:
            self._compile_routes(config, problems)
        if problems:
            raise ConfigErrors(problems)

    def _create_instance(
        self, spec: InstanceSpec, expected: type[PluginType], problems: list[ConfigProblem]
    ) -> Any:
        """Creates one configured instance; a problem (and None) when it cannot be."""
        pytype = self._python_types.get(spec.use)
        if pytype is not None:
            return self._create_python(spec, pytype, expected, problems)
        ptype = self.gateway.types.get(spec.use)
        unloaded = self._unloaded_types.get(spec.use)
        if ptype is None and unloaded is not None and unloaded.options is not None:
            problems.extend(_schema_problems(spec, unloaded.options, unloaded.id))
            return None
        if ptype is None:
            owner = spec.use.split(".")[1] if spec.use.count(".") >= 3 else ""
            if self._says_unknown(owner):
                problems.append(ConfigProblem(spec.use_where, self._unknown_use(spec, expected)))
            return None
        if not isinstance(ptype, expected):
            problems.append(ConfigProblem(spec.use_where, _wrong_kind(spec, ptype, expected)))
            return None
        try:
            if isinstance(ptype, StorageType):
                return ptype.create(
                    spec.config,
                    name=spec.name,
                    source=spec.config_where.file,
                    path=spec.config_where.key,
                )
            creatable: Any = ptype  # a MiddlewareType or ActionType
            instance = creatable.create(
                spec.config,
                name=spec.name,
                source=spec.config_where.file,
                path=spec.config_where.key,
            )
            self.gateway._instances.append(instance)
            return instance
        except ConfigErrors as exc:  # against the type's option schema
            problems.extend(_placed(exc.problems, spec.config_where))
            return None
        except ConfigError as exc:
            problems.append(_tree_problem(str(exc), spec.config_where))
            return None

    def check_partial(self, config: GatewayConfig, all_plugins: bool = True) -> list[ConfigProblem]:
        """What can still be checked of a configuration whose files have problems (the
        ``partial`` of their ConfigErrors): every plugin loads and initialises with its own
        config, and every instance names a type that exists, whose option schema its config
        passes. No create hook runs: the references between instances may be broken.
        ``all_plugins`` False: some plugin entries could not be read, so a type nobody
        provides may be theirs and is not reported."""
        problems: list[ConfigProblem] = []
        for spec in config.plugins:
            self._load(spec, problems)
        for module in config.modules:
            self._load_module(module, config, problems)
        for kind, table in (
            (StorageType, config.storages),
            (MiddlewareType, config.middlewares),
            (ActionType, config.actions),
        ):
            for element in table.values():
                ptype = (
                    self.gateway.types.get(element.use)
                    or self._unloaded_types.get(element.use)
                    or self._python_types.get(element.use)
                )
                if ptype is None:
                    owner = element.use.split(".")[1] if element.use.count(".") >= 3 else ""
                    if all_plugins and self._says_unknown(owner):
                        problems.append(
                            ConfigProblem(element.use_where, self._unknown_use(element, kind))
                        )
                elif ptype.kind != kind.kind:
                    problems.append(
                        ConfigProblem(element.use_where, _wrong_kind(element, ptype, kind))
                    )
                elif ptype.options is not None:
                    problems.extend(_schema_problems(element, ptype.options, ptype.id))
        return problems

    def _load(self, spec: PluginSpec, problems: list[ConfigProblem]) -> Plugin | None:
        """Loads and initialises one listed plugin; a problem (and None) when it cannot."""
        try:
            return self.gateway.load_plugin(
                spec.path,
                spec.config,
                source=spec.config_where.file,
                config_path=spec.config_where.key,
            )
        except ConfigErrors as exc:  # the plugin's own config, against its schema
            problems.extend(_placed(exc.problems, spec.config_where))
        except PluginInitError as exc:
            problems.append(_tree_problem(exc.reason.removeprefix("init failed: "), spec.where))
        except PlughostError as exc:
            problems.append(ConfigProblem(spec.where, getattr(exc, "reason", str(exc))))
            self._failed_plugins.add(_plugin_stem(spec.path))
            return None
        self._failed_plugins.add(_plugin_stem(spec.path))
        self._keep_schemas(spec.path)
        return None

    def _load_module(
        self, spec: ModuleSpec, config: GatewayConfig, problems: list[ConfigProblem]
    ) -> None:
        """Imports a Python module's plugin, checks and hands it its own config."""
        try:
            loaded = load_module(
                spec.module, config.source if config.source.is_dir() else config.source.parent
            )
        except ModuleError as exc:
            problems.append(ConfigProblem(spec.where, str(exc)))
            self._failed_modules = True
            return
        clash = [tid for tid in loaded.types if tid in self.gateway.types]
        if clash:
            problems.append(
                ConfigProblem(
                    spec.where,
                    f"Python module '{spec.module}' declares "
                    f"{clash[0]}, which a loaded plugin declares too: "
                    "rename the plugin in PythonPlugin(name=...)",
                )
            )
            return
        self._python_types.update(loaded.types)
        declared = loaded.declared
        settings = _plain_config(spec.config)
        if declared.options is not None:
            found = _schema_problems(spec, declared.options, f"plugin {declared.name}")
            if found:
                problems.extend(found)
                return
            settings = typed_config(spec.config, declared.options)
        if declared.init is not None:
            try:
                declared.init(settings)
            except Exception as exc:  # noqa: BLE001 - the module's own code failed
                problems.append(
                    ConfigProblem(
                        spec.config_where,
                        f"plugin {declared.name} refused its configuration: {exc}",
                    )
                )

    def _create_python(
        self,
        spec: InstanceSpec,
        pytype: PythonType,
        expected: type[PluginType],
        problems: list[ConfigProblem],
    ) -> Any:
        """An instance of a type a Python module declares, with its checked config."""
        if pytype.kind != expected.kind:
            problems.append(
                ConfigProblem(
                    spec.use_where,
                    f"'{spec.use}' is a {pytype.kind}, "
                    f"not a {expected.kind}: use it under "
                    f"{pytype.kind}s.yaml",
                )
            )
            return None
        settings: Any = _plain_config(spec.config)
        if pytype.options is not None:
            found = _schema_problems(spec, pytype.options, pytype.id)
            if found:
                problems.extend(found)
                return None
            settings = typed_config(spec.config, pytype.options)
        try:
            element = create_element(pytype, settings)
        except ModuleError as exc:
            problems.append(ConfigProblem(spec.config_where, str(exc)))
            return None
        return self.gateway._add_python(spec.name, element)

    def _keep_schemas(self, path: Path) -> None:
        """The types of a plugin that did not initialise, read without running its init."""
        try:
            plugin = self.gateway.describe_plugin(path)
        except PlughostError:
            return
        self._unloaded_types.update(plugin.types)

    def _check_plugin_order(
        self, config: GatewayConfig, provider: dict[str, int], problems: list[ConfigProblem]
    ) -> None:
        """A plugin whose own config names a storage whose type comes from a plugin listed
        after it: say which plugin to move (this replaces the lookup failure it causes)."""
        for index, spec in enumerate(config.plugins):
            for name, where in storage_references(spec.config, spec.config_where):
                storage = config.storages.get(name)
                later = provider.get(storage.use, -1) if storage else -1
                if storage is not None and later > index:
                    dependency = config.plugins[later].path.name
                    problems[:] = [p for p in problems if p.where != where]
                    problems.append(
                        ConfigProblem(
                            where,
                            (
                                f"plugin {spec.path.name} uses storage '{name}' ({storage.use}), "
                                f"whose type comes from {dependency}, listed after it: move "
                                f"{dependency} before {spec.path.name} in the plugin list"
                            ),
                        )
                    )

    def _says_unknown(self, owner: str) -> bool:
        """Whether an unknown type id of plugin ``owner`` is worth a problem of its own: not
        when the plugin did not load and its types are unknown (its problem says it all)."""
        known = {
            tid.split(".")[1]
            for tid in [*self.gateway.types, *self._unloaded_types, *self._python_types]
        }
        if self._failed_modules and owner not in known:
            return False  # it may be the plugin of a module that could not be imported
        return owner not in self._failed_plugins or owner in known

    def _unknown_use(self, spec: InstanceSpec, expected: type[PluginType]) -> str:
        types: dict[str, Any] = {**self._unloaded_types, **self._python_types, **self.gateway.types}
        known = [tid for tid, t in types.items() if t.kind == expected.kind]
        close = difflib.get_close_matches(spec.use, known, n=1, cutoff=0.85)
        if close:
            return f"no loaded plugin provides '{spec.use}': did you mean '{close[0]}'?"
        if known:
            return (
                f"no loaded plugin provides '{spec.use}': list the plugin that declares it in "
                f"plugins.yaml (loaded {expected.kind}s: {', '.join(sorted(known))})"
            )
        return (
            f"no loaded plugin provides '{spec.use}': list the plugin that declares it in "
            "plugins.yaml"
        )

    def _compile_routes(self, config: GatewayConfig, problems: list[ConfigProblem]) -> None:
        """One chain per endpoint (a route as a service mounts it): global middlewares,
        then the service's and the route's, then the action."""
        self.gateway.routes = RouteTable(
            case_sensitive=config.server.case_sensitive, strict_routing=config.server.strict_routing
        )
        global_mws = [
            self.gateway.instances[name]
            for name in config.global_middlewares
            if name in self.gateway.instances
        ]
        # As Fiber runs app.Use middlewares for every request, a request no route takes
        # still passes the global middlewares (a global CORS answers its preflight,
        # helmet's headers reach the 404), then gets its 404 or 405 — from a chain of
        # its own even without them, so that the metrics count it as route "(no route)".
        ending = PythonInstance(self.gateway.runtime, "unrouted", Unrouted(), "action")
        self.gateway._instances.append(ending)  # type: ignore[arg-type]
        self.gateway.routes.unrouted = Chain(self.gateway.runtime, global_mws, ending, "(no route)")
        self.gateway.chains.append(self.gateway.routes.unrouted)
        for endpoint in config.endpoints:
            mws = global_mws + [
                self.gateway.instances[name]
                for name in endpoint.middlewares
                if name in self.gateway.instances
            ]
            action = self.gateway.instances.get(endpoint.action)
            if action is None:
                continue  # reported by the config loader
            chain = Chain(self.gateway.runtime, mws, action, endpoint.route)
            chain.pattern = endpoint.path
            self.gateway.chains.append(chain)
            methods = (ANY_METHOD,) if "ALL" in endpoint.methods else endpoint.methods
            try:
                self.gateway.routes.add(endpoint.path, methods, chain)
            except (RouteConflict, ValueError) as exc:
                problems.append(ConfigProblem(endpoint.where, f"{exc}: change the path or methods"))


def _plugin_stem(path: Path) -> str:
    """The plugin name a file most likely holds: "libtrace.so" -> "trace"."""
    stem = path.name.split(".", 1)[0]
    return stem[3:] if stem.startswith("lib") else stem


def _schema_problems(
    spec: InstanceSpec | ModuleSpec, options: tuple[Option, ...], owner: str
) -> list[ConfigProblem]:
    """The problems of a ``config:`` block against ``options``, placed in its file."""
    found = check_block(spec.config, options, spec.config_where.file, spec.config_where.key, owner)
    return _placed(found, spec.config_where)


def _plain_config(node: Any) -> dict[str, Any]:
    """A config block as plain Python values (an empty dict when there is none)."""
    value = plain_value(node)
    return value if isinstance(value, dict) else {}


def _wrong_kind(
    spec: InstanceSpec, ptype: PluginType | PythonType, expected: type[PluginType]
) -> str:
    return f"'{spec.use}' is a {ptype.kind}, not a {expected.kind}: use it under {ptype.kind}s.yaml"


def _placed(problems: list[ConfigProblem], config_where: Where) -> list[ConfigProblem]:
    """Problems of a config block; one with no line (a required option missing from an
    absent ``config:``) points at the block (or its entry)."""
    return [
        p
        if p.where.line
        else ConfigProblem(Where(config_where.file, config_where.line, p.where.key), p.message)
        for p in problems
    ]


def _tree_problem(message: str, fallback: Where) -> ConfigProblem:
    """A config tree's error reads 'file:line: key: what' (or 'key: what'); keep its exact
    location, which points at the offending key rather than at the `config:` block."""
    head, sep, rest = message.partition(": ")
    file, _, line = head.rpartition(":")
    # Only the tree's own file counts: "valkey 127.0.0.1:6379: ..." is a message, not a place.
    if sep and file and line.isdigit() and file == str(fallback.file):
        key, sep2, what = rest.partition(": ")
        if sep2:
            return ConfigProblem(Where(file, int(line), key), what)
    return ConfigProblem(fallback, message)
