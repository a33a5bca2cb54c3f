"""The gateway: a Host built from a Seam configuration, with routes and compiled chains.

``Gateway.from_config(path)`` builds it (plughost.building: plugins in their listed order,
storages, middlewares, actions, one C chain per route, every problem reported at once);
its routes live in a RouteTable (plughost.serving.routing); its :attr:`~Gateway.pipeline`
(plughost.serving.pipeline) serves every request, whether plughost's HTTP protocol, the ASGI
application or ``handle`` (in-process) received it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import GatewayConfig, load_config
from ..errors import ConfigError
from ..loading.loader import Host
from ..sdk.pyelements import PythonAction, PythonInstance, PythonMiddleware
from .building import GatewayBuilder
from .chain import Chain, Response, Runner
from .pipeline import Pipeline, Request, drop_connection_options
from .router import Router
from .routing import RouteTable

log = logging.getLogger("plughost.gateway")


class Gateway(Host):
    """A configured gateway: plugins, instances, chains and the router."""

    def __init__(self, config: GatewayConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.instances: dict[str, Any] = {}  # middleware/action name -> instance
        self.chains: list[Chain] = []
        self.routes = RouteTable()  # replaced when the routes are compiled
        self.ready = False
        self.runner = Runner(self.runtime, self.ptr)
        self._pipeline: Pipeline | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | GatewayConfig,
        *,
        environ: Mapping[str, str] | None = None,
        python_elements: Mapping[str, PythonMiddleware | PythonAction] | None = None,
        **kwargs: Any,
    ) -> "Gateway":
        """Builds a gateway from a configuration directory, file or loaded config.

        ``python_elements`` registers Python middlewares/actions by name before the routes
        are compiled, so routes can name them like native ones.
        """
        extra = {
            "action": [
                n for n, o in (python_elements or {}).items() if isinstance(o, PythonAction)
            ],
            "middleware": [
                n for n, o in (python_elements or {}).items() if not isinstance(o, PythonAction)
            ],
        }
        config = (
            source
            if isinstance(source, GatewayConfig)
            else load_config(Path(source), environ=environ, extra_names=extra)
        )
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

    def add_route(
        self,
        path: str,
        action: str,
        *,
        methods: Sequence[str] = ("GET",),
        middlewares: Sequence[str] = (),
        name: str = "",
    ) -> Chain:
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

    @property
    def pipeline(self) -> Pipeline:
        """How this gateway serves requests (plughost.serving.pipeline), made once."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self)
        return self._pipeline

    def route(
        self, method: str, path: str, raw_path: bytes | None = None
    ) -> tuple[Chain, bytes] | Response:
        """The chain for a request and its packed route parameters, or a ready 404/405
        (see RouteTable.route)."""
        return self.routes.route(method, path, raw_path)

    async def handle_async(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        *,
        query: str = "",
        client_ip: str = "",
    ) -> Response:
        """Serves one request through the pipeline, as the HTTP server would (headers as
        lower-case bytes pairs); may-block chains run in a worker thread."""
        request = Request(
            method.upper(),
            path,
            drop_connection_options(list(headers)),
            query.encode("latin-1"),
            client_ip.encode(),
        )
        return await self.pipeline.serve(request, body)

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        query: str = "",
        client_ip: str = "127.0.0.1",
    ) -> Response:
        """Serves one request in-process, without HTTP (scripting and tests), through the
        same pipeline as the HTTP server; an upstream request runs on a loop of its own."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
        return self.pipeline.serve_now(
            Request(
                method.upper(),
                path,
                drop_connection_options(raw),
                query.encode("latin-1"),
                client_ip.encode(),
            ),
            body,
        )

    def close(self) -> None:
        if self.closed:
            return
        self.ready = False
        for chain in self.chains:
            chain.close()
        super().close()
