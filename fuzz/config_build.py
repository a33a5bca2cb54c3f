"""Fuzz harness: a configuration file read, checked and built into a gateway (atheris).

Each input is one single-file configuration (Seam's keys in one YAML document, as
``plughost serve --config FILE`` takes). It is loaded (YAML composing, ``${VAR}``
substitution, every static check) and, when valid, built with real plugins from
``build/plugins``: plugin loading, every instance's ``create`` with its ``config:`` copied
into the C runtime, routes compiled; then the gateway is closed. A finding is any exception
but a configuration problem reported as such (``plughost.errors.PlughostError``), a crash
in the runtime or a plugin, a hang or a memory blow-up (libFuzzer's ``-timeout`` and
``-rss_limit_mb``).

Only plugins without side effects outside the process are built: a configuration naming
another file (the logger writes files, valkey and jwt reach the network, httpfw's health
checks resolve names, opentelemetry exports) is loaded and checked but not built. Seeds:
the embedded default and the repository's sample configurations (``fuzz/run.py``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["plughost", "yaml"]):
    from plughost import Gateway
    from plughost.config import load_config
    from plughost.config.problems import ConfigErrors
    from plughost.errors import PlughostError

#: Plugins a fuzzed configuration may build (copied into a folder of their own).
SAFE = (
    "memory",
    "requestid",
    "static",
    "cors",
    "helmet",
    "basicauth",
    "session",
    "csrf",
    "limiter",
    "wsfw",
)
ROOT = Path(__file__).resolve().parents[1]
FOLDER = Path(tempfile.mkdtemp(prefix="plughost-fuzz-config-"))
PLUGINS = FOLDER / "plugins"
FILE = FOLDER / "gateway.yaml"
ENVIRON = {"PLUGHOST_PLUGIN_DIR": str(PLUGINS), "VALKEY_HOST": "127.0.0.1", "VALKEY_PORT": "1"}


def _prepare() -> None:
    PLUGINS.mkdir()
    for name in SAFE:
        (PLUGINS / f"{name}.so").write_bytes(
            (ROOT / "build" / "plugins" / f"{name}.so").read_bytes()
        )
    os.chdir(FOLDER)  # relative paths a configuration names land here


def test_one_input(data: bytes) -> None:
    FILE.write_bytes(data)
    try:
        config = load_config(FILE, environ=ENVIRON)
    except ConfigErrors as exc:
        if not exc.problems:
            raise AssertionError("ConfigErrors without a problem") from exc
        return
    if any(spec.path.parent != PLUGINS for spec in config.plugins):
        return  # a plugin outside the safe folder: checked, not built
    try:
        gateway = Gateway.from_config(config)
    except PlughostError:
        return
    gateway.close()


def main() -> None:
    _prepare()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
