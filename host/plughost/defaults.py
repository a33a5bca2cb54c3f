"""The embedded default configuration (``plughost serve`` without ``--config``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from .config import GatewayConfig, config_from_text

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = PACKAGE_DIR / "default.yaml"


def default_config(environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """The embedded default configuration (127.0.0.1:8090, memory, requestid, a hello
    route, health routes); its plugins are named, so they come from plughost's bundle
    (see :mod:`plughost.installed`)."""
    env = dict(os.environ if environ is None else environ)
    return config_from_text(
        DEFAULT_CONFIG.read_text(), name=str(DEFAULT_CONFIG), base_dir=PACKAGE_DIR, environ=env
    )
