"""Helpers for the gateway tests: a real configuration folder, and a real upstream HTTP
server on a free loopback port."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

PLUGINS = ("memory", "requestid", "static", "trace")
PLUGHOST = str(Path(sys.executable).with_name("plughost"))


def header(response: Any, name: str) -> str | None:
    """The first value of header ``name`` of a gateway Response (Response.header)."""
    return response.header(name)  # type: ignore[no-any-return]


def header_values(response: Any, name: str) -> list[str]:
    """Every value of header ``name`` of a gateway Response."""
    return response.header_values(name)  # type: ignore[no-any-return]


def set_cookie(response: Any) -> str:
    """The Set-Cookie header of a gateway Response, which must have exactly one."""
    found = header_values(response, "Set-Cookie")
    assert len(found) == 1, found
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recv_head(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
    """For raw upstream servers: reads until a message head is complete; (head without the
    blank line, the bytes after it), or None when the peer closed first."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def accept_loop(
    sock: socket.socket,
    serve: Callable[[socket.socket], None],
    conns: list[socket.socket] | None = None,
) -> None:
    """For raw servers, on a thread of its own: accepts connections on the listening
    ``sock`` until it is closed and serves each with ``serve`` on a daemon thread; each
    connection is also kept in ``conns`` when given (to shut it down at the end)."""
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        if conns is not None:
            conns.append(conn)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def private_plugins(source: Path, folder: Path) -> Path:
    """A copy of the plugins in ``source`` in a folder of our own, writable by us only (as
    the permission check wants), that a test may change."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    for so in source.glob("*.so"):
        (folder / so.name).write_bytes(so.read_bytes())
        (folder / so.name).chmod(0o755)
    return folder


def wait_for_http(url: str, proc: "subprocess.Popen[str]", timeout: float = 30.0) -> Any:
    """Polls ``url`` until the server in ``proc`` answers; returns the open response (the
    caller closes it). Fails if the server exits or does not answer in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=5)
        except urllib.error.HTTPError:
            raise
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {proc.returncode}: "
                    f"{proc.stdout.read() if proc.stdout else ''}"
                ) from None
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer from {url} within {timeout:g} s") from None
            time.sleep(0.1)


class Server:
    """A `plughost serve` child process on a free loopback port, stopped by PID.

    Its output (stdout and stderr together) is drained by a thread into ``lines``, so that a
    server that logs a lot (a storage outage logs every failed request) never blocks on a
    full pipe; ``output()`` reads it at any time, ``stop()`` returns all of it."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        scheme: str = "http",
        timeout: float = 30.0,
        executable: str = PLUGHOST,
        cwd: Path | None = None,
        inherit_environ: bool = True,
    ) -> None:
        """``executable``: another installation's ``plughost``; with ``inherit_environ``
        False, ``env`` is the whole environment instead of additions to this one's."""
        self.port = free_port()
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.context = ssl._create_unverified_context() if scheme == "https" else None
        self.lines: list[str] = []
        environ = {**os.environ, **(env or {})} if inherit_environ else dict(env or {})
        self.proc = subprocess.Popen(
            [executable, "serve", "--address", f"127.0.0.1:{self.port}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environ,
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                if self.get("/health/live", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                out = self.stop()
                raise AssertionError(f"server did not come up within {timeout:g} s: {out}")
            time.sleep(0.1)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def output_after(self, start: int, *texts: str, timeout: float = 5.0) -> str:
        """The output from offset ``start`` on, once it holds every one of ``texts`` (the
        server's log reaches us through a pipe a moment after its answer), or at timeout."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.output()[start:]
            if all(t in out for t in texts) or time.monotonic() > deadline:
                return out
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, Any, bytes]:
        """(status, headers, body); the headers are case-insensitive (``get_all`` for
        repeated ones such as Set-Cookie). Error statuses are returned, not raised."""
        req = urllib.request.Request(
            self.base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.context) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.headers, err.read()

    def get(self, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        return self.request("GET", path, **kwargs)

    def stop(self) -> str:
        """SIGTERM, then SIGKILL after 30 s; returns everything the server printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(10)
        return self.output()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_instance_config(
    folder: Path, plugin_dir: Path, kind: str, name: str, type_id: str, config: str
) -> Path:
    """A Seam configuration folder with one instance under test: ``name``, a ``type_id``
    of ``kind`` ("storage", "middleware" or "action") whose ``config`` (YAML lines indented
    under `config:`) starts on line 5 of ``<kind>s.yaml``, and a route GET / that answers
    with a StaticAction (the instance itself when it is an action) after the middleware."""
    folder.mkdir(parents=True, exist_ok=True)
    plugin = type_id.split(".")[1]
    names = [plugin] + (["static"] if plugin != "static" else [])
    (folder / "plugins.yaml").write_text(
        "plugins:\n" + "".join(f"  - path: {plugin_dir / n}.so\n" for n in names)
    )
    (folder / f"{kind}s.yaml").write_text(
        f"{kind}s:\n  {name}:\n    use: {type_id}\n    config:\n{config}"
    )
    action = name if kind == "action" else "Hello"
    if kind != "action":
        (folder / "actions.yaml").write_text(
            "actions:\n  Hello:\n    use: plugins.static.actions.StaticAction\n"
        )
    middlewares = f"    middlewares: [{name}]\n" if kind == "middleware" else ""
    (folder / "routes.yaml").write_text(
        f"routes:\n  Hello:\n    gatewayPath: /\n    methods: [GET]\n{middlewares}"
        f"    action: {action}\n"
    )
    return folder


def instance_yaml(name: str, type_id: str, config: dict[str, Any] | None = None) -> str:
    """One instance entry of a middlewares/storages/actions YAML list: ``name`` using
    ``type_id``, with ``config`` (written as JSON, which is YAML) when given."""
    text = f"  {name}:\n    use: {type_id}\n"
    if config is not None:
        text += f"    config: {json.dumps(config)}\n"
    return text


@contextlib.contextmanager
def middleware_gateways(
    folder: Path,
    write: Callable[..., Path],
    plugin_dir: Path,
    entries: Callable[[dict[str, Any] | None], str],
) -> Iterator[Callable[..., Any]]:
    """gateways() for the tests of one middleware: ``build(cfg=None, *, raw=None, **kwargs)``
    loads ``write(config folder, plugin_dir, middlewares, **kwargs)``, where middlewares (the
    YAML entries under `middlewares:`) is ``raw`` when given, else ``entries(cfg)``."""

    def write_one(
        target: Path, cfg: dict[str, Any] | None = None, *, raw: str | None = None, **kwargs: Any
    ) -> Path:
        return write(target, plugin_dir, raw if raw is not None else entries(cfg), **kwargs)

    with gateways(folder, write_one) as build:
        yield build


def storages_yaml(
    memory_name: str,
    memory: dict[str, Any] | None = None,
    *,
    valkey_port: int | None = None,
    prefix: str = "st:",
) -> str:
    """A storages.yaml: a MemoryStorage ``memory_name`` (configured with ``memory`` when
    given) and, with ``valkey_port``, a ValkeyStorage "Valkey" on that port with the key
    prefix ``prefix`` and 500 ms connect and command timeouts."""
    text = "storages:\n" + instance_yaml(
        memory_name, "plugins.memory.storages.MemoryStorage", memory
    )
    if valkey_port is not None:
        text += (
            "  Valkey:\n    use: plugins.valkey.storages.ValkeyStorage\n"
            f"    config: {{port: {valkey_port}, prefix: '{prefix}', "
            "connectTimeout: 500ms, commandTimeout: 500ms}\n"
        )
    return text


@contextlib.contextmanager
def both_paths(config: Path) -> Iterator[tuple["Server", "Server"]]:
    """`plughost serve` twice on one configuration: with the direct path, and with every
    request on the ASGI path (--no-direct-path)."""
    with (
        Server("--config", str(config)) as direct,
        Server("--config", str(config), "--no-direct-path") as asgi,
    ):
        yield direct, asgi


def write_config(
    folder: Path, plugin_dir: Path, *, upstream: str = "http://127.0.0.1:9", extra_routes: str = ""
) -> Path:
    """A Seam configuration folder using the native plugins and the trace test plugin."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugins.yaml").write_text(
        "plugins:\n" + "".join(f"  - path: {plugin_dir / name}.so\n" for name in PLUGINS)
    )
    (folder / "storages.yaml").write_text(
        "storages:\n  Memory:\n    use: plugins.memory.storages.MemoryStorage\n"
    )
    (folder / "middlewares.yaml").write_text("""\
middlewares:
  RequestID:
    use: plugins.requestid.middlewares.RequestIdMiddleware
  A:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {name: A}
  B:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {name: B}
  C:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {name: C}
  Teapot:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {name: Teapot, respond: 418}
  FailRequest:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {name: FailRequest, fail: request}
  FailResponse:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {name: FailResponse, fail: response}
  Blocking:
    use: plugins.trace.middlewares.BlockingTraceMiddleware
    config: {name: Blocking}
globalMiddlewares:
  - RequestID
""")
    (folder / "actions.yaml").write_text(f"""\
actions:
  Echo:
    use: plugins.trace.actions.EchoAction
  Hello:
    use: plugins.static.actions.StaticAction
    config:
      body: hello
  Forward:
    use: plugins.trace.actions.ForwardAction
    config:
      url: {upstream}
      timeout: 1s
""")
    (folder / "routes.yaml").write_text(
        """\
routes:
  Hello:
    gatewayPath: /
    methods: [GET]
    action: Hello
  Traced:
    gatewayPath: /traced
    methods: [GET, POST]
    middlewares: [A, B]
    action: Echo
  User:
    gatewayPath: /users/:id
    methods: [GET]
    middlewares: [A]
    action: Echo
  Files:
    gatewayPath: /files/*
    methods: [GET]
    action: Echo
  Early:
    gatewayPath: /early
    methods: [GET]
    middlewares: [A, Teapot, B]
    action: Echo
  Broken:
    gatewayPath: /broken
    methods: [GET]
    middlewares: [A, FailRequest, B]
    action: Echo
  BrokenResponse:
    gatewayPath: /broken-response
    methods: [GET]
    middlewares: [A, FailResponse]
    action: Echo
  Blocking:
    gatewayPath: /blocking
    methods: [GET]
    middlewares: [A, Blocking]
    action: Echo
  Proxy:
    gatewayPath: /proxy/*
    methods: [GET, POST]
    middlewares: [A]
    action: Forward
"""
        + extra_routes
    )
    return folder


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body go out in two writes: no 40 ms stall

    def _answer(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/proxy/slow"):
            time.sleep(3)
        payload = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": body.decode("latin-1"),
            }
        ).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "yes")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


class UpstreamServer:
    """A real HTTP server on 127.0.0.1 that echoes what it received as JSON."""

    def __init__(self) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
        self.server.daemon_threads = True
        self.server.seen = []  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> int:
        """How many requests reached this server so far."""
        return len(self.server.seen)  # type: ignore[attr-defined]

    def __enter__(self) -> "UpstreamServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def upstream_server() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@contextlib.contextmanager
def gateways(
    folder: Path, write: Callable[..., Path], *bound: Any, **options: Any
) -> Iterator[Callable[..., Any]]:
    """A factory of in-process gateways for a test: each call ``build(*args, **kwargs)``
    writes a configuration with ``write(folder / "config<N>", *bound, *args, **kwargs)``
    (which returns what to load) and builds ``Gateway.from_config(that, **options)`` from it;
    every gateway built is closed when the block ends."""
    from plughost import Gateway

    opened: list[Any] = []

    def build(*args: Any, **kwargs: Any) -> Any:
        target = folder / f"config{len(opened)}"
        gateway = Gateway.from_config(write(target, *bound, *args, **kwargs), **options)
        opened.append(gateway)
        return gateway

    try:
        yield build
    finally:
        for gateway in opened:
            gateway.close()
