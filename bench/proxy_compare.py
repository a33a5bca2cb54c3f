#!/usr/bin/env python3
"""Forwarding to an upstream, the gateway's main job: plughost vs nginx vs HAProxy.

Every gateway adds the same response headers — an X-Request-ID and Seam's eleven default
security headers (helmet) — and forwards ``/api/items?page=2`` to ``/items?page=2`` on the
same upstream over pooled keep-alive HTTP/1.1 connections, adding X-Request-ID and
X-Forwarded-For/-Proto/-Host to the upstream request. Each is a child process on a free
127.0.0.1 port, stopped by PID:

1. ``upstream`` — nginx (Debian ``nginx-light``), one worker, ``return 200 "hello, world"``
   (text/plain), pinned to core 1 with wrk: fast enough never to be the bottleneck;
2. ``nginx``    — nginx-light, one worker, ``proxy_pass`` to an ``upstream {}`` block with
   ``keepalive 64``, ``proxy_http_version 1.1``, ``Connection ""`` and ``add_header ... always``,
   on core 0;
3. ``haproxy``  — HAProxy 2.6 (Debian ``haproxy``), ``mode http``, ``nbthread 1``,
   ``http-reuse always``, ``unique-id-format %[uuid()]`` and ``http-response set-header``,
   foreground (``-db``), on core 0;
4. ``plughost`` — ``plughost serve --config <generated folder>``, on core 0; route ``/api/*``
   runs RequestIdMiddleware and HelmetMiddleware (Seam's defaults) in C, then httpfw's
   HttpAction to the upstream;
5. ``direct``   — wrk against the upstream itself.

nginx and HAProxy run as the current user (no root needed), their pid, temp files and logs
in a temporary folder; no system service or port 80 is involved. The script first checks
that each gateway answers 200 with the upstream's body, an X-Request-ID and the security
headers; then a warm-up per target and ``--rounds`` (5) interleaved rounds of
``wrk -t1 -c64 -d10s --latency`` pinned to core 1. Printed: median req/s, p50, p99 and the
gateway's CPU µs per request (utime + stime of its whole process tree: nginx's master and
worker, every thread), each with its min–max over the rounds, and plughost/nginx and
plughost/haproxy of req/s and p99 from the same run. Goals: plughost req/s >= 0.5 x nginx's,
p99 <= 2 x nginx's.

    .venv/bin/python bench/proxy_compare.py           # full run (~3.5 min)
    .venv/bin/python bench/proxy_compare.py --quick   # smoke run (~20 s)
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import _common
from _apps import HELMET
from _http import Server, WrkResult, measure_rounds

PLUGINS = ("requestid", "helmet", "httpfw")
PATH = "/api/items?page=2"
TARGETS = ("direct", "nginx", "haproxy", "plughost", "plughost-metrics")
GOAL_RPS = 0.5  # plughost req/s >= 0.5 x nginx's
GOAL_P99 = 2.0  # plughost p99 <= 2 x nginx's
SETUP = "run ./dev setup (it installs nginx-light and haproxy)"
SECURITY = [(k.decode(), v.decode()) for k, v in HELMET]


def find_tool(name: str) -> str | None:
    """``name`` on $PATH or in the sbin folders a non-root $PATH often lacks."""
    return shutil.which(
        name,
        path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]),
    )


def version(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    return (done.stdout + done.stderr).strip().splitlines()[0]


def nginx_conf(folder: Path, port: int, server: str) -> Path:
    """A self-contained nginx.conf: one worker, no daemon, everything in ``folder``."""
    folder.mkdir()
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temps = "".join(
        f"    {kind}_temp_path {folder / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = folder / "nginx.conf"
    conf.write_text(f"""{user}worker_processes 1;
daemon off;
pid {folder / "nginx.pid"};
lock_file {folder / "nginx.lock"};
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
{temps}{server}}}
""")
    return conf


def upstream_server(port: int) -> str:
    return f"""    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "{_common.HELLO_BODY}"; }}
    }}
"""


def nginx_gateway(port: int, upstream: int) -> str:
    added = "".join(
        f'            add_header {name} "{value}" always;\n'
        for name, value in [("X-Request-ID", "$request_id"), *SECURITY]
    )
    return f"""    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /api/ {{
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Request-ID $request_id;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
{added}        }}
    }}
"""


def haproxy_cfg(path: Path, port: int, upstream: int) -> Path:
    added = "".join(f'    http-response set-header {name} "{value}"\n' for name, value in SECURITY)
    path.write_text(f"""global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option forwardfor
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend gateway
    bind 127.0.0.1:{port}
    unique-id-format %[uuid()]
    http-request set-header X-Request-ID %[unique-id]
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request replace-path /api(/.*) \\1
    http-response set-header X-Request-ID %[unique-id]
{added}    default_backend upstream
backend upstream
    http-reuse always
    server up 127.0.0.1:{upstream}
""")
    return path


def plughost_config(folder: Path, plugins: Path, upstream: str) -> Path:
    """A Seam configuration folder: /api/* = RequestID, Helmet, then httpfw to ``upstream``."""
    folder.mkdir()
    (folder / "plugins.yaml").write_text(
        "plugins:\n" + "".join(f"  - path: {plugins / name}.so\n" for name in PLUGINS)
    )
    (folder / "middlewares.yaml").write_text("""middlewares:
  RequestID:
    use: plugins.requestid.middlewares.RequestIdMiddleware
  Helmet:
    use: plugins.helmet.middlewares.HelmetMiddleware
""")
    (folder / "actions.yaml").write_text(f"""actions:
  Forward:
    use: plugins.httpfw.actions.HttpAction
    config: {{upstreamEndpoint: "{upstream}"}}
""")
    (folder / "routes.yaml").write_text("""routes:
  Api:
    gatewayPath: /api/*
    methods: [GET, POST]
    middlewares: [RequestID, Helmet]
    action: Forward
""")
    return folder


def check(name: str, url: str, gateway: bool) -> None:
    """200, the upstream's body and, through a gateway, the request id and security headers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            status, body = r.status, r.read()
            headers = {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        status, body, headers = e.code, e.read(), {}
    wrong = [n for n, v in SECURITY if headers.get(n.lower()) != v] if gateway else []
    if gateway and not headers.get("x-request-id"):
        wrong.insert(0, "X-Request-ID")
    if status != 200 or body != _common.HELLO_BODY.encode() or wrong:
        raise SystemExit(
            f"proxy_compare.py: {name} answered {url} with {status} "
            f"{body[:60]!r}, missing or wrong headers: {', '.join(wrong) or 'none'}"
        )
    print(
        f"  {name:<9} 200 {body!r}, {len(headers)} headers"
        f"{', request id ' + headers['x-request-id'] if gateway else ''}"
    )


def spread(values: list[float], fmt: str) -> str:
    return (
        f"{format(statistics.median(values), fmt)} "
        f"({format(min(values), fmt)}–{format(max(values), fmt)})"
    )


def report(results: dict[str, list[WrkResult]]) -> None:
    med = statistics.median
    print(f"\n{'target':<9} {'req/s':>24} {'p50 ms':>21} {'p99 ms':>21} {'CPU us/req':>21}  errors")
    for name, rs in results.items():
        print(
            f"{name:<9} {spread([r.rps for r in rs], ',.0f'):>24} "
            f"{spread([r.p50_ms for r in rs], '.2f'):>21} "
            f"{spread([r.p99_ms for r in rs], '.2f'):>21} "
            f"{spread([r.cpu_us for r in rs], '.1f'):>21}  "
            f"{'; '.join(r.errors for r in rs if r.errors) or '-'}"
        )
    print(
        "  (median (min–max) over rounds; CPU us/req: the process tree's CPU time per "
        "request —\n   the upstream's for direct, the gateway's otherwise)"
    )
    if "plughost" not in results:
        return
    mine = results["plughost"]
    if "plughost-metrics" in results:
        print("\n" + _common.metrics_cost(mine, results["plughost-metrics"]))
    for other in ("nginx", "haproxy"):
        if other not in results:
            continue
        theirs = results[other]
        rps = med(r.rps for r in mine) / med(r.rps for r in theirs)
        p99 = med(r.p99_ms for r in mine) / med(r.p99_ms for r in theirs)
        rps_rounds = ", ".join(f"{a.rps / b.rps:.2f}" for a, b in zip(mine, theirs))
        p99_rounds = ", ".join(f"{a.p99_ms / b.p99_ms:.2f}" for a, b in zip(mine, theirs))
        rps_goal = p99_goal = ""
        if other == "nginx":
            rps_goal = f"goal >= {GOAL_RPS}: {'meets' if rps >= GOAL_RPS else 'MISSES'}; "
            p99_goal = f"goal <= {GOAL_P99}: {'meets' if p99 <= GOAL_P99 else 'MISSES'}; "
        print(
            f"\nplughost / {other:<7} req/s {rps:5.2f} of the medians ({rps_goal}"
            f"per round: {rps_rounds})"
        )
        print(f"{'':<18} p99   {p99:5.2f} of the medians ({p99_goal}per round: {p99_rounds})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 s warm-up, one 2 s round")
    p.add_argument("--duration", help="wrk -d per measured run (default 10s; 2s quick)")
    p.add_argument("--warmup", help="wrk -d of the warm-up per target (default 3s; 1s quick)")
    p.add_argument("--rounds", type=int, help="measured rounds (default 5; 1 quick)")
    p.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    p.add_argument(
        "--only",
        nargs="+",
        choices=TARGETS,
        help="measure only these targets (the ratios need plughost and nginx/haproxy)",
    )
    p.add_argument(
        "--plugins-dir",
        help="folder with the plugins (default: build them into build/bench-plugins)",
    )
    args = p.parse_args(argv)
    duration, warmup, rounds = _common.wrk_timing(args)
    names = [n for n in TARGETS if n in (args.only or TARGETS)]

    tools = {name: find_tool(name) for name in ("nginx", "haproxy", "wrk", "taskset")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        print(f"proxy_compare.py: {', '.join(missing)} not installed: {SETUP}", file=sys.stderr)
        return 2
    nginx, haproxy, wrk = tools["nginx"], tools["haproxy"], tools["wrk"]
    assert nginx and haproxy and wrk
    plughost_bin = Path(sys.executable).parent / "plughost"
    wants_plughost = any(n.startswith("plughost") for n in names)
    if wants_plughost and not plughost_bin.exists():
        sys.exit(f"proxy_compare.py: no {plughost_bin}: run ./dev setup")
    plugins = _common.plugin_dir(args.plugins_dir) if wants_plughost else Path()
    lacking = [f"{n}.so" for n in PLUGINS if not (plugins / f"{n}.so").is_file()]
    if wants_plughost and lacking:
        sys.exit(f"proxy_compare.py: {plugins} lacks {', '.join(lacking)}")

    print(f"proxy_compare: {_common.machine()}")
    print(f"{version([nginx, '-v'])}; {version([haproxy, '-v'])}")
    print(
        f"gateways on core 0; upstream (nginx) and wrk on core 1: wrk -t1 "
        f"-c{args.connections} -d{duration} --latency (warm-up -d{warmup}, {rounds} round(s))"
    )
    with tempfile.TemporaryDirectory(prefix="plughost-bench-") as tmp_name:
        tmp = Path(tmp_name)
        up_port = _common.free_port()
        up_conf = nginx_conf(tmp / "upstream", up_port, upstream_server(up_port))
        upstream = Server(
            "upstream",
            [nginx, "-e", "stderr", "-p", str(tmp / "upstream"), "-c", str(up_conf)],
            up_port,
            ready_path="/items",
        )
        ports = {
            n: _common.free_port() for n in ("nginx", "haproxy", "plughost", "plughost-metrics")
        }
        argvs = {
            "nginx": [
                nginx,
                "-e",
                "stderr",
                "-p",
                str(tmp / "nginx"),
                "-c",
                str(
                    nginx_conf(
                        tmp / "nginx", ports["nginx"], nginx_gateway(ports["nginx"], up_port)
                    )
                ),
            ],
            "haproxy": [
                haproxy,
                "-db",
                "-f",
                str(haproxy_cfg(tmp / "haproxy.cfg", ports["haproxy"], up_port)),
            ],
            "plughost": [
                str(plughost_bin),
                "serve",
                "--config",
                str(plughost_config(tmp / "plughost", plugins, f"http://127.0.0.1:{up_port}")),
                "--address",
                f"127.0.0.1:{ports['plughost']}",
                "--log-level",
                "warning",
            ],
        }
        argvs["plughost-metrics"] = [
            *argvs["plughost"][:-4],
            "--address",
            f"127.0.0.1:{ports['plughost-metrics']}",
            *argvs["plughost"][-2:],
            *_common.metrics_argv(_common.free_port()),
        ]
        gateways = [Server(n, argvs[n], ports[n], ready_path=PATH) for n in names if n in argvs]
        targets = {
            n: (upstream, upstream.url + PATH[len("/api/") :])
            if n == "direct"
            else next((g, g.url + PATH[1:]) for g in gateways if g.name == n)
            for n in names
        }
        results: dict[str, list[WrkResult]] = {n: [] for n in names}
        try:
            upstream.start(tmp, "1")
            upstream.wait_ready()
            for g in gateways:
                g.start(tmp, "0")
            for g in gateways:
                g.wait_ready()
            for name, (server, url) in targets.items():
                check(name, url, gateway=server is not upstream)
            measure_rounds(
                wrk,
                targets,
                results,
                rounds=rounds,
                warmup=warmup,
                duration=duration,
                connections=args.connections,
            )
        finally:
            for s in (*gateways, upstream):
                s.stop()
    report(results)
    print(
        f"\ngoals: plughost req/s >= {GOAL_RPS} x nginx's; plughost p99 <= {GOAL_P99} x "
        "nginx's (HAProxy: for reference)"
    )
    return 1 if any(r.errors for rs in results.values() for r in rs) else 0


if __name__ == "__main__":
    sys.exit(main())
