"""The wsfw plugin (CheckWebSocketUpgradeMiddleware, WebSocketAction) and the host's WebSocket
relay: real WebSocket clients (the websockets library) talk through `plughost serve` to real
upstream WebSocket servers (aiohttp) started here on loopback. Text and binary messages both
ways, close codes passed on, the handshake through the chain (X-Forwarded-*, the request id on
the 101), subprotocols, origins, ping/pong and inactivity limits, message size limits, the
refusals (426, 400, 403, 502, 504 and the upstream's own), configuration errors, and Seam's
example configuration unchanged."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from plughost.config import ConfigErrors

from gateway_support import Server, accept_loop, free_port, private_plugins
from ws_support import WsUpstream

SEAM = Path(__file__).resolve().parent / "data" / "seam"
CHECK = "plugins.wsfw.middlewares.CheckWebSocketUpgradeMiddleware"
ACTION = "plugins.wsfw.actions.WebSocketAction"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key


# ------------------------------------------------------------------ the upstream server


@pytest.fixture(scope="module")
def upstream() -> Iterator[WsUpstream]:
    server = WsUpstream()
    yield server
    server.stop()


class MuteUpstream:
    """A WebSocket server written on a bare socket that echoes text messages and never
    answers a ping (WebSocket libraries answer pings by themselves)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"ws://127.0.0.1:{self.sock.getsockname()[1]}"
        self.pings = 0
        threading.Thread(target=accept_loop, args=(self.sock, self._serve), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = re.search(rb"(?i)sec-websocket-key: *(\S+)", request).group(1)  # type: ignore[union-attr]
            accept = base64.b64encode(
                hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            file = conn.makefile("rb")
            while True:
                head = file.read(2)
                if len(head) < 2:
                    return
                opcode, length = head[0] & 0x0F, head[1] & 0x7F
                if length == 126:
                    length = int.from_bytes(file.read(2), "big")
                elif length == 127:
                    length = int.from_bytes(file.read(8), "big")
                mask = file.read(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(file.read(length)))
                if opcode == 0x9:
                    self.pings += 1  # and no pong
                elif opcode == 0x1 and length < 126:
                    conn.sendall(bytes([0x81, length]) + data)
                elif opcode == 0x8:
                    return

    def stop(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def mute() -> Iterator[MuteUpstream]:
    server = MuteUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung upstream)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


# ------------------------------------------------------------------ the gateway


def write_gateway(
    folder: Path, plugin_dir: Path, actions: dict[str, dict[str, Any]], *, check: bool = True
) -> Path:
    """A configuration with requestid (global), the upgrade check and one wildcard route
    /<Name>/* per action of ``actions`` (name -> WebSocketAction config), plus /hello."""
    plugins = private_plugins(plugin_dir, folder / "plugins")
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["plugins:"] + [f"  - path: {plugins}/{n}.so" for n in ("requestid", "static", "wsfw")]
    lines += [
        "middlewares:",
        "  RequestID:",
        "    use: plugins.requestid.middlewares.RequestIdMiddleware",
        "  Check:",
        f"    use: {CHECK}",
        "globalMiddlewares: [RequestID]",
        "actions:",
        "  Hello:",
        "    use: plugins.static.actions.StaticAction",
        "    config: {body: hello}",
    ]
    for name, config in actions.items():
        lines += [f"  {name}:", f"    use: {ACTION}", f"    config: {json.dumps(config)}"]
    lines += ["routes:", "  - path: /hello", "    method: GET", "    action: Hello"]
    for name in actions:
        lines += [
            f"  - path: /{name}/*",
            "    method: GET",
            f"    middlewares: [{'Check' if check else ''}]",
            f"    action: {name}",
        ]
    (folder / "gateway.yaml").write_text("\n".join(lines) + "\n")
    return folder / "gateway.yaml"


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    plugin_dir: Path,
    upstream: WsUpstream,
    mute: MuteUpstream,
    silent_port: int,
) -> Iterator[Server]:
    closed = free_port()
    config = write_gateway(
        tmp_path_factory.mktemp("wsfw"),
        plugin_dir,
        {
            "Echo": {"upstreamEndpoint": upstream.url + "/echo"},
            "Json": {"upstreamEndpoint": upstream.url + "/echo", "subprotocols": ["json"]},
            "Ping": {
                "upstreamEndpoint": upstream.url + "/echo",
                "pingInterval": "100ms",
                "pongTimeout": "2s",
            },
            "Mute": {"upstreamEndpoint": mute.url, "pingInterval": "150ms", "pongTimeout": "200ms"},
            "Idle": {"upstreamEndpoint": upstream.url + "/echo", "maxInactivity": "400ms"},
            "Small": {"upstreamEndpoint": upstream.url + "/echo", "maxMessageSize": 1024},
            "Origin": {
                "upstreamEndpoint": upstream.url + "/echo",
                "origins": ["https://app.example"],
            },
            "Refuse": {"upstreamEndpoint": upstream.url + "/refuse"},
            "Plain": {"upstreamEndpoint": upstream.url + "/plain"},
            "Closed": {"upstreamEndpoint": f"ws://127.0.0.1:{closed}"},
            "Hung": {
                "upstreamEndpoint": f"ws://127.0.0.1:{silent_port}",
                "handshakeTimeout": "300ms",
            },
        },
    )
    with Server("--config", str(config)) as server:
        yield server


def ws_url(server: Server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def refused(server: Server, path: str, **kwargs: Any) -> Any:
    """The HTTP response that refused a WebSocket handshake to ``path``."""
    with pytest.raises(InvalidStatus) as info:
        with connect(ws_url(server, path), open_timeout=10, **kwargs):
            pass
    return info.value.response


# ------------------------------------------------------------------ sessions


def test_text_and_binary_messages_are_relayed_both_ways(gateway: Server) -> None:
    with connect(ws_url(gateway, "/Echo/room"), open_timeout=10) as ws:
        for i in range(50):
            ws.send(f"message {i} é")
            assert ws.recv(timeout=5) == f"message {i} é"
        payload = bytes(range(256)) * 40
        ws.send(payload)
        assert ws.recv(timeout=5) == payload
        ws.send(b"")
        assert ws.recv(timeout=5) == b""


def test_many_sessions_at_once(gateway: Server) -> None:
    def session(n: int) -> list[str]:
        with connect(ws_url(gateway, f"/Echo/s{n}"), open_timeout=10) as ws:
            out = []
            for i in range(20):
                ws.send(f"{n}:{i}")
                out.append(ws.recv(timeout=10))
            return out

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(session, range(20)))
    assert results == [[f"{n}:{i}" for i in range(20)] for n in range(20)]


def test_the_handshake_goes_through_the_chain(gateway: Server) -> None:
    """The upstream gets the request's path (Seam's URL rule), query and headers with
    X-Forwarded-* and the request id; the client's 101 carries the response phase's
    headers (the request id)."""
    with connect(
        ws_url(gateway, "/Echo/rooms/./a/../b?x=%2F&y=1"),
        open_timeout=10,
        additional_headers={"X-Custom": "kept", "Cookie": "c=1", "X-Request-Id": "req-123"},
    ) as ws:
        ws.send("whoami")
        seen = json.loads(ws.recv(timeout=5))
        assert ws.response.status_code == 101
        assert ws.response.headers["X-Request-Id"] == "req-123"
    headers: dict[str, list[str]] = {}
    for k, v in seen["headers"]:
        headers.setdefault(k, []).append(v)
    assert seen["path"] == "/echo/rooms/b?x=%2F&y=1"
    assert headers["x-custom"] == ["kept"] and headers["cookie"] == ["c=1"]
    assert headers["x-request-id"] == ["req-123"]
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == [f"127.0.0.1:{gateway.port}"]
    assert headers["sec-websocket-key"] != [KEY] and len(headers["sec-websocket-key"]) == 1


def test_subprotocols(gateway: Server) -> None:
    # passed on as the client offered them; the upstream's choice reaches the client
    with connect(ws_url(gateway, "/Echo/p"), subprotocols=["v9", "chat"], open_timeout=10) as ws:
        assert ws.subprotocol == "chat"
        ws.send("whoami")
        assert json.loads(ws.recv(timeout=5))["protocol"] == "chat"
    # the action's own list is what the upstream is offered
    with connect(ws_url(gateway, "/Json/p"), subprotocols=["json", "chat"], open_timeout=10) as ws:
        ws.send("whoami")
        seen = json.loads(ws.recv(timeout=5))
        assert seen["protocol"] == "json" and ws.subprotocol == "json"
        assert ["sec-websocket-protocol", "json"] in seen["headers"]


def test_close_codes_pass_both_ways(gateway: Server, upstream: WsUpstream) -> None:
    with connect(ws_url(gateway, "/Echo/c"), open_timeout=10) as ws:
        ws.send("close:4001")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye")
    before = len(upstream.closes)
    with connect(ws_url(gateway, "/Echo/c"), open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        ws.close(code=4002, reason="done")
    deadline = time.monotonic() + 5
    while len(upstream.closes) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.closes[-1][0] == 4002


def test_the_upstream_is_pinged(gateway: Server, upstream: WsUpstream) -> None:
    before = upstream.pings
    with connect(ws_url(gateway, "/Ping/x"), open_timeout=10) as ws:
        time.sleep(0.75)
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"  # pongs came back: the session lives on
    assert upstream.pings - before >= 4


def test_an_upstream_that_does_not_answer_pings_is_dropped(
    gateway: Server, mute: MuteUpstream
) -> None:
    started = time.monotonic()
    with connect(ws_url(gateway, "/Mute/x"), open_timeout=10) as ws:
        ws.send("echo")
        assert ws.recv(timeout=5) == "echo"
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    assert "ping" in info.value.rcvd.reason and mute.pings >= 1
    assert time.monotonic() - started < 3


def test_an_idle_session_is_closed_and_an_active_one_is_not(gateway: Server) -> None:
    with connect(ws_url(gateway, "/Idle/x"), open_timeout=10) as ws:
        for i in range(8):  # 8 x 100 ms: twice the limit, never idle for 400 ms
            ws.send(str(i))
            assert ws.recv(timeout=5) == str(i)
            time.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "inactive")
    assert 0.2 < time.monotonic() - started < 2


def test_messages_over_max_message_size(gateway: Server) -> None:
    with connect(ws_url(gateway, "/Small/x"), open_timeout=10) as ws:
        ws.send("a" * 1000)
        assert ws.recv(timeout=5) == "a" * 1000
        ws.send("b" * 2000)  # from the client
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    with connect(ws_url(gateway, "/Small/x"), open_timeout=10) as ws:
        ws.send("big")  # the upstream answers 4096 bytes
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


# ------------------------------------------------------------------ refusals


def test_a_plain_request_gets_426(gateway: Server) -> None:
    status, headers, body = gateway.get("/Echo/x")
    assert status == 426
    assert headers["Upgrade"] == "websocket"
    # the error names the request by the id requestid gave it (the response phase ran)
    assert json.loads(body) == {
        "error": "upgrade required",
        "status": 426,
        "requestId": headers["X-Request-Id"],
    }


def test_origins(gateway: Server) -> None:
    with connect(
        ws_url(gateway, "/Origin/x"),
        origin="https://app.example",  # type: ignore[arg-type]
        open_timeout=10,
    ) as ws:
        ws.send("ok")
        assert ws.recv(timeout=5) == "ok"
    response = refused(gateway, "/Origin/x", origin="https://evil.example")
    assert response.status_code == 403
    answer = json.loads(response.body)
    assert answer == {
        "error": "origin not allowed",
        "status": 403,
        "requestId": answer["requestId"],
    }
    assert response.headers["X-Request-ID"] == answer["requestId"]
    assert refused(gateway, "/Origin/x").status_code == 403  # no Origin at all


def test_upstream_failures(gateway: Server) -> None:
    assert refused(gateway, "/Refuse/x").status_code == 403  # the upstream's own answer
    start = len(gateway.output())
    response = refused(gateway, "/Plain/x")
    assert response.status_code == 502
    assert json.loads(response.body)["status"] == 502
    response = refused(gateway, "/Closed/x")
    assert response.status_code == 502
    started = time.monotonic()
    response = refused(gateway, "/Hung/x")
    assert response.status_code == 504 and time.monotonic() - started < 3
    out = gateway.output_after(start, "instead of a WebSocket", "did not answer")
    assert "answered HTTP 200 instead of a WebSocket" in out
    assert "did not answer the WebSocket handshake within 0.3 s" in out
    # the gateway goes on serving
    assert gateway.get("/hello")[2] == b"hello" and gateway.alive()
    with connect(ws_url(gateway, "/Echo/after"), open_timeout=10) as ws:
        ws.send("alive")
        assert ws.recv(timeout=5) == "alive"


def test_no_route_no_websocket(gateway: Server) -> None:
    assert refused(gateway, "/nowhere").status_code == 404


def test_a_client_that_goes_away_mid_session(gateway: Server, upstream: WsUpstream) -> None:
    before = len(upstream.closes)
    with connect(ws_url(gateway, "/Echo/gone"), open_timeout=10) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the connection just drops
    deadline = time.monotonic() + 5
    while len(upstream.closes) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(upstream.closes) > before  # the upstream session was closed too
    assert gateway.get("/hello")[0] == 200


# ------------------------------------------------------------------ the upgrade check


def test_the_upgrade_check_in_process(
    tmp_path: Path, plugin_dir: Path, upstream: WsUpstream
) -> None:
    from plughost import Gateway

    config = write_gateway(tmp_path, plugin_dir, {"Echo": {"upstreamEndpoint": upstream.url}})
    good = {
        "Connection": "keep-alive, Upgrade",
        "Upgrade": "WebSocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": KEY,
    }
    with Gateway.from_config(config) as gw:

        def status(headers: dict[str, str], method: str = "GET") -> Any:
            return gw.handle(method, "/Echo/x", headers)

        # a good handshake passes the check; the action's WebSocket directive on a plain
        # (in-process, not upgraded) request is answered 426 by the host
        assert status(good).status == 426
        assert status({**good, "Connection": "keep-alive"}).status == 426
        assert status({**good, "Upgrade": "h2c"}).status == 426
        bad_version = status({**good, "Sec-WebSocket-Version": "8"})
        assert bad_version.status == 426
        assert (b"Sec-WebSocket-Version", b"13") in bad_version.headers
        for key in (
            "",
            "short",
            KEY[:-2] + "=X",
            "dGhlIHNhbXBsZSBub25jZR==",
            "é" * 24,
            "dGhlIHNhbXBsZSBub25jZQ",
        ):
            assert status({**good, "Sec-WebSocket-Key": key}).status == 400, key
        no_key = dict(good)
        del no_key["Sec-WebSocket-Key"]
        assert status(no_key).status == 400


def test_without_the_check_a_plain_request_gets_426_from_the_host(
    tmp_path: Path, plugin_dir: Path, upstream: WsUpstream
) -> None:
    config = write_gateway(
        tmp_path, plugin_dir, {"Echo": {"upstreamEndpoint": upstream.url}}, check=False
    )
    with Server("--config", str(config)) as server:
        status, headers, body = server.get("/Echo/x")
        assert status == 426 and headers["Upgrade"] == "websocket"
        with connect(ws_url(server, "/Echo/x"), open_timeout=10) as ws:
            ws.send("no check")
            assert ws.recv(timeout=5) == "no check"


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "config, key, words",
    [
        ({}, "upstreamEndpoint", f"'upstreamEndpoint' is missing, and {ACTION} needs it"),
        ({"upstreamEndpoint": ""}, "upstreamEndpoint", "is empty: give it a string"),
        (
            {"upstreamEndpoint": "http://127.0.0.1:8080/ws"},
            "upstreamEndpoint",
            "must be an absolute ws:// or wss:// URL",
        ),
        (
            {"upstreamEndpoint": "ws://127.0.0.1:8080/ws?x=1"},
            "upstreamEndpoint",
            "must not have a query",
        ),
        ({"upstreamEndpoint": "ws://127.0.0.1:99999"}, "upstreamEndpoint", "invalid port"),
        ({"upstreamEndpoint": "ws://h", "pongTimeout": "1s"}, "pongTimeout", "needs pingInterval"),
        (
            {"upstreamEndpoint": "ws://h", "pingInterval": "-1s"},
            "pingInterval",
            "cannot be negative",
        ),
        ({"upstreamEndpoint": "ws://h", "maxInactivity": "soon"}, "maxInactivity", "duration"),
        (
            {"upstreamEndpoint": "ws://h", "handshakeTimeout": 0},
            "handshakeTimeout",
            "it must be at least 1ms",
        ),
        (
            {"upstreamEndpoint": "ws://h", "subprotocols": ["ok", "not ok"]},
            "subprotocols",
            "entry 2 must be a subprotocol name",
        ),
        ({"upstreamEndpoint": "ws://h", "subprotocols": "chat"}, "subprotocols", "must be a list"),
        ({"upstreamEndpoint": "ws://h", "origins": [""]}, "origins", "entry 1 is empty"),
        (
            {"upstreamEndpoint": "ws://h", "maxMessageSize": 0},
            "maxMessageSize",
            "it must be at least 1",
        ),
        (
            {"upstreamEndpoint": "ws://h", "pingInterval": "1s", "pongInterval": "1s"},
            "pongInterval",
            "keep pingInterval",
        ),
        (
            {"upstreamEndpoint": "ws://h", "pingIntervall": "1s"},
            "pingIntervall",
            f"{ACTION} has no option 'pingIntervall': did you mean 'pingInterval'?",
        ),
        (
            {"upstreamEndpoint": "ws://h", "forwardedProto": "ftp"},
            "forwardedProto",
            "'forwardedProto' is 'ftp', not one of 'http' or 'https'",
        ),
        (
            {"upstreamEndpoint": "ws://h", "readBufferSize": "big"},
            "readBufferSize",
            "must be a whole number",
        ),
    ],
)
def test_configuration_errors(
    tmp_path: Path, plugin_dir: Path, config: dict[str, Any], key: str, words: str
) -> None:
    from plughost import Gateway

    path = write_gateway(tmp_path, plugin_dir, {"Bad": config})
    with pytest.raises(ConfigErrors) as info:
        Gateway.from_config(path)
    text = str(info.value)
    assert re.search(rf"gateway\.yaml:\d+: actions\.Bad\.config(\.{key})?", text), text
    assert words in text, text
    assert "Traceback" not in text


def test_the_check_takes_no_options(tmp_path: Path, plugin_dir: Path) -> None:
    from plughost import Gateway

    path = write_gateway(tmp_path, plugin_dir, {"Echo": {"upstreamEndpoint": "ws://h"}})
    path.write_text(
        path.read_text().replace(
            f"    use: {CHECK}\n", f"    use: {CHECK}\n    config: {{strict: true}}\n"
        )
    )
    with pytest.raises(ConfigErrors) as info:
        Gateway.from_config(path)
    assert "middlewares.Check.config.strict" in str(info.value)
    assert f"{CHECK} has no option 'strict': it takes no options" in str(info.value)


def test_option_names_are_checked_by_the_schema_and_ignore_case(
    tmp_path: Path, plugin_dir: Path
) -> None:
    from plughost import Gateway
    from plughost.serving.pipeline import Request

    # a misspelt option: refused before create runs, at its own file, line and key
    path = write_gateway(
        tmp_path / "typo",
        plugin_dir,
        {"Bad": {"upstreamEndpoint": "ws://h", "maxInactivty": "30s"}},
    )
    with pytest.raises(ConfigErrors) as info:
        Gateway.from_config(path)
    line = next(n for n, t in enumerate(path.read_text().splitlines(), 1) if "maxInactivty" in t)
    assert (
        f"{path}:{line}: actions.Bad.config.maxInactivty: {ACTION} has no option "
        "'maxInactivty': did you mean 'maxInactivity'?"
    ) in str(info.value), str(info.value)

    # the same options written in other case are accepted and take effect
    path = write_gateway(
        tmp_path / "case",
        plugin_dir,
        {
            "Case": {
                "UPSTREAMENDPOINT": "ws://chat.example:8080/ws",
                "pinginterval": "7s",
                "PongTimeout": "2s",
                "MAXINACTIVITY": "40s",
                "handshaketimeout": "3s",
                "SubProtocols": ["chat"],
            }
        },
    )
    with Gateway.from_config(path) as gw:
        chain = gw.route("GET", "/Case/room")[0]
        handshake = [
            (b"connection", b"Upgrade"),
            (b"upgrade", b"websocket"),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-key", KEY.encode()),
        ]
        pending = gw.pipeline.run(
            chain, b"*\0room", Request("GET", "/Case/room", handshake, b"", b"10.0.0.1")
        )
        up = pending.directive()
        pending.discard()
    assert up.websocket and up.url == "ws://chat.example:8080/ws/room"
    assert (up.ping_interval, up.pong_timeout, up.max_inactivity) == (7.0, 2.0, 40.0)
    assert up.connect_timeout == 3.0 and up.subprotocols == ("chat",)


def test_seams_options_and_the_pong_interval_key_of_seams_code(
    tmp_path: Path, plugin_dir: Path
) -> None:
    from plughost import Gateway
    from plughost.serving.pipeline import Request

    path = write_gateway(
        tmp_path,
        plugin_dir,
        {
            "Seam": {
                "upstreamEndpoint": "wss://chat.example:8443/ws",
                "pongInterval": "10s",
                "pongTimeout": "1s",
                "maxInactivity": "30s",
                "handshakeTimeout": "2s",
                "subprotocols": ["chat"],
                "origins": ["*"],
                "readBufferSize": 1024,
                "writeBufferSize": 1024,
                "enableCompression": True,
            }
        },
    )
    with Gateway.from_config(path) as gw:
        chain = gw.route("GET", "/Seam/room")[0]
        handshake = [
            (b"connection", b"Upgrade"),
            (b"upgrade", b"websocket"),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-key", KEY.encode()),
        ]
        pending = gw.pipeline.run(
            chain, b"*\0room", Request("GET", "/Seam/room", handshake, b"a=1", b"10.0.0.1")
        )
        up = pending.directive()
        pending.discard()
    assert up.websocket and up.url == "wss://chat.example:8443/ws/room?a=1"
    assert (up.ping_interval, up.pong_timeout, up.max_inactivity) == (10.0, 1.0, 30.0)
    assert up.connect_timeout == 2.0 and up.subprotocols == ("chat",)


def test_seams_example_configuration_unchanged(
    tmp_path: Path, plugin_dir: Path, upstream: WsUpstream
) -> None:
    """Seam's wsfw page, as written: only the plugin path and the upstream's address are
    this machine's."""
    config = tmp_path / "seam"
    shutil.copytree(SEAM / "wsfw", config)
    plugins = private_plugins(plugin_dir, tmp_path / "plugins")
    text = (config / "plugins.yaml").read_text()
    (config / "plugins.yaml").write_text(text.replace("/plugins/", f"{plugins}/"))
    actions = config / "actions.yaml"
    actions.write_text(actions.read_text().replace("ws://localhost:8080/ws", upstream.url + "/ws"))
    with Server("--config", str(config)) as server:
        with connect(ws_url(server, "/ws/chat"), open_timeout=10) as ws:
            ws.send("whoami")
            assert json.loads(ws.recv(timeout=5))["path"] == "/ws"
        assert server.get("/ws/chat")[0] == 426
