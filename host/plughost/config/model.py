"""The loaded configuration: plain dataclasses, each carrying the Where of what it came from.

Nothing here knows about plugins: ``use`` ids and ``config`` subtrees are kept as written
(``config`` as the composed ``yaml.Node`` with substitution applied, so the host can build C
configuration trees with line numbers) and checked by the host once plugins are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from .problems import ConfigProblem, Where

InstanceKind = Literal["storage", "middleware", "action"]

#: Methods a route may list; ``ALL`` (as in Seam) means every method.
HTTP_METHODS: tuple[str, ...] = (
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
)
ALL_METHODS = "ALL"


@dataclass
class PluginSpec:
    """One plugin to load, in load order.

    ``where`` points at the path as written (``plugins[0].path``, ``plugins[0].name`` for a
    plugin named rather than given by path, or ``plugin.folder`` for plugins found by folder
    + pattern); ``config_where`` at its ``config:`` (or at the entry
    when there is none).
    """

    path: Path
    config: yaml.Node | None
    sha256: str | None
    where: Where
    config_where: Where
    origin: Literal["list", "name", "folder"] = "list"


@dataclass
class ModuleSpec:
    """A Python module that declares middleware and action types (``- module: pkg.mod``);
    ``where`` points at the module's name, ``config_where`` at its ``config:``."""

    module: str
    config: yaml.Node | None
    where: Where
    config_where: Where


@dataclass
class InstanceSpec:
    """A named storage, middleware or action: ``use`` is a type id a plugin registers."""

    name: str
    kind: InstanceKind
    use: str
    config: yaml.Node | None
    where: Where
    use_where: Where
    config_where: Where
    #: Seam's middlewares page writes ``anyRequest: true``: such a middleware runs for every
    #: request (it is added to :attr:`GatewayConfig.global_middlewares`).
    any_request: bool = False


@dataclass
class RouteSpec:
    """A route as written (map form ``Name: {gatewayPath, methods}`` or list form
    ``- {path, method}``); list entries without ``name:`` are named ``"GET /path"``."""

    name: str
    path: str
    methods: tuple[str, ...]
    middlewares: tuple[str, ...]
    action: str
    where: Where
    path_where: Where
    methods_where: Where
    middlewares_where: tuple[Where, ...]
    action_where: Where
    #: ``:param`` names in path order.
    params: tuple[str, ...] = ()


@dataclass
class ServiceSpec:
    """A Seam service: routes mounted under ``base_path`` (``gatewayBasePath``) with
    ``middlewares`` run before each route's own."""

    name: str
    routes: tuple[str, ...]
    where: Where
    routes_where: tuple[Where, ...] = ()
    base_path: str = ""
    base_path_where: Where | None = None
    middlewares: tuple[str, ...] = ()
    middlewares_where: tuple[Where, ...] = ()


@dataclass
class EndpointSpec:
    """One path + methods the gateway serves, with the chain that runs for it.

    As in Seam, a route listed by services is mounted once per service at
    ``gatewayBasePath`` + ``gatewayPath`` with the service's middlewares first; routes that
    no service lists are mounted at their own path only when no service is defined at all
    (Seam's plugin pages write routes without services). Global middlewares are not included.
    """

    path: str
    methods: tuple[str, ...]
    route: str
    service: str | None
    middlewares: tuple[str, ...]
    action: str
    where: Where


@dataclass
class ServerSpec:
    """``server:`` with Seam's defaults (Seam's server page and its ServerConfig)."""

    where: Where
    host: str = "0.0.0.0"
    port: int = 8090
    address: str = "0.0.0.0:8090"
    tls: bool = False
    cert_file: Path | None = None
    key_file: Path | None = None
    app_name: str = ""
    disable_health_check: bool = False
    health_live_route: str = "/health/live"
    health_ready_route: str = "/health/ready"
    prefork: bool = False
    concurrency: int = 256 * 1024
    body_limit: int = 4 * 1024 * 1024
    reduce_memory_usage: bool = False
    stream_request_body: bool = False
    compressed_file_suffix: str = ".seam.gz"
    strict_routing: bool = False
    case_sensitive: bool = False
    unescape_path: bool = False
    get_only: bool = False
    enable_trusted_proxy_check: bool = False
    trusted_proxies: tuple[str, ...] = ()
    enable_ip_validation: bool = False
    proxy_header: str = ""
    read_timeout: float = 0.0
    write_timeout: float = 0.0
    idle_timeout: float = 0.0
    server_header: str = ""
    etag: bool = False
    disable_default_date: bool = False
    disable_default_content_type: bool = False
    disable_header_normalizing: bool = False
    disable_startup_message: bool = False
    enable_print_routes: bool = False
    read_buffer_size: int = 4096
    write_buffer_size: int = 4096
    disable_keepalive: bool = False
    disable_pre_parse_multipart_form: bool = False
    enable_splitting_on_parsers: bool = False
    network: str = "tcp4"
    #: plughost's: the longest request target (bytes; longer: 414), as nginx's 8 KiB.
    uri_limit: int = 8 * 1024
    #: plughost's: the most header fields a request may have (more: 431).
    header_count_limit: int = 100
    #: plughost's: seconds a chain element may run before its worker is reported and
    #: replaced (plughost.serving.supervisor).
    element_timeout: float = 60.0
    #: plughost's: keep request header fields whose names hold "_" (else dropped).
    allow_underscores_in_headers: bool = False
    #: plughost's: (host, port) of the admin listener serving Prometheus metrics, or None.
    metrics_address: tuple[str, int] | None = None
    #: Where each key was written, by its YAML name (``"readTimeout"``); absent = default.
    key_where: dict[str, Where] = field(default_factory=dict)


@dataclass
class GatewayConfig:
    """A whole gateway configuration, statically valid (plugins not yet loaded)."""

    source: Path
    files: list[Path]
    plugins: list[PluginSpec]
    storages: dict[str, InstanceSpec]
    middlewares: dict[str, InstanceSpec]
    actions: dict[str, InstanceSpec]
    global_middlewares: tuple[str, ...]
    routes: dict[str, RouteSpec]
    services: dict[str, ServiceSpec]
    server: ServerSpec
    allow_insecure_permissions: bool = False
    #: Where each name of ``global_middlewares`` was written.
    global_middlewares_where: tuple[Where, ...] = ()
    #: What the gateway serves (see :class:`EndpointSpec`).
    endpoints: tuple[EndpointSpec, ...] = ()
    #: Things that are allowed but probably not meant (a route no service mounts ...).
    warnings: list[ConfigProblem] = field(default_factory=list)
    #: Python modules declaring types (``- module:`` entries of ``plugins:``).
    modules: list[ModuleSpec] = field(default_factory=list)

    def instance(self, kind: str, name: str) -> InstanceSpec | None:
        """The storage, middleware or action called ``name``."""
        table = {"storage": self.storages, "middleware": self.middlewares, "action": self.actions}[
            kind
        ]
        return table.get(name)
