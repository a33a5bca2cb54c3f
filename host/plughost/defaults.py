"""The embedded default configuration and where its plugins are found."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from .config import GatewayConfig, config_from_text

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = PACKAGE_DIR / "default.yaml"
PLUGIN_DIR_VARIABLE = "PLUGHOST_PLUGIN_DIR"


def default_plugin_dir() -> Path:
    """$PLUGHOST_PLUGIN_DIR, else build/plugins/ of the source tree this package lives in."""
    if os.environ.get(PLUGIN_DIR_VARIABLE):
        return Path(os.environ[PLUGIN_DIR_VARIABLE])
    return PACKAGE_DIR.parent.parent / "build" / "plugins"


def default_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the embedded configuration is read with."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault(PLUGIN_DIR_VARIABLE, str(default_plugin_dir()))
    return env


def default_config(environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """The embedded default configuration (127.0.0.1:8090, memory, requestid, a hello
    route, health routes), with plugins from :func:`default_plugin_dir`."""
    return config_from_text(DEFAULT_CONFIG.read_text(), name=str(DEFAULT_CONFIG),
                            base_dir=PACKAGE_DIR, environ=default_environ(environ))
