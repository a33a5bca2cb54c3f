"""Security at the edge: what plugins checked is what the upstream gets.

Over real HTTP with a real upstream, on the direct path and the ASGI path
(``--no-direct-path``): a request carrying a field that must appear once twice gets 400
before any plugin runs; header fields whose names hold "_" never reach the upstream unless
``allowUnderscoresInHeaders`` says so.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Iterator

import pytest

from gateway_support import both_paths, Server, UpstreamServer, write_config


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, test_plugin_dir: Path,
            upstream: UpstreamServer) -> Iterator[tuple[Server, Server]]:
    folder = write_config(tmp_path_factory.mktemp("edge") / "config", test_plugin_dir,
                          upstream=upstream.url)
    with both_paths(folder) as servers:
        yield servers


def send(port: int, path: str, fields: list[tuple[str, str]]) -> tuple[int, bytes]:
    """A GET with exactly these header fields (Host first); (status, body)."""
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + \
        "Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), body


@pytest.mark.parametrize("name", ["Authorization", "Host", "X-Request-ID",
                                  "Proxy-Authorization"])
@pytest.mark.parametrize("path", ["/", "/traced", "/proxy/x", "/users/7", "/nowhere"])
def test_a_field_that_must_appear_once_twice_is_400_on_both_paths(
        servers: tuple[Server, Server], name: str, path: str) -> None:
    fields = [("Host", "t"), (name, "Bearer good"), ("X-A", "1"), (name, "Bearer evil")]
    if name == "Host":
        fields = [("Host", "t"), ("X-A", "1"), ("Host", "evil")]
    answers = [send(server.port, path, fields) for server in servers]
    for status, body in answers:
        assert status == 400, (name, path, status, body)
        assert json.loads(body) == {"error": f"more than one {name.lower()} header",
                                    "status": 400}
    assert answers[0] == answers[1]


def test_one_of_each_is_forwarded(servers: tuple[Server, Server]) -> None:
    for server in servers:
        status, body = send(server.port, "/proxy/x", [("Host", "t"),
                                                      ("Authorization", "Bearer good"),
                                                      ("X-Request-ID", "rid-1")])
        assert status == 201
        seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
        assert seen["authorization"] == "Bearer good" and seen["x-request-id"] == "rid-1"


def test_header_names_with_underscores_are_dropped_on_both_paths(
        servers: tuple[Server, Server]) -> None:
    for server in servers:
        status, body = send(server.port, "/proxy/x", [("Host", "t"), ("X_User_Id", "admin"),
                                                      ("X-User_Id", "admin"),
                                                      ("X-Kept", "yes")])
        assert status == 201
        seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
        assert seen["x-kept"] == "yes"
        assert not [k for k in seen if "_" in k], seen


def test_underscores_can_be_allowed(tmp_path: Path, test_plugin_dir: Path,
                                    upstream: UpstreamServer) -> None:
    folder = write_config(tmp_path / "config", test_plugin_dir, upstream=upstream.url)
    (folder / "server.yaml").write_text("server:\n  allowUnderscoresInHeaders: true\n")
    with Server("--config", str(folder)) as server:
        status, body = send(server.port, "/proxy/x", [("Host", "t"), ("X_Legacy", "1")])
        assert status == 201
        seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
        assert seen.get("x_legacy") == "1"


def test_the_rule_holds_in_process_too(tmp_path: Path, test_plugin_dir: Path) -> None:
    from plughost import Gateway

    with Gateway.from_config(write_config(tmp_path / "config", test_plugin_dir)) as gateway:
        twice = gateway.handle("GET", "/traced", [("Authorization", "a"),
                                                   ("authorization", "b")])
        assert twice.status == 400 and b"more than one authorization header" in twice.body
        assert gateway.handle("GET", "/traced", [("Authorization", "a")]).status == 200


def httpfw_config(tmp_path: Path, plugin_dir: Path, upstream: str) -> Path:
    folder = write_config(tmp_path / "config", plugin_dir, upstream=upstream, extra_routes="""\
  Fw:
    gatewayPath: /fw/*
    methods: [GET]
    action: Fw
""")
    plugins = (folder / "plugins.yaml").read_text()
    (folder / "plugins.yaml").write_text(plugins + f"  - path: {plugin_dir / 'httpfw'}.so\n")
    actions = (folder / "actions.yaml").read_text()
    (folder / "actions.yaml").write_text(actions + f"""\
  Fw:
    use: plugins.httpfw.actions.HttpAction
    config:
      upstreamEndpoint: {upstream}
""")
    return folder


def test_a_connection_header_cannot_remove_what_the_gateway_adds(
        tmp_path: Path, test_plugin_dir: Path, upstream: UpstreamServer) -> None:
    """The client's Connection header names its own hop-by-hop fields: they go when the
    request arrives, and the X-Forwarded-* httpfw adds still reach the upstream."""
    folder = httpfw_config(tmp_path, test_plugin_dir, upstream.url)
    with both_paths(folder) as servers:
        for server in servers:
            status, body = send(server.port, "/fw/x", [
                ("Host", "gw.example"), ("X-Forwarded-For", "203.0.113.9"),
                ("X-Secret-Hop", "s"), ("X-Kept", "k"),
                ("Connection", "keep-alive, X-Forwarded-For, X-Forwarded-Host, "
                               "X-Forwarded-Proto, X-Secret-Hop")])
            assert status == 201, body
            seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
            assert seen["x-forwarded-for"] == "127.0.0.1", seen  # the gateway's, not gone
            assert seen["x-forwarded-host"] == "gw.example" and \
                seen["x-forwarded-proto"] == "http"
            assert "x-secret-hop" not in seen and seen["x-kept"] == "k"
    from plughost import Gateway

    with Gateway.from_config(folder) as gateway:  # in-process: the same rule
        response = gateway.handle("GET", "/fw/x", [("Connection", "X-Forwarded-For, X-Hop"),
                                                   ("X-Hop", "1")])
        seen = {k.lower(): v for k, v in json.loads(response.body)["headers"].items()}
        assert "x-forwarded-for" in seen and "x-hop" not in seen


def test_behind_a_trusted_appending_proxy_the_real_client_is_counted(
        tmp_path: Path, test_plugin_dir: Path) -> None:
    """An appending proxy (nginx's $proxy_add_x_forwarded_for) in front: the client writes
    X-Forwarded-For itself and the proxy adds the address it saw. Read from the right past
    the trusted proxies, the limiter counts that real client however the forged part varies;
    the logger records it too."""
    folder = write_config(tmp_path / "config", test_plugin_dir, extra_routes="""\
  Limited:
    gatewayPath: /limited
    methods: [GET]
    middlewares: [Limit]
    action: Echo
""")
    middlewares = (folder / "middlewares.yaml").read_text()
    (folder / "middlewares.yaml").write_text(middlewares.replace("globalMiddlewares:", """\
  Limit:
    use: plugins.limiter.middlewares.LimiterMiddleware
    config: {storage: Memory, maxConnections: 3, expiration: 1h}
globalMiddlewares:"""))
    plugins = (folder / "plugins.yaml").read_text()
    if "limiter.so" not in plugins:
        (folder / "plugins.yaml").write_text(plugins + f"  - path: {test_plugin_dir}/limiter.so\n")
    (folder / "server.yaml").write_text("""\
server:
  proxyHeader: X-Forwarded-For
  enableTrustedProxyCheck: true
  trustedProxies: [127.0.0.0/8, 10.0.0.0/8]
""")
    for serve_args in ((), ("--no-direct-path",)):
        with Server("--config", str(folder), *serve_args) as server:
            statuses, ips = [], []
            for n in range(10):
                status, body = send(server.port, "/limited", [
                    ("Host", "t"), ("X-Forwarded-For", f"203.0.113.{n}, 198.51.100.7, 10.0.0.2")])
                statuses.append(status)
                if status == 200:
                    ips.append(body.rsplit(b"ip=", 1)[1])
            assert statuses == [200] * 3 + [429] * 7, statuses
            assert ips == [b"198.51.100.7"] * 3
            # another real client behind the same proxy has its own count
            status, body = send(server.port, "/limited", [
                ("Host", "t"), ("X-Forwarded-For", "198.51.100.8")])
            assert status == 200 and body.endswith(b"ip=198.51.100.8")


def test_the_client_address_rule_reads_from_the_right() -> None:
    import ipaddress

    from plughost.serving.pipeline import ServingRules

    rules = ServingRules(proxy_header=b"x-forwarded-for",
                         trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    xff = [(b"x-forwarded-for", b"203.0.113.1, 198.51.100.7"), (b"x-forwarded-for", b"10.0.0.5")]
    assert rules.client_address(xff, b"10.0.0.9") == b"198.51.100.7"
    assert rules.client_address(xff, b"192.0.2.1") == b"192.0.2.1"  # untrusted peer
    all_trusted = [(b"x-forwarded-for", b"10.0.0.1, 10.0.0.2")]
    assert rules.client_address(all_trusted, b"10.0.0.9") == b"10.0.0.1"
    assert rules.client_address([], b"10.0.0.9") == b"10.0.0.9"


def test_plugins_info_lines_reach_the_log_at_info(tmp_path: Path, test_plugin_dir: Path) -> None:
    """jwt logs why it refused a token at info level; under `plughost serve` (its default
    --log-level info) that line is in the log, and at --log-level warning it is not."""
    folder = write_config(tmp_path / "config", test_plugin_dir, extra_routes="""\
  Secured:
    gatewayPath: /secured
    methods: [GET]
    middlewares: [Jwt]
    action: Echo
""")
    plugins = (folder / "plugins.yaml").read_text()
    (folder / "plugins.yaml").write_text(plugins + f"  - path: {test_plugin_dir}/jwt.so\n")
    middlewares = (folder / "middlewares.yaml").read_text()
    (folder / "middlewares.yaml").write_text(middlewares.replace("globalMiddlewares:", """\
  Jwt:
    use: plugins.jwt.middlewares.JWTValidationMiddleware
    config:
      signingKey: {algorithm: HS256, key: "a-secret-of-at-least-32-bytes-long!!"}
globalMiddlewares:"""))
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLW5vdC12YWxpZA"
    for level, shown in (("info", True), ("warning", False)):
        with Server("--config", str(folder), "--log-level", level) as server:
            status, _ = send(server.port, "/secured", [("Host", "t"),
                                                        ("Authorization", f"Bearer {token}")])
            assert status == 401
            out = server.output_after(0, "jwt: 401:", timeout=2 if shown else 0.5)
        assert ("jwt: 401: bad signature" in out) is shown, out


def test_header_bytes_reach_the_upstream_as_received(servers: tuple[Server, Server]) -> None:
    """A UTF-8 value goes upstream byte for byte (it once arrived as 'cafÃ©')."""
    for server in servers:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /proxy/x HTTP/1.1\r\nHost: t\r\nX-Name: caf\xc3\xa9\r\n"
                         b"X-Raw: \xff\xfe\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        body = data.partition(b"\r\n\r\n")[2]
        seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
        # the upstream (http.server) reads header bytes as latin-1: map them back
        assert seen["x-name"].encode("latin-1") == "café".encode()
        assert seen["x-raw"].encode("latin-1") == b"\xff\xfe"
