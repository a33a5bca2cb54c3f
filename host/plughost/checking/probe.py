"""Child-process load test used by ``plughost check --load``.

Run as ``python -m plughost.probe PATH``: loads and initialises the plugin in this process
and prints one JSON object on stdout. A plugin that crashes or hangs takes only this child
down; the parent reports the signal or the timeout.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from ..errors import PlughostError
from ..loading.loader import Host

if TYPE_CHECKING:
    from ..config import ConfigProblem, GatewayConfig


def probe(path: str) -> dict[str, object]:
    """Loads ``path`` with an empty configuration; returns what was learnt."""
    host = Host(static_check=False)  # the parent ran the static checks already
    try:
        plugin = host.load_plugin(path)
    except PlughostError as exc:
        return {
            "ok": False,
            "code": getattr(exc, "code", "load"),
            "message": getattr(exc, "reason", str(exc)),
        }
    result = {
        "ok": True,
        "name": plugin.name,
        "version": plugin.version,
        "abi": f"{plugin.abi[0]}.{plugin.abi[1]}",
        "types": {ptype.id: ptype.kind for ptype in plugin.types.values()},
    }
    host.close()
    return result


def probe_config(path: str) -> dict[str, object]:
    """Loads a whole configuration and builds the gateway (plugins, instances, routes)."""
    from ..config import ConfigErrors
    from ..serving.gateway import Gateway

    from ..serving.listening import listen_problems

    from ..loading.runtime import default_runtime

    # A crash while building is reported on stderr with where it happened (a plugin's hook,
    # named, or outside any: plughost's own code), for check_config to pass on.
    default_runtime().lib.rt_watch_install_crash_report()
    try:
        gateway = Gateway.from_config(path)
    except ConfigErrors as exc:
        problems = list(exc.problems)
        if exc.partial is not None:  # the files have problems: check what can still be
            listed = not any(p.where.key.startswith("plugin") for p in problems)
            problems += _partial_problems(exc.partial, listed)
        problems.sort(key=lambda p: (p.where.file, p.where.line))
        return {"ok": False, "problems": [str(p) for p in problems]}
    except PlughostError as exc:
        return {"ok": False, "problems": [str(exc)]}
    assert gateway.config is not None
    server = gateway.config.server
    gateway.close()
    # What the host allows: the address can be bound, the TLS files load (as serve will).
    refused = [str(p) for p in listen_problems(server)]
    return {"ok": not refused, "problems": refused}


def _partial_problems(config: "GatewayConfig", all_plugins: bool) -> list["ConfigProblem"]:
    """The problems of plugins and instances of a configuration that could be read only in
    part (see GatewayBuilder.check_partial)."""
    from ..serving.building import GatewayBuilder
    from ..serving.gateway import Gateway

    gateway = Gateway(config)
    try:
        return GatewayBuilder(gateway).check_partial(config, all_plugins)
    finally:
        gateway.close()


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--config":
        result = probe_config(argv[1])
    elif len(argv) == 1:
        result = probe(argv[0])
    else:
        print("usage: python -m plughost.probe PLUGIN.so | --config PATH", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
