#!/usr/bin/env python3
"""Streamed proxying: big bodies both ways, server-sent events and a slow reader.

``plughost serve`` (one worker, core 0), route ``/api/*`` = RequestIdMiddleware,
HelmetMiddleware, httpfw's HttpAction (all ``PH_TYPE_STREAMS_BODIES``), forwards to a
raw-socket HTTP/1.1 upstream forked from this script and pinned with the client (this
process) to core 1; it sends from one preallocated 1 MiB memoryview and counts the bytes
the kernel took. On the direct path (``direct``) and ``--no-direct-path`` (``asgi``), after
a 16 MiB warm-up each way; RSS is the gateway's VmRSS, sampled every 20 ms by a thread,
peak over its value just before the request:

1. download: 1 GiB (256 MiB --quick) with Content-Length, read at full speed: MB/s and
   peak RSS growth (goal <= 32 MiB);
2. upload: a 256 MiB (64 MiB --quick) Content-Length POST the upstream reads and counts:
   MB/s and peak RSS growth (goal <= 32 MiB);
3. sse: 20 chunked events 100 ms apart carrying the upstream's time.monotonic(); delay to
   the client, median and max (goal max <= 50 ms);
4. slow reader: the download read at ~1 MiB/s for 3 s, then dropped: bytes the upstream
   wrote less those read (goal < 16 MiB), split into the socket queues of the upstream and
   the client connections (/proc/net/tcp) and the gateway's own share; seconds until the
   gateway closed the upstream's connection after the drop; peak RSS growth.

Exit status 0 when it ran (misses are reported in the table), 1 when a measurement failed,
2 when a prerequisite is missing.

    .venv/bin/python bench/streaming.py           # full run (~15 s)
    .venv/bin/python bench/streaming.py --quick   # smoke run (~12 s)
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common
from _http import Server

PLUGINS = ("requestid", "helmet", "httpfw")
MODES = ("direct", "asgi")
MiB = 1 << 20
GOAL_RSS, GOAL_SSE_MAX, GOAL_HELD = 32 * MiB, 0.050, 16 * MiB
EVENTS, GAP = 20, 0.1
SLOW_RATE, SLOW_SECONDS = 1 * MiB, 3.0
Stats = dict[str, Any]  # shared counters: written, sending, uploaded, port
Head = tuple[list[bytes], dict[bytes, bytes], bytes]
Row = tuple[str, str, str, str]  # measure, path, figure, goal and verdict


def read_head(sock: socket.socket, buf: bytes = b"") -> Head | None:
    """(start line + header lines, lower-cased fields, what followed) or None at EOF."""
    while b"\r\n\r\n" not in buf:
        if not (data := sock.recv(65536)):
            return None
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    return (
        lines,
        {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])},
        rest,
    )


def _serve(sock: socket.socket, stats: Stats) -> None:
    piece, scratch = memoryview(b"b" * MiB), memoryview(bytearray(MiB))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(600)  # internally non-blocking: send() returns what the kernel took
    buf = b""
    while (got := read_head(sock, buf)) is not None:
        lines, fields, buf = got
        target = lines[0].split(b" ")[1]
        if target.startswith(b"/big/"):
            left = int(target[5:])
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % left
            )
            stats["written"].value, stats["sending"].value = 0, 1
            try:
                while left:
                    n = sock.send(piece[: min(MiB, left)])
                    left -= n
                    stats["written"].value += n
            finally:
                stats["sending"].value = 0
        elif target == b"/sse":
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for i in range(EVENTS):
                event = b"id: %d\ndata: %.6f\n\n" % (i, time.monotonic())
                sock.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                time.sleep(GAP)
            sock.sendall(b"0\r\n\r\n")
        else:  # /upload and the rest: read and drop the body, answer its size
            length = int(fields.get(b"content-length", b"0"))
            size, buf = min(len(buf), length), buf[length:]
            while size < length:
                if not (n := sock.recv_into(scratch, min(MiB, length - size))):
                    return
                size += n
            stats["uploaded"].value = size
            answer = b"got %d" % size
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
            )


def _upstream(listener: socket.socket, stats: Stats) -> None:
    def one(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:  # OSError: the gateway dropped it mid-answer
            _serve(conn, stats)

    while True:
        threading.Thread(target=one, args=(listener.accept()[0],), daemon=True).start()


def config(path: Path, plugins: Path, upstream: str) -> Path:
    path.write_text(f"""\
plugins: [{", ".join(f"{{path: {plugins / n}.so}}" for n in PLUGINS)}]
middlewares:
  RequestID: {{use: plugins.requestid.middlewares.RequestIdMiddleware}}
  Helmet: {{use: plugins.helmet.middlewares.HelmetMiddleware}}
actions:
  Forward: {{use: plugins.httpfw.actions.HttpAction,
            config: {{upstreamEndpoint: "{upstream}", timeout: 300s}}}}
routes:
  Api: {{gatewayPath: /api/*, methods: [GET, POST], middlewares: [RequestID, Helmet],
        action: Forward}}
server: {{bodyLimit: 2GB}}
""")
    return path


def tree_rss(pid: int) -> int:
    """VmRSS in bytes of ``pid`` and its descendants (a supervisor's workers, if any)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            status = Path(f"/proc/{p}/status").read_text()
            total += 1024 * int(status.split("VmRSS:", 1)[1].split()[0])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


@contextlib.contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    """Yields [before, peak]: RSS on entry and the highest seen every 20 ms until exit."""
    seen = [tree_rss(pid)] * 2
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            seen[1] = max(seen[1], tree_rss(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()
        seen[1] = max(seen[1], tree_rss(pid))


def request(port: int, head: bytes) -> tuple[socket.socket, dict[bytes, bytes], bytes]:
    """Sends ``head`` and reads a 200's head that the chain ran on: (socket, fields, rest)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=300)
    sock.sendall(head)
    got = read_head(sock)
    if (
        got is None
        or not got[0][0].startswith(b"HTTP/1.1 200")
        or b"x-request-id" not in got[1]
        or b"x-frame-options" not in got[1]
    ):
        sock.close()
        raise ConnectionError(f"not a 200 with X-Request-ID and helmet's headers: {got!r:.200}")
    return sock, got[1], got[2]


def download(port: int, size: int) -> float:
    """Seconds from sending the request to having the ``size``-byte answer whole."""
    t0 = time.monotonic()
    sock, fields, rest = request(port, b"GET /api/big/%d HTTP/1.1\r\nHost: b\r\n\r\n" % size)
    buf, got = memoryview(bytearray(MiB)), len(rest)
    with sock:
        if fields.get(b"content-length") != b"%d" % size:
            raise ConnectionError(f"Content-Length {fields.get(b'content-length')!r}")
        while got < size:
            if not (n := sock.recv_into(buf)):
                raise ConnectionError(f"closed after {got} of {size} bytes")
            got += n
    return time.monotonic() - t0


def upload(port: int, size: int, stats: Stats) -> float:
    """Seconds from the first byte sent to the upstream's answer (its count checked)."""
    piece = memoryview(b"u" * MiB)
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=300) as sock:
        sock.sendall(
            b"POST /api/upload HTTP/1.1\r\nHost: b\r\nContent-Type: application/"
            b"octet-stream\r\nContent-Length: %d\r\n\r\n" % size
        )
        for off in range(0, size, MiB):
            sock.sendall(piece[: min(MiB, size - off)])
        got = read_head(sock)
    if got is None or not got[0][0].startswith(b"HTTP/1.1 200") or stats["uploaded"].value != size:
        raise ConnectionError(
            f"{got[0][0].decode() if got else 'no answer'}; the upstream "
            f"counted {stats['uploaded'].value} of {size} bytes"
        )
    return time.monotonic() - t0


def chunks(sock: socket.socket, buf: bytes) -> Iterator[bytes]:
    """Decodes a chunked body as it arrives: each chunk's data as soon as it is whole."""

    def more() -> bytes:
        if not (data := sock.recv(65536)):
            raise ConnectionError("closed mid-stream")
        return data

    while True:
        while b"\r\n" not in buf:
            buf += more()
        line, buf = buf.split(b"\r\n", 1)
        size = int(line.split(b";")[0], 16)
        while len(buf) < size + 2:
            buf += more()
        if not size:
            return
        yield buf[:size]
        buf = buf[size + 2 :]


def sse(port: int) -> list[float]:
    """Seconds from the upstream sending each event to this client having it whole."""
    sock, fields, rest = request(
        port, b"GET /api/sse HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n"
    )
    delays, text = [], b""
    with sock:
        if fields.get(b"transfer-encoding") != b"chunked":
            raise ConnectionError("the event stream is not chunked")
        for data in chunks(sock, rest):
            now, text = time.monotonic(), text + data
            while b"\n\n" in text:
                event, text = text.split(b"\n\n", 1)
                delays += [now - float(x[5:]) for x in event.split(b"\n") if x.startswith(b"data:")]
    if len(delays) != EVENTS:
        raise ConnectionError(f"{len(delays)} of {EVENTS} events arrived")
    return delays


def queued(port: int) -> int:
    """Bytes in the send and receive queues of the established TCP sockets with one end on
    ``port`` (both ends of each connection: /proc/net/tcp lists every socket)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "01" and port in (int(f[1][-4:], 16), int(f[2][-4:], 16)):
            total += sum(int(q, 16) for q in f[4].split(":"))
    return total


def slow_reader(port: int, size: int, stats: Stats) -> tuple[int, int, int, int, float]:
    """Reads at SLOW_RATE for SLOW_SECONDS, then drops the connection: (bytes the upstream
    wrote, bytes read, bytes then in the socket queues of the gateway's connections to the
    upstream and of the client's, seconds until the upstream stopped sending after the drop)."""
    sock, _, rest = request(port, b"GET /api/big/%d HTTP/1.1\r\nHost: b\r\n\r\n" % size)
    got, t0 = len(rest), time.monotonic()
    with sock:
        while (elapsed := time.monotonic() - t0) < SLOW_SECONDS:
            if (want := int(elapsed * SLOW_RATE) - got) > 0:
                got += len(sock.recv(want))
            time.sleep(0.01)
        written = stats["written"].value
        up_q, client_q = queued(stats["port"].value), queued(sock.getsockname()[1])
    t1 = time.monotonic()
    while stats["sending"].value and time.monotonic() - t1 < 10:
        time.sleep(0.01)
    return written, got, up_q, client_q, time.monotonic() - t1


def measure(mode: str, port: int, pid: int, stats: Stats, big: int, up: int) -> list[Row]:
    """The four measurements on one gateway, the first after a 16 MiB warm-up each way."""

    def meets(ok: bool, goal: str) -> str:
        return f"{goal}: {'meets' if ok else 'MISSES'}"

    rows: list[Row] = []
    dl, ul = f"download {big // MiB} MiB", f"upload {up // MiB} MiB"
    for name in (dl, ul, f"sse {EVENTS} events", "slow reader"):
        try:
            if name == dl:  # warm-up: the pool's connection, first-use allocations
                download(port, 16 * MiB)
                upload(port, 16 * MiB, stats)
            with peak_rss(pid) as seen:
                if name == dl:
                    got = [("throughput", f"{big / download(port, big) / 1e6:,.0f} MB/s", "-")]
                elif name == ul:
                    got = [("throughput", f"{up / upload(port, up, stats) / 1e6:,.0f} MB/s", "-")]
                elif name.startswith("sse"):
                    d = sse(port)
                    got = [
                        ("delay median", f"{statistics.median(d) * 1e3:.2f} ms", "-"),
                        (
                            "delay max",
                            f"{max(d) * 1e3:.2f} ms",
                            meets(max(d) <= GOAL_SSE_MAX, "<= 50 ms"),
                        ),
                    ]
                else:
                    written, read, up_q, client_q, stopped = slow_reader(port, big, stats)
                    held = written - read
                    got = [
                        (
                            "upstream wrote - client read",
                            f"{held / MiB:.1f} MiB ({written / MiB:.1f} - {read / MiB:.1f})",
                            meets(held < GOAL_HELD, "< 16 MiB"),
                        ),
                        ("  in upstream connection queues", f"{up_q / MiB:.1f} MiB", "-"),
                        ("  in client connection queues", f"{client_q / MiB:.1f} MiB", "-"),
                        (
                            "  in the gateway (the rest)",
                            f"{(held - up_q - client_q) / MiB:.1f} MiB",
                            "-",
                        ),
                        (
                            "upstream stopped after the drop",
                            f"{stopped:.2f} s" if stopped < 10 else "not within 10 s",
                            "-",
                        ),
                    ]
            if not name.startswith("sse"):
                grew = seen[1] - seen[0]
                got.append(
                    (
                        "peak RSS growth",
                        f"+{grew / MiB:.1f} MiB (over {seen[0] / MiB:.0f})",
                        meets(grew <= GOAL_RSS, "<= 32 MiB"),
                    )
                )
            rows += [(f"{name}: {what}", mode, figure, goal) for what, figure, goal in got]
        except (OSError, ValueError) as e:
            rows.append((name, mode, f"FAILED: {e}"[:90], "-"))
        print(f"  {mode:<6} {name}: done", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: a 256 MiB download and a 64 MiB upload"
    )
    p.add_argument("--only", nargs="+", choices=MODES, help="measure only these paths")
    p.add_argument(
        "--plugins-dir",
        help="folder with the plugins (default: build them into build/bench-plugins)",
    )
    args = p.parse_args(argv)
    big, up = (256 * MiB, 64 * MiB) if args.quick else (1024 * MiB, 256 * MiB)
    modes = [m for m in MODES if m in (args.only or MODES)]

    plughost_bin = Path(sys.executable).parent / "plughost"
    if not shutil.which("taskset") or not plughost_bin.exists() or not Path("/proc/self").is_dir():
        print(
            f"streaming.py: needs taskset, /proc, {plughost_bin}: run ./dev setup", file=sys.stderr
        )
        return 2
    try:
        plugins = _common.plugin_dir(args.plugins_dir)
    except SystemExit as e:  # the build failed, or --plugins-dir lacks a plugin
        print(e, file=sys.stderr)
        return 2
    if lacking := [f"{n}.so" for n in PLUGINS if not (plugins / f"{n}.so").is_file()]:
        print(f"streaming.py: {plugins} lacks {', '.join(lacking)}", file=sys.stderr)
        return 2
    my_core = 1 if len(os.sched_getaffinity(0)) >= 2 else 0
    os.sched_setaffinity(0, {my_core})  # the client, and the upstream forked below

    print(f"streaming: {_common.machine()}")
    print(
        f"gateway (plughost serve, 1 worker) on core 0, client and upstream on core {my_core}; "
        f"download {big // MiB} MiB, upload {up // MiB} MiB, {EVENTS} events {GAP * 1e3:.0f} "
        f"ms apart, slow reader {SLOW_RATE // MiB} MiB/s for {SLOW_SECONDS:.0f} s",
        flush=True,
    )
    ctx = multiprocessing.get_context("fork")
    stats = {k: ctx.Value("q", 0, lock=False) for k in ("written", "sending", "uploaded", "port")}
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stats["port"].value = listener.getsockname()[1]
    upstream = ctx.Process(target=_upstream, args=(listener, stats), daemon=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="plughost-bench-") as tmp_name:
        tmp = Path(tmp_name)
        conf = config(
            tmp / "gateway.yaml", plugins, f"http://127.0.0.1:{listener.getsockname()[1]}"
        )
        try:
            upstream.start()
            listener.close()
            for mode in modes:
                port = _common.free_port()
                gateway = Server(
                    f"plughost-{mode}",
                    [
                        str(plughost_bin),
                        "serve",
                        "--config",
                        str(conf),
                        "--address",
                        f"127.0.0.1:{port}",
                        "--log-level",
                        "warning",
                        *(["--no-direct-path"] if mode == "asgi" else []),
                    ],
                    port,
                    ready_path="/api/ready",
                )
                try:
                    gateway.start(tmp, "0")
                    gateway.wait_ready()
                    assert gateway.proc is not None
                    rows += measure(mode, port, gateway.proc.pid, stats, big, up)
                finally:
                    gateway.stop()  # by PID: SIGINT, SIGKILL after 15 s
        finally:
            if upstream.pid is not None and upstream.is_alive():
                os.kill(upstream.pid, signal.SIGKILL)
                upstream.join()
    order = list(dict.fromkeys(r[0] for r in rows))  # each measure: direct, then asgi
    rows.sort(key=lambda r: (order.index(r[0]), MODES.index(r[1])))
    table = [("measure", "path", "figure", "goal"), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    print()
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(
        "\nMB = 10^6 bytes. RSS: VmRSS of the gateway's process tree, sampled every 20 ms, "
        "over its value just\nbefore the request. sse delay: upstream's send -> the client "
        "has the event (time.monotonic)."
    )
    return 1 if any(r[2].startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
