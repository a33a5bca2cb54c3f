#!/usr/bin/env python3
"""HTTP throughput and latency: bare ASGI vs plughost (5 native middlewares) vs Starlette.

Four servers, the same server for all: uvicorn with uvloop and plughost's HTTP protocol
(uvicorn's httptools protocol plus plughost's direct path, which only plughost's app can use:
for the other apps it is uvicorn's own code), 1 worker, no Server header, no access log; each
a child process pinned to CPU core 0 (``taskset -c 0``) on a free 127.0.0.1 port; the load
generator ``wrk`` (Debian package ``wrk``) is pinned to core 1:

1. ``bare``      — a raw ASGI hello-world callable (bench/_apps.py ``bare``, run by
   bench/_serve.py);
2. ``plughost``  — ``plughost serve --config <generated folder>``; route ``/`` runs
   requestid's RequestIdMiddleware + 4 trace TraceMiddlewares (T1..T4) in C, then the
   static action (200 text/plain, the same body); answered by the direct path;
3. ``plughost-asgi`` — the same with ``--no-direct-path``: every request through the ASGI
   app, as under any other ASGI server;
4. ``starlette`` — the same five behaviours as pure-ASGI Python middlewares around a
   Starlette route answering the same response (bench/_apps.py ``starlette``);
5. ``nginx``     — nginx (Debian ``nginx-light``) ``return 200`` with the same body and an
   ``X-Request-ID``, one process (``master_process off``), the yardstick of the static route:
   plughost/nginx is printed beside the other ratios.

Before measuring, the script checks the three answer the same body and that plughost and
Starlette return the same X-Trace-Response and an X-Request-ID. Each server gets a wrk
warm-up, then ``--rounds`` (5) rounds of ``wrk -t1 -c64 -d10s --latency``, interleaved across
the servers (round 1: bare, plughost, starlette; round 2: ...) so drift hits all alike.
Printed: req/s, p50 and p99 latency (medians over rounds), the server's CPU use while
measured, and the ratios plughost/bare (goal >= 0.85) and plughost/starlette (goal >= 2),
from the same run. Servers are stopped by PID (SIGINT, then SIGKILL after 15 s).

    .venv/bin/python bench/http_throughput.py           # full run (~3.5 min)
    .venv/bin/python bench/http_throughput.py --quick   # smoke run (~15 s)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

import _common
from _http import Server, WrkResult, measure, run_wrk

BENCH = Path(__file__).resolve().parent
TRACE_NAMES = ["T1", "T2", "T3", "T4"]
GOAL_BARE = 0.85
GOAL_STARLETTE = 2.0
#: plughost/nginx of the static route before the proxy work (the brief, 2026-12-04): the
#: static route must not fall below it.
GOAL_NGINX = 0.46
NGINX_CONF = """master_process off;
daemon off;
pid {folder}/nginx.pid;
lock_file {folder}/nginx.lock;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            add_header X-Request-ID $request_id always;
            return 200 "{body}";
        }}
    }}
}}
"""


def nginx_server(tmp: Path, port: int) -> Server:
    """nginx answering the static route's body, one process (its CPU is the server's)."""
    folder = tmp / "nginx"
    folder.mkdir()
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(folder=folder, port=port, body=_common.HELLO_BODY))
    return Server(
        "nginx",
        [shutil.which("nginx") or "nginx", "-e", "stderr", "-p", str(folder), "-c", str(conf)],
        port,
    )


def fetch(url: str) -> tuple[dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return {k.lower(): v for k, v in r.headers.items()}, r.read()


def check_same(servers: list[Server]) -> None:
    """Same body everywhere; plughost and Starlette show the same trace and a request id."""
    seen = {s.name: fetch(s.url) for s in servers}
    for name, (headers, body) in seen.items():
        if body != _common.HELLO_BODY.encode():
            raise SystemExit(f"{name} answered {body!r}, not {_common.HELLO_BODY!r}")
        print(f"  {name:<10} {len(body)} B body; headers: {', '.join(sorted(headers))}")
    want = ",".join(reversed(TRACE_NAMES))
    for name in ("plughost", "plughost-asgi", "starlette"):
        if name not in seen:  # --only left it out
            continue
        headers = seen[name][0]
        if headers.get("x-trace-response") != want or not headers.get("x-request-id"):
            raise SystemExit(
                f"{name} did not run the five middlewares: "
                f"x-trace-response={headers.get('x-trace-response')!r}, "
                f"x-request-id={headers.get('x-request-id')!r}"
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 s warm-up, one 2 s round")
    p.add_argument("--duration", help="wrk -d per measured run (default 10s; 2s quick)")
    p.add_argument("--warmup", help="wrk -d of the warm-up per server (default 3s; 1s quick)")
    p.add_argument("--rounds", type=int, help="measured rounds per server (default 5; 1 quick)")
    p.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    p.add_argument("--threads", type=int, default=1, help="wrk -t (default 1)")
    p.add_argument("--server-core", default="0", help="taskset core list for the servers")
    p.add_argument("--wrk-core", default="1", help="taskset core list for wrk")
    p.add_argument(
        "--only",
        nargs="+",
        choices=["bare", "plughost", "plughost-metrics", "plughost-asgi", "starlette", "nginx"],
        help="measure only these servers (ratios need bare/starlette too)",
    )
    p.add_argument(
        "--plugins-dir",
        help="folder with the plugins (default: build them into build/bench-plugins)",
    )
    args = p.parse_args(argv)
    duration, warmup, rounds = _common.wrk_timing(args)

    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("http_throughput.py: wrk is not installed: run `apt-get install wrk`")
    if shutil.which("taskset") is None:
        sys.exit("http_throughput.py: taskset is not installed: run `apt-get install util-linux`")
    names = args.only or [
        "bare",
        "plughost",
        "plughost-metrics",
        "plughost-asgi",
        "starlette",
        "nginx",
    ]
    if "nginx" in names and shutil.which("nginx") is None:
        sys.exit(
            "http_throughput.py: nginx is not installed: run ./dev setup (it installs "
            "nginx-light), or leave it out with --only"
        )
    _common.require("uvicorn", "uvloop", "httptools", install="uvicorn uvloop httptools")
    if "starlette" in names:
        _common.require("starlette")
    plughost_bin = Path(sys.executable).parent / "plughost"
    if "plughost" in names and not plughost_bin.exists():
        sys.exit(
            f"http_throughput.py: no {plughost_bin}: run `{sys.executable} -m pip "
            "install -e .` in the repository"
        )

    print(f"http_throughput: {_common.machine()}")
    print(
        f"servers on core {args.server_core}, wrk on core {args.wrk_core}: "
        f"wrk -t{args.threads} -c{args.connections} -d{duration} --latency "
        f"(warm-up -d{warmup}, {rounds} round(s))"
    )
    plugins = _common.plugin_dir(args.plugins_dir)
    with tempfile.TemporaryDirectory(prefix="plughost-bench-") as tmp:
        folder = _common.write_config(
            Path(tmp) / "config",
            plugins,
            chains={"/": ["RequestID", *TRACE_NAMES]},
            middlewares={**_common.requestid(), **_common.traces(TRACE_NAMES)},
        )
        serve_app = [sys.executable, str(BENCH / "_serve.py")]
        gateway = [str(plughost_bin), "serve", "--config", str(folder), "--log-level", "warning"]
        candidates = {
            "bare": lambda port: Server("bare", [*serve_app, "_apps:bare", str(port)], port),
            "plughost": lambda port: Server(
                "plughost", [*gateway, "--address", f"127.0.0.1:{port}"], port
            ),
            "plughost-metrics": lambda port: Server(
                "plughost-metrics",
                [
                    *gateway,
                    "--address",
                    f"127.0.0.1:{port}",
                    *_common.metrics_argv(_common.free_port()),
                ],
                port,
            ),
            "plughost-asgi": lambda port: Server(
                "plughost-asgi",
                [*gateway, "--address", f"127.0.0.1:{port}", "--no-direct-path"],
                port,
            ),
            "starlette": lambda port: Server(
                "starlette", [*serve_app, "_apps:starlette", str(port)], port
            ),
            "nginx": lambda port: nginx_server(Path(tmp), port),
        }
        servers = [candidates[n](_common.free_port()) for n in names]
        results: dict[str, list[WrkResult]] = {s.name: [] for s in servers}
        try:
            for s in servers:
                s.start(Path(tmp), args.server_core)
            for s in servers:
                s.wait_ready()
                print(
                    f"  {s.name:<10} pid {s.proc.pid if s.proc else '?'} on {s.url}: "
                    f"{' '.join(s.argv)}"
                )
            check_same(servers)
            for s in servers:
                run_wrk(
                    wrk,
                    s.url,
                    threads=args.threads,
                    connections=args.connections,
                    duration=warmup,
                    core=args.wrk_core,
                )
            for rnd in range(rounds):
                for s in servers:
                    r = measure(
                        s,
                        wrk,
                        s.url,
                        threads=args.threads,
                        connections=args.connections,
                        duration=duration,
                        core=args.wrk_core,
                    )
                    results[s.name].append(r)
                    print(
                        f"  round {rnd + 1}/{rounds} {s.name:<10} {r.rps:>9.0f} req/s"
                        f"{'  ' + r.errors if r.errors else ''}",
                        flush=True,
                    )
        finally:
            for s in servers:
                s.stop()

    med = statistics.median
    print()
    print(
        f"{'server':<11} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'server CPU':>11} "
        f"{'CPU us/req':>11} {'requests':>10}  errors"
    )
    for name, rs in results.items():
        print(
            f"{name:<11} {med(r.rps for r in rs):>9.0f} {med(r.p50_ms for r in rs):>8.2f} "
            f"{med(r.p99_ms for r in rs):>8.2f} {med(r.cpu for r in rs):>10.0%} "
            f"{med(r.cpu_us for r in rs):>11.1f} {sum(r.requests for r in rs):>10}  "
            f"{'; '.join(r.errors for r in rs if r.errors) or '-'}"
        )
    print(
        "  (medians over rounds; server CPU = its CPU seconds per wall second: 100% means "
        "the pinned core was saturated;\n   CPU us/req = the server's CPU time per answered "
        "request, which time stolen by the VM's neighbours does not inflate)"
    )
    failed = any(r.errors for rs in results.values() for r in rs)
    rps = {name: med(r.rps for r in rs) for name, rs in results.items()}
    for mine in ("plughost", "plughost-asgi"):
        if mine not in rps:
            continue
        print()
        for other, goal in (
            ("bare", GOAL_BARE),
            ("starlette", GOAL_STARLETTE),
            ("nginx", GOAL_NGINX),
        ):
            if other not in rps:
                continue
            ratio = rps[mine] / rps[other]
            rounds_ratio = [a.rps / b.rps for a, b in zip(results[mine], results[other])]
            print(
                f"{mine} / {other:<9} = {ratio:5.2f} of the medians, "
                f"{med(rounds_ratio):.2f} median of the rounds' ratios (goal >= {goal:.2f}: "
                f"{'meets' if ratio >= goal else 'MISSES'}; per round: "
                f"{', '.join(f'{x:.2f}' for x in rounds_ratio)})"
            )
            cpu_ratio = med(r.cpu_us for r in results[other]) / med(r.cpu_us for r in results[mine])
            print(
                f"{'':<{len(mine) + 13}}   {cpu_ratio:5.2f} by CPU time per request "
                f"({other}'s / {mine}'s)"
            )
    if "plughost" in results and "plughost-metrics" in results:
        print()
        print(_common.metrics_cost(results["plughost"], results["plughost-metrics"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
