"""The gateway: a Host built from a Seam configuration, with routes and compiled chains.

``Gateway.from_config(path)`` loads the plugins in their listed order, creates the
storages, middlewares and actions, compiles one C chain per route (global middlewares
first) and reports every problem it finds at once (ConfigErrors). ``handle`` runs a
request in-process, without HTTP; the ASGI application (plughost.asgi) uses
``handle_async``.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

from .chain import Chain, Response, Runner, UpstreamAnswer, log_failure
from .config import ConfigErrors, ConfigProblem, GatewayConfig, InstanceSpec, Where, load_config
from .config.instances import storage_references
from .errors import ConfigError, PlughostError, PluginInitError
from .loader import Host
from .plugintypes import ActionType, MiddlewareType, PluginType, StorageType
from .exchange import Exchange
from .proxy.pending import PendingUpstream
from .pyelements import PythonAction, PythonInstance, PythonMiddleware
from .router import ANY_METHOD, RouteConflict, Router
from .routing import RouteTable, Unrouted

log = logging.getLogger("plughost.gateway")

#: Performs an upstream request; set by the ASGI layer to its pooled client.
UpstreamPerformer = Callable[[Any], Awaitable[UpstreamAnswer]]


class Gateway(Host):
    """A configured gateway: plugins, instances, chains and the router."""

    def __init__(self, config: GatewayConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.instances: dict[str, Any] = {}  # middleware/action name -> instance
        self.chains: list[Chain] = []
        self.routes = RouteTable()  # replaced when the routes are compiled
        self.ready = False
        self.upstream: UpstreamPerformer | None = None
        #: Runs may-block chains (None: the event loop's default executor).
        self.executor: Executor | None = None
        self._failed_plugins: set[str] = set()
        self.runner = Runner(self.runtime, self.ptr)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, source: str | os.PathLike[str] | GatewayConfig, *,
                    environ: Mapping[str, str] | None = None,
                    python_elements: Mapping[str, PythonMiddleware | PythonAction] | None = None,
                    **kwargs: Any) -> "Gateway":
        """Builds a gateway from a configuration directory, file or loaded config.

        ``python_elements`` registers Python middlewares/actions by name before the routes
        are compiled, so routes can name them like native ones.
        """
        extra = {"action": [n for n, o in (python_elements or {}).items()
                            if isinstance(o, PythonAction)],
                 "middleware": [n for n, o in (python_elements or {}).items()
                                if not isinstance(o, PythonAction)]}
        config = source if isinstance(source, GatewayConfig) else load_config(
            Path(source), environ=environ, extra_names=extra)
        gateway = cls(config, **kwargs)
        try:
            gateway._build(config, python_elements or {})
        except BaseException:
            gateway.close()
            raise
        gateway.ready = True
        return gateway

    def _build(self, config: GatewayConfig,
               python_elements: Mapping[str, PythonMiddleware | PythonAction]) -> None:
        problems: list[ConfigProblem] = []
        provider: dict[str, int] = {}  # type id -> index of the plugin that declares it
        pending_storages = dict(config.storages)
        self._failed_plugins: set[str] = set()
        for index, spec in enumerate(config.plugins):
            try:
                plugin = self.load_plugin(spec.path, spec.config, source=spec.config_where.file,
                                          config_path=spec.config_where.key)
            except PluginInitError as exc:
                problems.append(_tree_problem(exc.reason.removeprefix("init failed: "),
                                              spec.where))
                self._failed_plugins.add(_plugin_stem(spec.path))
                continue
            except PlughostError as exc:
                problems.append(ConfigProblem(spec.where, getattr(exc, "reason", str(exc))))
                self._failed_plugins.add(_plugin_stem(spec.path))
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
        for name, obj in python_elements.items():
            self._add_python(name, obj)

        for spec in pending_storages.values():
            self._create_instance(spec, StorageType, problems)
        for spec in config.middlewares.values():
            instance = self._create_instance(spec, MiddlewareType, problems)
            if instance is not None:
                self.instances[spec.name] = instance
        for spec in config.actions.values():
            instance = self._create_instance(spec, ActionType, problems)
            if instance is not None:
                self.instances[spec.name] = instance
        if not problems:
            self._compile_routes(config, problems)
        if problems:
            raise ConfigErrors(problems)

    def _create_instance(self, spec: InstanceSpec, expected: type[PluginType],
                         problems: list[ConfigProblem]) -> Any:
        """Creates one configured instance; a problem (and None) when it cannot be."""
        ptype = self.types.get(spec.use)
        if ptype is None:
            owner = spec.use.split(".")[1] if spec.use.count(".") >= 3 else ""
            if owner not in self._failed_plugins:  # else its plugin's problem says it all
                problems.append(ConfigProblem(spec.use_where, self._unknown_use(spec, expected)))
            return None
        if not isinstance(ptype, expected):
            problems.append(ConfigProblem(spec.use_where, f"'{spec.use}' is a {ptype.kind}, not "
                                          f"a {expected.kind}: use it under {ptype.kind}s.yaml"))
            return None
        try:
            if isinstance(ptype, StorageType):
                return ptype.create(spec.config, name=spec.name, source=spec.config_where.file,
                                    path=spec.config_where.key)
            instance = ptype.create(spec.config, name=spec.name,  # type: ignore[attr-defined]
                                    source=spec.config_where.file, path=spec.config_where.key)
            self._instances.append(instance)
            return instance
        except ConfigError as exc:
            problems.append(_tree_problem(str(exc), spec.config_where))
            return None

    def _check_plugin_order(self, config: GatewayConfig, provider: dict[str, int],
                            problems: list[ConfigProblem]) -> None:
        """A plugin whose own config names a storage whose type comes from a plugin listed
        after it: say which plugin to move (this replaces the lookup failure it causes)."""
        for index, spec in enumerate(config.plugins):
            for name, where in storage_references(spec.config, spec.config_where):
                storage = config.storages.get(name)
                later = provider.get(storage.use, -1) if storage else -1
                if later > index:
                    dependency = config.plugins[later].path.name
                    problems[:] = [p for p in problems if p.where != where]
                    problems.append(ConfigProblem(where, (
                        f"plugin {spec.path.name} uses storage '{name}' ({storage.use}), "
                        f"whose type comes from {dependency}, listed after it: move "
                        f"{dependency} before {spec.path.name} in the plugin list")))

    def _unknown_use(self, spec: InstanceSpec, expected: type[PluginType]) -> str:
        known = [tid for tid, t in self.types.items() if isinstance(t, expected)]
        close = difflib.get_close_matches(spec.use, known, n=1, cutoff=0.85)
        if close:
            return f"no loaded plugin provides '{spec.use}': did you mean '{close[0]}'?"
        if known:
            return (f"no loaded plugin provides '{spec.use}': list the plugin that declares it in "
                    f"plugins.yaml (loaded {expected.kind}s: {', '.join(sorted(known))})")
        return (f"no loaded plugin provides '{spec.use}': list the plugin that declares it in "
                "plugins.yaml")

    def _compile_routes(self, config: GatewayConfig, problems: list[ConfigProblem]) -> None:
        """One chain per endpoint (a route as a service mounts it): global middlewares,
        then the service's and the route's, then the action."""
        self.routes = RouteTable(case_sensitive=config.server.case_sensitive,
                                 strict_routing=config.server.strict_routing)
        global_mws = [self.instances[name] for name in config.global_middlewares
                      if name in self.instances]
        if global_mws:
            # As Fiber runs app.Use middlewares for every request, a request no route takes
            # still passes the global middlewares (a global CORS answers its preflight,
            # helmet's headers reach the 404), then gets its 404 or 405.
            ending = PythonInstance(self.runtime, "unrouted", Unrouted(), "action")
            self._instances.append(ending)  # type: ignore[arg-type]
            self.routes.unrouted = Chain(self.runtime, global_mws, ending, "(no route)")
            self.chains.append(self.routes.unrouted)
        for endpoint in config.endpoints:
            mws = global_mws + [self.instances[name] for name in endpoint.middlewares
                                if name in self.instances]
            action = self.instances.get(endpoint.action)
            if action is None:
                continue  # reported by the config loader
            chain = Chain(self.runtime, mws, action, endpoint.route)
            chain.pattern = endpoint.path
            self.chains.append(chain)
            methods = (ANY_METHOD,) if "ALL" in endpoint.methods else endpoint.methods
            try:
                self.routes.add(endpoint.path, methods, chain)
            except (RouteConflict, ValueError) as exc:
                problems.append(ConfigProblem(endpoint.where, f"{exc}: change the path or methods"))

    # ---------------------------------------------------------- Python elements
    def _add_python(self, name: str, obj: PythonMiddleware | PythonAction) -> PythonInstance:
        if name in self.instances:
            raise ConfigError(f"an element named '{name}' already exists: pick another name")
        kind = "action" if isinstance(obj, PythonAction) else "middleware"
        instance = PythonInstance(self.runtime, name, obj, kind)
        self.instances[name] = instance
        self._instances.append(instance)  # type: ignore[arg-type]
        return instance

    def add_route(self, path: str, action: str, *, methods: Sequence[str] = ("GET",),
                  middlewares: Sequence[str] = (), name: str = "") -> Chain:
        """Adds a route at run time (scripting and tests): names refer to instances."""
        assert self.config is not None
        mws = [self.instances[n] for n in (*self.config.global_middlewares, *middlewares)]
        chain = Chain(self.runtime, mws, self.instances[action], name or path)
        chain.pattern = path
        self.routes.add(path, tuple(m.upper() for m in methods), chain)
        self.chains.append(chain)
        return chain

    # ---------------------------------------------------------------- requests
    @property
    def router(self) -> Router[Chain]:
        """The router of the gateway's routes (``routes.router``)."""
        return self.routes.router

    def route(self, method: str, path: str,
              raw_path: bytes | None = None) -> tuple[Chain, bytes] | Response:
        """The chain for a request and its packed route parameters, or a ready 404/405
        (see RouteTable.route)."""
        return self.routes.route(method, path, raw_path)

    def _run(self, chain: Chain, method: bytes, path: bytes, query: bytes, client: bytes,
             headers: Sequence[Sequence[bytes]], body: bytes, params: bytes,
             release_gil: bool = False) -> Response | PendingUpstream:
        """Runs the chain on this thread: the Response, or the exchange waiting on the
        upstream request its action asked for."""
        status, a, b, failure = self.runner.serve_fast(chain, method, path, query, client,
                                                       headers, body, params, release_gil)
        if status == 0:
            return PendingUpstream(self.runner, chain, a, b)
        if failure is not None:
            log_failure(chain, failure)
        return Response(status, a, b)

    @staticmethod
    def log_failure(chain: Chain, failure: tuple[str, str]) -> None:
        """Logs why an element failed (the client got a JSON error with the request id)."""
        log_failure(chain, failure)

    def pending(self, chain: Chain, exchange_address: int, passed: int) -> PendingUpstream:
        """The exchange a one-call path left waiting on an upstream request."""
        return PendingUpstream(self.runner, chain, exchange_address, passed)

    async def perform_upstream(self, pending: PendingUpstream) -> Response:
        """Performs the HTTP upstream request, holding the answer whole, then the response
        phase (``pending`` is finished either way)."""
        try:
            upstream = pending.directive()
            if self.upstream is not None:
                answer = await self.upstream(upstream)
            else:
                from .upstream import UpstreamClient

                client = UpstreamClient()
                try:
                    answer = await client.perform(upstream)
                finally:
                    await client.close()
        except BaseException:
            pending.discard()
            raise
        return pending.finish(answer)

    async def handshake(self, path: str, headers: Sequence[Sequence[bytes]], query: bytes,
                        client: bytes, raw_path: bytes | None = None
                        ) -> Response | PendingUpstream:
        """Runs a WebSocket handshake (a GET) through its route's request phase and action:
        the Response when the chain or the router answered, else the exchange waiting on
        the action's upstream directive."""
        routed = self.route("GET", path, raw_path)
        if type(routed) is Response:
            return routed
        chain, params = routed  # type: ignore[misc]
        args = (chain, b"GET", path.encode("utf-8", "surrogateescape"), query, client, headers,
                b"", params)
        if chain.may_block:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, self._run, *args, True)
        return self._run(*args, chain.release_gil)

    def dispatch(self, method: str, path: str, headers: Sequence[Sequence[bytes]], body: bytes,
                 query: bytes, client: bytes,
                 raw_path: bytes | None = None) -> Response | Awaitable[Response]:
        """One request, headers as the ASGI scope holds them (the hot path): the Response
        when the chain ran inline, else an awaitable of it (may-block chains run in a worker
        thread with the GIL released; upstream requests are awaited)."""
        routed = self.route(method, path, raw_path)
        if type(routed) is Response:
            return routed
        chain, params = routed  # type: ignore[misc]
        args = (chain, method.encode(), path.encode("utf-8", "surrogateescape"), query, client,
                headers, body, params)
        if chain.may_block:
            return self._run_blocking(args)
        result = self._run(*args, chain.release_gil)
        if type(result) is Response:
            return result
        return self.perform_upstream(result)  # type: ignore[arg-type]

    async def _run_blocking(self, args: tuple[Any, ...]) -> Response:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.executor, self._run, *args, True)
        if isinstance(result, Response):
            return result
        return await self.perform_upstream(result)

    async def handle_raw(self, method: str, path: str, headers: Sequence[Sequence[bytes]],
                         body: bytes, query: bytes, client: bytes) -> Response:
        """Like :meth:`dispatch`, always awaitable."""
        result = self.dispatch(method, path, headers, body, query, client)
        return result if isinstance(result, Response) else await result

    async def handle_async(self, method: str, path: str,
                           headers: Sequence[tuple[bytes, bytes]] = (), body: bytes = b"", *,
                           query: str = "", client_ip: str = "") -> Response:
        """Runs one request; may-block chains run in a worker thread."""
        return await self.handle_raw(method, path, headers, body, query.encode("latin-1"),
                                     client_ip.encode())

    def handle(self, method: str, path: str, headers: Mapping[str, str] |
               Sequence[tuple[str, str]] = (), body: bytes = b"", *, query: str = "",
               client_ip: str = "127.0.0.1") -> Response:
        """Runs one request in-process, without HTTP (scripting and tests)."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
        routed = self.route(method.upper(), path)
        if isinstance(routed, Response):
            return routed
        chain, params = routed
        result = self._run(chain, method.upper().encode(), path.encode(), query.encode(),
                           client_ip.encode(), raw, body, params, chain.release_gil)
        if isinstance(result, Response):
            return result
        return asyncio.run(self.perform_upstream(result))

    def close(self) -> None:
        if self.closed:
            return
        self.ready = False
        for chain in self.chains:
            chain.close()
        super().close()


def _plugin_stem(path: Path) -> str:
    """The plugin name a file most likely holds: "libtrace.so" -> "trace"."""
    stem = path.name.split(".", 1)[0]
    return stem[3:] if stem.startswith("lib") else stem


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
