#!/usr/bin/env python3
"""What does one more native middleware cost, and how often does a request cross into C?

In-process, no HTTP: ``Gateway.handle("GET", path, headers)`` on routes whose chains hold
1, 5 and 20 native middlewares in front of the static action. Two middleware kinds:

* ``trace`` — tests/native_plugins/trace TraceMiddleware: each appends its name to the
  request header X-Trace and to the response header X-Trace-Response (two header lookups
  and two header writes through the host table per middleware);
* ``noop``  — bench/plugins/noop NoopMiddleware: both phases return at once, so its cost
  is the C chain runner's own per-element overhead;
* ``get`` / ``set`` — bench/plugins/noop HeaderMiddleware: exactly one ph_header_get
  (of an absent header) or ph_header_set per phase, pricing the host-table calls a real
  middleware makes.

Every (kind, length) is timed ``--repeats`` times with ``--requests`` requests each, two
ways: the whole ``Gateway.handle`` (time.perf_counter_ns around the batch), and the chain
run alone (one call of the C fast path: exchange, chain, response objects; the Python
around it does not blur the slope). Repetitions are interleaved across the routes so drift
hits all of them alike; best and median ns/request are printed, and the
per-extra-middleware cost ``(t20 - t1) / 19``. Goal: <= 50 ns per extra middleware.

Crossings per request: the gateway's Runtime ``lib`` (the cffi module of the host's C
runtime) is replaced by a proxy counting every function call for a measured batch; the
count per request must not depend on the chain length.

A phase breakdown (route/build the exchange, run the chain, read the response) for the
5-middleware trace chain shows where a request's time goes in Python.

    .venv/bin/python bench/chain_cost.py            # full run (~1 min)
    .venv/bin/python bench/chain_cost.py --quick    # smoke run (a few seconds)
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import _common

_common.require("plughost", install="-e .")

from plughost import Gateway  # noqa: E402

HEADERS = {"host": "127.0.0.1:8080", "user-agent": "wrk", "accept": "*/*"}
GOAL_NS = 50.0


class CountingLib:
    """Stands in for a cffi ``lib``: counts each call of a C function by name."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self.counts: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._lib, name)
        if not callable(attr):
            return attr  # an enum constant: no crossing
        counts = self.counts

        def call(*args: Any) -> Any:
            counts[name] += 1
            return attr(*args)

        return call


KINDS = ("trace", "noop", "get", "set")


def build(plugins: Path, folder: Path, lengths: list[int]) -> tuple[Gateway, dict[str, str]]:
    """A gateway with one route per (kind, length); returns it and {label: path}."""
    longest = max(lengths)
    names = {kind: [f"{kind}{i}" for i in range(longest)] for kind in KINDS}
    chains: dict[str, list[str]] = {}
    routes: dict[str, str] = {}
    for kind in KINDS:
        for n in lengths:
            chains[f"/{kind}/{n}"] = names[kind][:n]
            routes[f"{kind} {n}"] = f"/{kind}/{n}"
    middlewares = {
        **_common.traces(names["trace"]),
        **_common.noops(names["noop"]),
        **_common.header_ops(names["get"], "get"),
        **_common.header_ops(names["set"], "set"),
    }
    _common.write_config(folder, plugins, chains=chains, middlewares=middlewares)
    return Gateway.from_config(folder), routes


def check(gateway: Gateway, routes: dict[str, str]) -> None:
    """Each route answers 200 with the body, and trace routes show every middleware ran."""
    for label, path in routes.items():
        r = gateway.handle("GET", path, HEADERS)
        assert r.status == 200 and r.body == _common.HELLO_BODY.encode(), (label, r)
        if label.startswith("trace"):
            n = int(label.split()[1])
            got = dict(r.headers).get(b"X-Trace-Response", b"").split(b",")
            assert len(got) == n, (label, got)


def batch(handle: Callable[..., Any], path: str, n: int) -> float:
    """ns per request for n requests."""
    h = HEADERS
    start = time.perf_counter_ns()
    for _ in range(n):
        handle("GET", path, h)
    return (time.perf_counter_ns() - start) / n


def run_only(gateway: Gateway, path: str, n: int) -> float:
    """ns per call of the fast path (one Python->C crossing: pack the headers, build the
    exchange, run the whole chain, build the response objects, free), n calls."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in HEADERS.items()]
    chain, params = gateway.route("GET", path)  # type: ignore[misc]
    serve = gateway.runner.serve_chain
    clock = time.perf_counter_ns
    encoded = path.encode()
    start = clock()
    for _ in range(n):
        serve(chain, b"GET", encoded, b"", b"127.0.0.1", raw, b"", params, False)
    return (clock() - start) / n


def timings(
    gateway: Gateway, routes: dict[str, str], requests: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """({label: [ns per handle]}, {label: [ns per chain run]}), one entry per repetition."""
    whole: dict[str, list[float]] = {label: [] for label in routes}
    chain: dict[str, list[float]] = {label: [] for label in routes}
    for path in routes.values():  # warm-up
        batch(gateway.handle, path, max(1000, requests // 10))
        run_only(gateway, path, max(1000, requests // 10))
    gc.collect()
    gc.disable()  # collections would land at random in one batch or another
    try:
        for rep in range(repeats):
            for label, path in routes.items():
                whole[label].append(batch(gateway.handle, path, requests))
                chain[label].append(run_only(gateway, path, requests))
            print(f"  repetition {rep + 1}/{repeats} done", flush=True)
    finally:
        gc.enable()
    return whole, chain


def crossings(gateway: Gateway, routes: dict[str, str], n: int) -> dict[str, Counter[str]]:
    """Python->C calls per request (per function), counted on n requests per route: calls
    into the runtime's cffi ``lib`` (through a counting proxy) and into the
    ``plughost._fastpath`` extension (which calls rt_serve and rt_exchange_free from C)."""
    runtime = gateway.runtime
    real = runtime.lib
    pipeline = gateway.pipeline
    real_fast = pipeline._serve
    out: dict[str, Counter[str]] = {}
    try:
        for label, path in routes.items():
            proxy = CountingLib(real)
            runtime.lib = proxy

            def counted_fast(*args: Any, _proxy: CountingLib = proxy) -> Any:
                _proxy.counts["_fastpath.serve"] += 1
                return real_fast(*args)

            pipeline._serve = counted_fast
            for _ in range(n):
                gateway.handle("GET", path, HEADERS)
            out[label] = proxy.counts
    finally:
        runtime.lib = real
        pipeline._serve = real_fast
    return out


def breakdown(gateway: Gateway, path: str, n: int) -> dict[str, float]:
    """Mean ns in each step of one in-process request."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in HEADERS.items()]
    clock = time.perf_counter_ns
    spent = Counter[str]()
    empty = 0
    for _ in range(n):  # the cost of the clock itself, subtracted below
        t0 = clock()
        empty += clock() - t0
    encoded = path.encode()
    gc.disable()
    try:
        for _ in range(n):
            t0 = clock()
            chain, params = gateway.route("GET", path)  # type: ignore[misc]
            t1 = clock()
            gateway.runner.serve_chain(
                chain, b"GET", encoded, b"", b"127.0.0.1", headers, b"", params, False
            )
            t2 = clock()
            spent["route (Gateway.route)"] += t1 - t0
            spent["the C call: exchange, chain, Response, free"] += t2 - t1
    finally:
        gc.enable()
    per_clock = empty / n
    return {k: v / n - per_clock for k, v in spent.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="a few seconds' smoke run")
    p.add_argument(
        "--requests", type=int, help="requests per timed batch (default 20000; 2000 with --quick)"
    )
    p.add_argument("--repeats", type=int, help="timed batches per route (default 7; 3 quick)")
    p.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=[1, 5, 20],
        help="chain lengths (default 1 5 20; first and last give the slope)",
    )
    p.add_argument(
        "--plugins-dir",
        help="folder with the plugins (default: build them into build/bench-plugins)",
    )
    args = p.parse_args(argv)
    requests = args.requests or (2000 if args.quick else 20000)
    repeats = args.repeats or (3 if args.quick else 7)
    lengths = sorted(set(args.lengths))
    if len(lengths) < 2:
        p.error("--lengths needs at least two lengths")

    print(f"chain_cost: {_common.machine()}")
    plugins = _common.plugin_dir(args.plugins_dir)
    with tempfile.TemporaryDirectory(prefix="plughost-bench-") as tmp:
        gateway, routes = build(plugins, Path(tmp), lengths)
        try:
            check(gateway, routes)
            print(f"timing {len(routes)} routes: {repeats} x {requests} requests each")
            whole, chain = timings(gateway, routes, requests, repeats)
            counted = crossings(gateway, routes, 1000 if not args.quick else 200)
            parts = breakdown(gateway, routes[f"trace {lengths[len(lengths) // 2]}"], requests)
        finally:
            gateway.close()

    lo, hi = lengths[0], lengths[-1]
    ncount = 1000 if not args.quick else 200
    print()
    print(f"{'route':<9} {'handle ns/req':>22} {'chain run ns/req':>22} {'crossings':>10}")
    print(f"{'':<9} {'best':>10} {'median':>11} {'best':>10} {'median':>11} {'per req':>10}")
    per_req: dict[str, float] = {}
    for label in routes:
        per_req[label] = sum(counted[label].values()) / ncount
        w, c = whole[label], chain[label]
        print(
            f"{label:<9} {min(w):>10.0f} {statistics.median(w):>11.0f} {min(c):>10.0f} "
            f"{statistics.median(c):>11.0f} {per_req[label]:>10.2f}"
        )
    print()
    print(f"per extra middleware, (t{hi} - t{lo}) / {hi - lo}, in ns (goal <= {GOAL_NS:.0f} ns):")
    print(
        f"{'kind':<7} {'chain run, best':>16} {'chain run, median':>18} {'handle, best':>13} "
        f"{'handle, median':>15}"
    )
    slopes: dict[str, float] = {}
    for kind in KINDS:

        def slope(
            table: dict[str, list[float]], pick: Callable[[list[float]], float], kind: str = kind
        ) -> float:
            return (pick(table[f"{kind} {hi}"]) - pick(table[f"{kind} {lo}"])) / (hi - lo)

        med = statistics.median
        slopes[kind] = slope(chain, min)
        print(
            f"{kind:<7} {slopes[kind]:>16.1f} {slope(chain, med):>18.1f} "
            f"{slope(whole, min):>13.1f} {slope(whole, med):>15.1f}"
        )
    print(
        "  noop = the chain runner alone; get/set = runner + one host-table header call per phase;"
    )
    print("  trace = runner + 2 header gets + 2 header sets + copies of the growing trace list")
    for kind in ("noop", "trace"):
        verdict = "meets" if slopes[kind] <= GOAL_NS else "MISSES"
        print(
            f"  {kind}: {slopes[kind]:.1f} ns per extra middleware (chain run, best): "
            f"{verdict} the <= {GOAL_NS:.0f} ns goal"
        )
    print()
    first = counted[f"trace {lo}"]
    same = all(counted[label] == first for label in routes)
    calls = ", ".join(f"{name} {c / ncount:g}" for name, c in sorted(first.items()))
    print(
        f"crossings per request (Python -> C calls into the runtime's lib): "
        f"{per_req[f'trace {lo}']:g}, the same for every chain length and kind: "
        f"{'yes' if same else 'NO'}"
    )
    print(f"  {calls}")
    if not same:
        for label in routes:
            print(f"  {label}: {dict(counted[label])}")
    print()
    mid = lengths[len(lengths) // 2]
    print(f"where a request's time goes (trace {mid}, mean ns, clock cost subtracted):")
    for name, ns in parts.items():
        print(f"  {name:<42} {ns:8.0f}")
    print(f"  {'total':<42} {sum(parts.values()):8.0f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
