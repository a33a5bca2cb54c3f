#!/usr/bin/env python3
"""A realistic gateway route: requestid, logger, cors, helmet, jwt + httpfw, vs going direct
to the upstream and vs the same chain in Starlette.

Four processes, each a child pinned with ``taskset``:

1. ``upstream``  — a raw ASGI hello-world on uvicorn (bench/_apps.py ``bare``), on core 1;
2. ``plughost``  — ``plughost serve``, on core 0; route ``/api/*`` runs RequestIdMiddleware,
   LoggerMiddleware (Seam's format, to a file, written by its background thread),
   CORSMiddleware (one allowed origin), HelmetMiddleware (Seam's defaults) and
   JWTValidationMiddleware (HS256) in C, then httpfw's HttpAction to the upstream;
3. ``starlette`` — the same behaviours in Python on uvicorn, on core 0 (bench/_apps.py
   ``starlette_proxy``: the request-id middleware, an access log with a writer thread,
   Starlette's CORSMiddleware, the same security headers, PyJWT, an aiohttp proxy);
4. ``wrk`` on core 1 with the upstream, sending ``Authorization: Bearer <HS256 token>`` and
   ``Origin``.

``direct`` is wrk against the upstream itself (``/items?page=2``); the gateways get
``/api/items?page=2`` and forward it. The script first checks that both gateways answer the
upstream's body with a request id, the CORS and security headers, and 401 without a token.
Then ``--rounds`` (5) interleaved rounds of ``wrk -t1 -c64 -d10s --latency``. Printed: req/s,
p50/p99 latency, gateway CPU µs per request (medians), and the ratios plughost/direct and
plughost/starlette from the same run.

    .venv/bin/python bench/realistic_chain.py           # full run (~3.5 min)
    .venv/bin/python bench/realistic_chain.py --quick   # smoke run (~20 s)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import _common
from _apps import HELMET, JWT_SECRET, ORIGIN
from _http import Server, WrkResult, measure_rounds

BENCH = Path(__file__).resolve().parent
UVICORN = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--workers",
    "1",
    "--no-access-log",
    "--no-server-header",
    "--log-level",
    "warning",
]
PLUGINS = ("requestid", "logger", "cors", "helmet", "jwt", "httpfw")


def write_config(path: Path, plugins: Path, upstream: str, access_log: Path) -> Path:
    path.write_text(f"""\
plugins:
{"".join(f"  - path: {plugins / name}.so{chr(10)}" for name in PLUGINS)}\
middlewares:
  RequestID:
    use: plugins.requestid.middlewares.RequestIdMiddleware
  Logger:
    use: plugins.logger.middlewares.LoggerMiddleware
    config: {{output: "{access_log}"}}
  CORS:
    use: plugins.cors.middlewares.CORSMiddleware
    config: {{allowOrigins: "{ORIGIN}"}}
  Helmet:
    use: plugins.helmet.middlewares.HelmetMiddleware
  JWT:
    use: plugins.jwt.middlewares.JWTValidationMiddleware
    config: {{signingKey: {{algorithm: HS256, key: "{JWT_SECRET}"}}}}
actions:
  Forward:
    use: plugins.httpfw.actions.HttpAction
    config: {{upstreamEndpoint: "{upstream}"}}
routes:
  Api:
    gatewayPath: /api/*
    methods: [GET, POST]
    middlewares: [RequestID, Logger, CORS, Helmet, JWT]
    action: Forward
""")
    return path


def fetch(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def check_same(gateways: list[Server], path: str, headers: dict[str, str]) -> None:
    """Both gateways forward the upstream's answer through the whole chain."""
    for s in gateways:
        status, got, body = fetch(s.url.rstrip("/") + path, headers)
        missing = [
            n
            for n in (
                "x-request-id",
                "access-control-allow-origin",
                *(k.decode() for k, _ in HELMET),
            )
            if n not in got
        ]
        if status != 200 or body != _common.HELLO_BODY.encode() or missing:
            raise SystemExit(f"{s.name} answered {status} {body[:80]!r}, missing {missing}")
        denied = fetch(s.url.rstrip("/") + path, {"Origin": ORIGIN})[0]
        if denied != 401:
            raise SystemExit(f"{s.name} answered {denied} without a token, not 401")
        print(f"  {s.name:<10} 200 with {len(got)} headers; 401 without a token")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke run: one 2 s round")
    p.add_argument("--duration", help="wrk -d per measured run (default 10s; 2s quick)")
    p.add_argument("--rounds", type=int, help="measured rounds (default 5; 1 quick)")
    p.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    p.add_argument("--plugins-dir", help="folder with the plugins (default: build them)")
    args = p.parse_args(argv)
    duration, _, rounds = _common.wrk_timing(args)
    wrk = shutil.which("wrk")
    if wrk is None or shutil.which("taskset") is None:
        sys.exit("realistic_chain.py: needs wrk and taskset: apt-get install wrk util-linux")
    _common.require(
        "uvicorn", "uvloop", "httptools", "starlette", "jwt", "aiohttp", install="'plughost[bench]'"
    )
    import jwt

    token = jwt.encode(
        {"sub": "bench", "exp": int(time.time()) + 86400}, JWT_SECRET, algorithm="HS256"
    )
    headers = {"Authorization": f"Bearer {token}", "Origin": ORIGIN}
    plugins = _common.plugin_dir(args.plugins_dir)
    plughost_bin = Path(sys.executable).parent / "plughost"
    print(f"realistic_chain: {_common.machine()}")
    print(
        f"gateways on core 0; upstream and wrk on core 1: wrk -t1 -c{args.connections} "
        f"-d{duration} --latency, {rounds} round(s)"
    )
    with tempfile.TemporaryDirectory(prefix="plughost-bench-") as tmp:
        py = sys.executable
        uv = [py, "-m", "uvicorn", "--app-dir", str(BENCH), "--host", "127.0.0.1", *UVICORN]
        up_port = _common.free_port()
        upstream = Server("upstream", [*uv, "--port", str(up_port), "_apps:bare"], up_port)
        up_url = f"http://127.0.0.1:{up_port}"
        config = write_config(
            Path(tmp) / "gateway.yaml", plugins, up_url, Path(tmp) / "plughost-access.log"
        )
        gw_port, st_port = _common.free_port(), _common.free_port()
        gateways = [
            Server(
                "plughost",
                [
                    str(plughost_bin),
                    "serve",
                    "--config",
                    str(config),
                    "--address",
                    f"127.0.0.1:{gw_port}",
                    "--log-level",
                    "warning",
                ],
                gw_port,
                ready_path="/health/live",
            ),
            Server(
                "starlette",
                [*uv, "--port", str(st_port), "_apps:starlette_proxy"],
                st_port,
                env={
                    "BENCH_UPSTREAM": up_url,
                    "BENCH_ACCESS_LOG": str(Path(tmp) / "starlette-access.log"),
                },
                ready_path="/ready",
            ),
        ]
        targets = {
            "direct": (upstream, up_url + "/items?page=2"),
            **{g.name: (g, g.url + "api/items?page=2") for g in gateways},
        }
        results: dict[str, list[WrkResult]] = {name: [] for name in targets}
        try:
            upstream.start(Path(tmp), "1")
            for g in gateways:
                g.start(Path(tmp), "0")
            for s in (upstream, *gateways):
                s.wait_ready()
            check_same(gateways, "/api/items?page=2", headers)
            measure_rounds(
                wrk,
                targets,
                results,
                rounds=rounds,
                warmup="2s",
                duration=duration,
                connections=args.connections,
                headers=headers,
            )
        finally:
            for s in (*gateways, upstream):
                s.stop()

    med = statistics.median
    print()
    print(f"{'target':<11} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}  errors")
    for name, rs in results.items():
        print(
            f"{name:<11} {med(r.rps for r in rs):>9.0f} {med(r.p50_ms for r in rs):>8.2f} "
            f"{med(r.p99_ms for r in rs):>8.2f} {med(r.cpu_us for r in rs):>11.1f}  "
            f"{'; '.join(r.errors for r in rs if r.errors) or '-'}"
        )
    print(
        "  (medians over rounds; CPU us/req: the measured process's CPU time per request —"
        " the upstream's for direct, the gateway's otherwise)"
    )
    rps = {name: med(r.rps for r in rs) for name, rs in results.items()}
    print()
    for other in ("direct", "starlette"):
        per_round = [a.rps / b.rps for a, b in zip(results["plughost"], results[other])]
        print(
            f"plughost / {other:<9} = {rps['plughost'] / rps[other]:5.2f} of the medians "
            f"(per round: {', '.join(f'{x:.2f}' for x in per_round)})"
        )
    added = med(r.p50_ms for r in results["plughost"]) - med(r.p50_ms for r in results["direct"])
    print(f"p50 latency plughost adds over direct: {added:+.2f} ms")
    return 1 if any(r.errors for rs in results.values() for r in rs) else 0


if __name__ == "__main__":
    sys.exit(main())
