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

from gateway_support import Server, UpstreamServer, write_config


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, test_plugin_dir: Path,
            upstream: UpstreamServer) -> Iterator[tuple[Server, Server]]:
    folder = write_config(tmp_path_factory.mktemp("edge") / "config", test_plugin_dir,
                          upstream=upstream.url)
    with Server("--config", str(folder)) as direct, \
            Server("--config", str(folder), "--no-direct-path") as asgi:
        yield direct, asgi


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
    with Server("--config", str(folder)) as direct, \
            Server("--config", str(folder), "--no-direct-path") as asgi:
        for server in (direct, asgi):
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
