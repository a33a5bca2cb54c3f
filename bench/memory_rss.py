#!/usr/bin/env python3
"""Does the gateway leak? RSS before, after a warm-up and after 1,000,000 requests.

In-process (``Gateway.handle``, no HTTP) through a realistic chain: requestid's
RequestIdMiddleware, then three trace TraceMiddlewares, then trace's EchoAction (which
reads the request header, route parameter, body, query and the requestId local). The
requests rotate over four shapes so every part of the exchange is used: a GET with a
``:id`` parameter, a POST with a 64-byte body and a query string, a GET carrying its own
X-Request-ID, and a 404 (no route). A Memory storage is configured (its plugin loaded and
an instance created) but no middleware in this chain uses a storage, so it only adds its
fixed size.

RSS is VmRSS from /proc/self/status, after gc.collect(): before any request, after
``--warmup`` requests (10,000), and after ``--requests`` (1,000,000) more; printed: growth
in MB and bytes per request after the warm-up (the leak signal: ~0 when nothing leaks;
a few KB can come from the allocator's arenas settling). Progress is printed every 10 %.

    .venv/bin/python bench/memory_rss.py           # full run (about a minute)
    .venv/bin/python bench/memory_rss.py --quick   # 50,000 requests (a few seconds)
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import _common

_common.require("plughost", install="-e .")

from plughost import Gateway  # noqa: E402

TRACE_NAMES = ["T1", "T2", "T3"]
BODY = b"x" * 64


def requests(gateway: Gateway, n: int, offset: int = 0) -> None:
    """n requests, rotating over the four shapes; checks one answer of each shape."""
    handle = gateway.handle
    h_plain = {"host": "127.0.0.1", "user-agent": "bench", "accept": "*/*"}
    h_post = {**h_plain, "content-type": "application/octet-stream"}
    for i in range(offset, offset + n):
        kind = i & 3
        if kind == 0:
            r = handle("GET", f"/users/{i}", h_plain)
        elif kind == 1:
            r = handle("POST", "/echo", h_post, BODY, query=f"page={i}")
        elif kind == 2:
            r = handle("GET", f"/users/{i}", {**h_plain, "x-request-id": f"client-{i}"})
        else:
            r = handle("GET", "/nowhere", h_plain)
        if i < offset + 4:
            want = 404 if kind == 3 else 200
            assert r.status == want, (kind, r)
            if kind == 2:
                assert dict(r.headers).get(b"X-Request-ID") == f"client-{i}".encode(), r


def rss_after_gc() -> int:
    gc.collect()
    return _common.rss_kib()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="50,000 requests (a few seconds)")
    p.add_argument("--requests", type=int, help="measured requests (default 1,000,000)")
    p.add_argument("--warmup", type=int, default=10_000, help="warm-up requests (10,000)")
    p.add_argument(
        "--plugins-dir",
        help="folder with the plugins (default: build them into build/bench-plugins)",
    )
    args = p.parse_args(argv)
    total = args.requests or (50_000 if args.quick else 1_000_000)

    print(f"memory_rss: {_common.machine()}")
    plugins = _common.plugin_dir(args.plugins_dir)
    with tempfile.TemporaryDirectory(prefix="plughost-bench-") as tmp:
        chain = ["RequestID", *TRACE_NAMES]
        folder = _common.write_config(
            Path(tmp),
            plugins,
            action="Echo",
            chains={"/users/:id": chain, "/echo": chain},
            middlewares={**_common.requestid(), **_common.traces(TRACE_NAMES)},
        )
        before_build = rss_after_gc()
        gateway = Gateway.from_config(folder)
        try:
            start = rss_after_gc()
            print(
                f"RSS before any request: {start / 1024:.1f} MB "
                f"(gateway built: +{(start - before_build) / 1024:.1f} MB)"
            )
            requests(gateway, args.warmup)
            warm = rss_after_gc()
            print(f"RSS after {args.warmup:,} warm-up requests: {warm / 1024:.1f} MB", flush=True)
            step = max(1, total // 10)
            done = 0
            t0 = time.perf_counter()
            samples = []
            while done < total:
                n = min(step, total - done)
                requests(gateway, n, args.warmup + done)
                done += n
                rss = rss_after_gc()
                samples.append(rss)
                rate = done / (time.perf_counter() - t0)
                print(
                    f"  {done:>9,} requests  RSS {rss / 1024:7.1f} MB  ({rate:,.0f} req/s)",
                    flush=True,
                )
            end = rss_after_gc()
        finally:
            gateway.close()

    growth_kib = end - warm
    half = samples[len(samples) // 2 - 1] if len(samples) >= 2 else warm
    print()
    print(f"{'RSS before':<30} {start / 1024:8.1f} MB")
    print(f"{'RSS after warm-up':<30} {warm / 1024:8.1f} MB  (+{(warm - start) / 1024:.1f} MB)")
    print(f"{f'RSS after {total:,} requests':<30} {end / 1024:8.1f} MB")
    print(
        f"growth after the warm-up: {growth_kib / 1024:+.2f} MB over {total:,} requests = "
        f"{growth_kib * 1024 / total:+.2f} bytes/request "
        f"(second half alone: {(end - half) * 1024 / max(1, total - total // 2):+.2f} "
        "bytes/request)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
