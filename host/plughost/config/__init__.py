"""Loading and static validation of a gateway configuration written as Seam documents it.

``load_config(path)`` reads a folder of Seam's files (``plugins.yaml``, ``storages.yaml``,
``middlewares.yaml``, ``actions.yaml``, ``routes.yaml``, ``services.yaml``, ``server.yaml``)
or one YAML file holding the same keys, substitutes ``${VAR}``, checks everything that can be
checked without loading a plugin, and returns a :class:`GatewayConfig`; otherwise it raises
:class:`ConfigErrors` listing every problem with its file, line and key. This package does
not load plugins or the C runtime.
"""

from .addresses import parse_address
from .durations import parse_duration, parse_size
from .load import CONFIG_FILES, config_from_text, load_config
from .model import (
    ALL_METHODS,
    HTTP_METHODS,
    EndpointSpec,
    GatewayConfig,
    InstanceSpec,
    ModuleSpec,
    PluginSpec,
    RouteSpec,
    ServerSpec,
    ServiceSpec,
)
from .problems import ConfigErrors, ConfigProblem, Where

__all__ = [
    "ALL_METHODS",
    "CONFIG_FILES",
    "ConfigErrors",
    "ConfigProblem",
    "EndpointSpec",
    "GatewayConfig",
    "HTTP_METHODS",
    "InstanceSpec",
    "ModuleSpec",
    "PluginSpec",
    "RouteSpec",
    "ServerSpec",
    "ServiceSpec",
    "Where",
    "config_from_text",
    "load_config",
    "parse_address",
    "parse_duration",
    "parse_size",
]
