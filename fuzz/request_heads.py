"""Fuzz harness: request bytes from a stranger, on both HTTP paths at once (atheris).

The same gateway is served twice in this process, on loopback: through plughost's HTTP
protocol with its direct path, and with every request on the ASGI path
(``plughost serve --no-direct-path``). Each input is sent as it is to both, the client then
half-closes, and both answers are read to the end. A finding is any difference between the
status codes the two answer with, in order (pipelined requests included), or a server
that stops answering. Seeds: a handful of request heads (``fuzz/run.py``).
"""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import tempfile
import threading
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["plughost", "uvicorn", "httptools"]):
    import uvicorn

    from plughost import Gateway
    from plughost.serving.asgi import GatewayApp
    from plughost.serving.protocol import AsgiHttpProtocol, GatewayHttpProtocol

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
plugins:
  - path: {plugins}/memory.so
  - path: {plugins}/requestid.so
  - path: {plugins}/static.so
  - path: {plugins}/helmet.so
middlewares:
  RequestID: {{use: plugins.requestid.middlewares.RequestIdMiddleware}}
  Helmet: {{use: plugins.helmet.middlewares.HelmetMiddleware}}
globalMiddlewares: [RequestID]
actions:
  Hello: {{use: plugins.static.actions.StaticAction, config: {{body: hello}}}}
  Created: {{use: plugins.static.actions.StaticAction, config: {{status: 201, body: made}}}}
routes:
  Hello: {{gatewayPath: /, methods: [GET, HEAD], action: Hello}}
  User: {{gatewayPath: /users/:id, methods: [GET], middlewares: [Helmet], action: Hello}}
  Files: {{gatewayPath: /files/*, methods: [GET, DELETE], action: Hello}}
  Submit: {{gatewayPath: /submit, methods: [POST, PUT, PATCH], action: Created}}
server:
  bodyLimit: 65536
"""
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def _serve(protocol: type, config_file: Path) -> int:
    """Serves a gateway built from ``config_file`` on a thread of its own; its port."""
    gateway = Gateway.from_config(config_file)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        GatewayApp(gateway=gateway),
        http=protocol,
        loop="asyncio",
        lifespan="off",
        log_level="critical",
        access_log=False,
        server_header=False,
        timeout_keep_alive=2,
    )
    server = uvicorn.Server(config)
    started = threading.Event()

    def run() -> None:
        async def main() -> None:
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            started.set()
            await task

        asyncio.run(main())

    threading.Thread(target=run, daemon=True).start()
    if not started.wait(30):
        raise RuntimeError("the fuzzed server did not start")
    return sock.getsockname()[1]


def _exchange(port: int, data: bytes) -> list[bytes]:
    """The statuses a server answers ``data`` with, after a half-close, read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        try:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close early (a refused head): read what it said
        got = b""
        try:
            while chunk := conn.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise AssertionError(
                f"no end of the answer within 5 s; so far: {got[:300]!r}"
            ) from None
    return STATUS.findall(got)


PORTS: tuple[int, int] = (0, 0)


def test_one_input(data: bytes) -> None:
    direct, asgi = (_exchange(port, data) for port in PORTS)
    if direct != asgi:
        raise AssertionError(f"the paths disagree: direct {direct}, ASGI {asgi}")


def main() -> None:
    global PORTS
    folder = Path(tempfile.mkdtemp(prefix="plughost-fuzz-heads-"))
    (folder / "gateway.yaml").write_text(CONFIG.format(plugins=ROOT / "build" / "plugins"))
    PORTS = (
        _serve(GatewayHttpProtocol, folder / "gateway.yaml"),
        _serve(AsgiHttpProtocol, folder / "gateway.yaml"),
    )
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
