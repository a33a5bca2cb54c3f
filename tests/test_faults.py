"""Fault containment, against `plughost serve` over real sockets.

A test plugin (tests/native_plugins/trace, built by CMake) crashes on one route (a NULL
dereference) and spins forever on another. The worker running it is reported by name —
signal, instance, type id, plugin, route, request id — and replaced, with one worker and
with several, and the gateway goes on answering; SIGTERM during a hang still stops the
server within its grace period.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

from gateway_support import Server, write_config

FAULTY = """\
  Crash:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {name: Crash, fault: crash}
  Spin:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {name: Spin, fault: spin}
"""

ROUTES = """\
  Crashing:
    gatewayPath: /crash
    methods: [GET]
    middlewares: [A, Crash]
    action: Echo
  Spinning:
    gatewayPath: /spin
    methods: [GET]
    middlewares: [Spin]
    action: Echo
"""


def faulty_config(tmp_path: Path, plugin_dir: Path, element_timeout: str = "1s") -> Path:
    folder = write_config(tmp_path / "config", plugin_dir, extra_routes=ROUTES)
    middlewares = (folder / "middlewares.yaml").read_text()
    (folder / "middlewares.yaml").write_text(
        middlewares.replace("globalMiddlewares:", FAULTY + "globalMiddlewares:")
    )
    (folder / "server.yaml").write_text(f"server:\n  elementTimeout: {element_timeout}\n")
    return folder


def send(port: int, path: str, request_id: str, timeout: float = 10.0) -> bytes:
    """A GET on a fresh connection: what came back before the connection ended."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: t\r\nX-Request-ID: {request_id}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return out


def wait_for(server: Server, start: int, *texts: str, timeout: float = 10.0) -> str:
    out = server.output_after(start, *texts, timeout=timeout)
    assert all(t in out for t in texts), out
    return out


def serves_again(server: Server, within: float = 5.0) -> float:
    """Seconds until the gateway answers / with 200 again."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        try:
            if server.get("/", timeout=2)[0] == 200:
                return time.monotonic() - began
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"not serving {within} s after the fault: {server.output()[-2000:]}")


def test_a_crashing_plugin_is_reported_and_its_only_worker_replaced(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    with Server("--config", str(faulty_config(tmp_path, test_plugin_dir))) as server:
        assert server.get("/traced")[0] == 200
        start = len(server.output())
        assert send(server.port, "/crash", "crash-1") == b""  # the worker died under it
        out = wait_for(server, start, "crashed with SIGSEGV", "replaced by worker")
        report = re.search(
            r"plughost: worker \d+ crashed with SIGSEGV in middleware 'Crash' "
            r"\(plugins\.trace\.middlewares\.TraceMiddleware\) of plugin trace "
            r"\(\S+/trace\.so\) on route 'Crashing' \(request id crash-1\): the "
            r"worker ends and its supervisor replaces it",
            out,
        )
        assert report, out
        assert re.search(
            r"worker \[\d+\] was ended by SIGSEGV; replaced by worker \[\d+\] "
            r"\(1 replacement\(s\) since start: 1 crash\(es\), 0 hang\(s\)\)",
            out,
        )
        assert serves_again(server) < 3
        assert server.get("/traced")[0] == 200
        # again: every crash is replaced
        start = len(server.output())
        send(server.port, "/crash", "crash-2")
        wait_for(server, start, "request id crash-2", "2 replacement(s) since start")
        serves_again(server)
    assert "Traceback" not in server.output()


def test_a_spinning_plugin_is_reported_and_its_worker_replaced(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    with Server("--config", str(faulty_config(tmp_path, test_plugin_dir))) as server:
        start = len(server.output())
        began = time.monotonic()
        assert send(server.port, "/spin", "spin-1") == b""
        out = wait_for(server, start, "over elementTimeout", "replaced by worker")
        assert re.search(
            r"plughost: worker \d+: in middleware 'Spin' \(plugins\.trace\."
            r"middlewares\.TraceMiddleware\) of plugin trace \(\S+\) on route "
            r"'Spinning' \(request id spin-1\) has run for \d+ ms, over "
            r"elementTimeout \(1000 ms\)",
            out,
        ), out
        assert "was ended by its watchdog: a chain element ran over elementTimeout" in out
        assert "0 crash(es), 1 hang(s)" in out
        assert time.monotonic() - began < 5
        serves_again(server)


def test_with_two_workers_the_other_keeps_serving_during_a_hang(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    folder = faulty_config(tmp_path, test_plugin_dir, element_timeout="3s")
    with Server("--config", str(folder), "--workers", "2") as server:
        for _ in range(10):
            assert server.get("/")[0] == 200
        start = len(server.output())
        hung = threading.Thread(target=send, args=(server.port, "/spin", "spin-2"))
        hung.start()
        time.sleep(0.3)
        served = 0
        while hung.is_alive():  # the other worker answers meanwhile
            assert server.get("/", timeout=5)[0] == 200
            served += 1
            time.sleep(0.1)
        hung.join()
        assert served >= 10
        wait_for(server, start, "request id spin-2", "replaced by worker")
        start = len(server.output())
        send(server.port, "/crash", "crash-3")
        wait_for(server, start, "request id crash-3", "crashed with SIGSEGV")
        for _ in range(10):
            assert serves_again(server) < 3


def test_sigterm_during_a_hang_stops_the_server_within_its_grace_period(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    folder = faulty_config(tmp_path, test_plugin_dir, element_timeout="120s")
    server = Server("--config", str(folder))
    try:
        hung = threading.Thread(
            target=send, args=(server.port, "/spin", "spin-3", 30.0), daemon=True
        )
        hung.start()
        time.sleep(0.5)
        began = time.monotonic()
        out = server.stop()  # SIGTERM
        took = time.monotonic() - began
        assert server.proc.returncode is not None
        assert took < 20, took  # 10 s of graceful shutdown + 5 s, then SIGKILL
        assert "did not stop within 15 s and was killed" in out, out
    finally:
        server.stop()


def test_repeated_failures_are_logged_once_then_summarised() -> None:
    import logging

    from plughost.serving.logflood import RepeatFilter

    now = [0.0]
    flood = RepeatFilter(window=10, clock=lambda: now[0])
    logger = logging.getLogger("plughost.test-flood")
    passed: list[str] = []

    def log(message: str, *args: object) -> None:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, message, args, None)
        if flood.filter(record):
            passed.append(record.getMessage())

    for i in range(3201):
        log(
            "valkey 127.0.0.1:%d: connection refused (request id %s)",
            6379,
            f"{i:08x}-0000-4000-8000-000000000000",
        )
        now[0] += 0.001
    log("another failure")
    log("valkey 127.0.0.1:%d: connection refused (request id %s)", 6380, "1")  # another one
    now[0] = 10.5
    log(
        "valkey 127.0.0.1:%d: connection refused (request id %s)",
        6379,
        "ffffffff-0000-4000-8000-000000000000",
    )
    assert passed == [
        "valkey 127.0.0.1:6379: connection refused (request id "
        "00000000-0000-4000-8000-000000000000)",
        "another failure",
        "valkey 127.0.0.1:6380: connection refused (request id 1)",
        "valkey 127.0.0.1:6379: connection refused (request id "
        "ffffffff-0000-4000-8000-000000000000) (3,200 more like this in the last 10 s)",
    ]
    info = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "routine", (), None)
    assert all(flood.filter(info) for _ in range(5))  # below WARNING: never held back


def test_a_failing_route_under_load_logs_one_line(tmp_path: Path, test_plugin_dir: Path) -> None:
    folder = write_config(tmp_path / "config", test_plugin_dir)
    with Server("--config", str(folder)) as server:
        for _ in range(200):
            assert server.get("/broken")[0] == 500
        out = server.output_after(0, "trace FailRequest was told to fail")
        time.sleep(0.3)
        out = server.output()
    assert out.count("trace FailRequest was told to fail") == 1, out[-3000:]
