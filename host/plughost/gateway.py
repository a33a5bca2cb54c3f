"""The gateway: a Host built from a Seam configuration, with routes and compiled chains.

``Gateway.from_config(path)`` builds it (plughost.building: plugins in their listed order,
storages, middlewares, actions, one C chain per route, every problem reported at once);
its routes live in a RouteTable (plughost.routing); ``dispatch`` and ``handle`` run
requests through their chain and, when the action asks for one, the upstream request
(plughost.proxy). The ASGI application (plughost.asgi) and plughost's HTTP protocol serve it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

from .building import GatewayBuilder
from .chain import Chain, Response, Runner, UpstreamAnswer, log_failure
from .config import GatewayConfig, load_config
from .errors import ConfigError
from .loader import Host
from .proxy.pending import PendingUpstream
from .pyelements import PythonAction, PythonInstance, PythonMiddleware
from .router import Router
from .routing import RouteTable

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
            GatewayBuilder(gateway).build(config, python_elements or {})
        except BaseException:
            gateway.close()
            raise
        gateway.ready = True
        return gateway

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
                 query: bytes, client: bytes, raw_path: bytes | None = None,
                 routed: tuple[Chain, bytes] | Response | None = None
                 ) -> Response | Awaitable[Response]:
        """One request, headers as the ASGI scope holds them (the hot path): the Response
        when the chain ran inline, else an awaitable of it (may-block chains run in a worker
        thread with the GIL released; upstream requests are awaited). ``routed``: what
        route() answered for it, when the caller asked already."""
        if routed is None:
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
