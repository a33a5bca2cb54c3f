"""Security at the edge: what plugins checked is what the upstream gets.

Over real HTTP with a real upstream, on the direct path and the ASGI path
(``--no-direct-path``): a request carrying a field that must appear once twice gets 400
before any plugin runs; header fields whose names hold "_" never reach the upstream unless
``allowUnderscoresInHeaders`` says so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from gateway_support import both_paths, Server, UpstreamServer, write_config
from valkey_support import command, ValkeyServer


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, test_plugin_dir: Path, upstream: UpstreamServer
) -> Iterator[tuple[Server, Server]]:
    folder = write_config(
        tmp_path_factory.mktemp("edge") / "config", test_plugin_dir, upstream=upstream.url
    )
    with both_paths(folder) as servers:
        yield servers


def exchange(
    port: int, method: str, path: str, fields: list[tuple[str, str]], body: bytes = b""
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request with exactly these header fields, on a connection of its own; (status,
    response header fields, body)."""
    if body:
        fields = [*fields, ("Content-Length", str(len(body)))]
    head = (
        f"{method} {path} HTTP/1.1\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in fields)
        + "Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, answer = data.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    answer_fields = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
    return int(status_line.split(" ", 2)[1]), answer_fields, answer


def upstream_saw(body: bytes) -> dict[str, str]:
    """The request headers the echoing upstream received (names lower-cased)."""
    return {k.lower(): v for k, v in json.loads(body)["headers"].items()}


def send(port: int, path: str, fields: list[tuple[str, str]]) -> tuple[int, bytes]:
    """A GET with exactly these header fields (Host first); (status, body)."""
    status, _, body = exchange(port, "GET", path, fields)
    return status, body


@pytest.mark.parametrize("name", ["Authorization", "Host", "X-Request-ID", "Proxy-Authorization"])
@pytest.mark.parametrize("path", ["/", "/traced", "/proxy/x", "/users/7", "/nowhere"])
def test_a_field_that_must_appear_once_twice_is_400_on_both_paths(
    servers: tuple[Server, Server], name: str, path: str
) -> None:
    fields = [("Host", "t"), (name, "Bearer good"), ("X-A", "1"), (name, "Bearer evil")]
    if name == "Host":
        fields = [("Host", "t"), ("X-A", "1"), ("Host", "evil")]
    answers = [send(server.port, path, fields) for server in servers]
    for status, body in answers:
        assert status == 400, (name, path, status, body)
        assert json.loads(body) == {"error": f"more than one {name.lower()} header", "status": 400}
    assert answers[0] == answers[1]


def test_one_of_each_is_forwarded(servers: tuple[Server, Server]) -> None:
    for server in servers:
        status, body = send(
            server.port,
            "/proxy/x",
            [("Host", "t"), ("Authorization", "Bearer good"), ("X-Request-ID", "rid-1")],
        )
        assert status == 201
        seen = upstream_saw(body)
        assert seen["authorization"] == "Bearer good" and seen["x-request-id"] == "rid-1"


def test_header_names_with_underscores_are_dropped_on_both_paths(
    servers: tuple[Server, Server],
) -> None:
    for server in servers:
        status, body = send(
            server.port,
            "/proxy/x",
            [("Host", "t"), ("X_User_Id", "admin"), ("X-User_Id", "admin"), ("X-Kept", "yes")],
        )
        assert status == 201
        seen = upstream_saw(body)
        assert seen["x-kept"] == "yes"
        assert not [k for k in seen if "_" in k], seen


def test_underscores_can_be_allowed(
    tmp_path: Path, test_plugin_dir: Path, upstream: UpstreamServer
) -> None:
    folder = write_config(tmp_path / "config", test_plugin_dir, upstream=upstream.url)
    (folder / "server.yaml").write_text("server:\n  allowUnderscoresInHeaders: true\n")
    with Server("--config", str(folder)) as server:
        status, body = send(server.port, "/proxy/x", [("Host", "t"), ("X_Legacy", "1")])
        assert status == 201
        seen = upstream_saw(body)
        assert seen.get("x_legacy") == "1"


def test_the_rule_holds_in_process_too(tmp_path: Path, test_plugin_dir: Path) -> None:
    from plughost import Gateway

    with Gateway.from_config(write_config(tmp_path / "config", test_plugin_dir)) as gateway:
        twice = gateway.handle("GET", "/traced", [("Authorization", "a"), ("authorization", "b")])
        assert twice.status == 400 and b"more than one authorization header" in twice.body
        assert gateway.handle("GET", "/traced", [("Authorization", "a")]).status == 200


def single_config(tmp_path: Path, plugin_dir: Path, names: list[str]) -> Path:
    folder = write_config(
        tmp_path / "config",
        plugin_dir,
        extra_routes="""\
  Single:
    gatewayPath: /single
    methods: [GET]
    middlewares: [Single]
    action: Echo
""",
    )
    middlewares = (folder / "middlewares.yaml").read_text()
    (folder / "middlewares.yaml").write_text(
        middlewares.replace(
            "globalMiddlewares:",
            f"""\
  Single:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {{name: S, single: {json.dumps(names)}}}
globalMiddlewares:""",
        )
    )
    return folder


def test_plugins_add_the_names_they_read_as_an_identity(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """A plugin declares the headers it reads as an identity (ph_require_single_header):
    a request carrying one twice gets 400 on every route of the gateway, on both paths and
    in-process; once, it goes through."""
    folder = single_config(tmp_path, test_plugin_dir, ["X-Api-Key", "x-tenant", "X-API-KEY"])
    with both_paths(folder) as servers:
        for server in servers:
            for path in ("/single", "/", "/traced", "/nowhere"):
                for name in ("X-Api-Key", "X-Tenant"):
                    status, body = send(
                        server.port, path, [("Host", "t"), (name, "a"), (name.upper(), "b")]
                    )
                    assert status == 400, (path, name, body)
                    assert json.loads(body)["error"] == f"more than one {name.lower()} header"
            assert (
                send(
                    server.port, "/single", [("Host", "t"), ("X-Api-Key", "a"), ("X-Tenant", "t")]
                )[0]
                == 200
            )
    from plughost import Gateway

    with Gateway.from_config(folder) as gateway:
        assert gateway.handle("GET", "/", [("X-Tenant", "a"), ("X-Tenant", "b")]).status == 400
        assert gateway.handle("GET", "/", [("X-Tenant", "a")]).status == 200


def test_a_single_header_that_is_no_header_name_is_a_configuration_error(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    from plughost.config import ConfigErrors

    from plughost import Gateway

    folder = single_config(tmp_path, test_plugin_dir, ["X-Fine", "bad name"])
    with pytest.raises(ConfigErrors) as info:
        Gateway.from_config(folder)
    text = str(info.value)
    assert "middlewares.Single.config" in text and "'bad name' is not a header name" in text


def httpfw_config(tmp_path: Path, plugin_dir: Path, upstream: str) -> Path:
    folder = write_config(
        tmp_path / "config",
        plugin_dir,
        upstream=upstream,
        extra_routes="""\
  Fw:
    gatewayPath: /fw/*
    methods: [GET]
    action: Fw
""",
    )
    plugins = (folder / "plugins.yaml").read_text()
    (folder / "plugins.yaml").write_text(plugins + f"  - path: {plugin_dir / 'httpfw'}.so\n")
    actions = (folder / "actions.yaml").read_text()
    (folder / "actions.yaml").write_text(
        actions
        + f"""\
  Fw:
    use: plugins.httpfw.actions.HttpAction
    config:
      upstreamEndpoint: {upstream}
"""
    )
    return folder


def test_a_connection_header_cannot_remove_what_the_gateway_adds(
    tmp_path: Path, test_plugin_dir: Path, upstream: UpstreamServer
) -> None:
    """The client's Connection header names its own hop-by-hop fields: they go when the
    request arrives, and the X-Forwarded-* httpfw adds still reach the upstream."""
    folder = httpfw_config(tmp_path, test_plugin_dir, upstream.url)
    with both_paths(folder) as servers:
        for server in servers:
            status, body = send(
                server.port,
                "/fw/x",
                [
                    ("Host", "gw.example"),
                    ("X-Forwarded-For", "203.0.113.9"),
                    ("X-Secret-Hop", "s"),
                    ("X-Kept", "k"),
                    (
                        "Connection",
                        "keep-alive, X-Forwarded-For, X-Forwarded-Host, "
                        "X-Forwarded-Proto, X-Secret-Hop",
                    ),
                ],
            )
            assert status == 201, body
            seen = upstream_saw(body)
            assert seen["x-forwarded-for"] == "127.0.0.1", seen  # the gateway's, not gone
            assert seen["x-forwarded-host"] == "gw.example" and seen["x-forwarded-proto"] == "http"
            assert "x-secret-hop" not in seen and seen["x-kept"] == "k"
    from plughost import Gateway

    with Gateway.from_config(folder) as gateway:  # in-process: the same rule
        response = gateway.handle(
            "GET", "/fw/x", [("Connection", "X-Forwarded-For, X-Hop"), ("X-Hop", "1")]
        )
        seen = upstream_saw(response.body)
        assert "x-forwarded-for" in seen and "x-hop" not in seen


def test_behind_a_trusted_appending_proxy_the_real_client_is_counted(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """An appending proxy (nginx's $proxy_add_x_forwarded_for) in front: the client writes
    X-Forwarded-For itself and the proxy adds the address it saw. Read from the right past
    the trusted proxies, the limiter counts that real client however the forged part varies;
    the logger records it too."""
    folder = write_config(
        tmp_path / "config",
        test_plugin_dir,
        extra_routes="""\
  Limited:
    gatewayPath: /limited
    methods: [GET]
    middlewares: [Log, Limit]
    action: Echo
""",
    )
    log = tmp_path / "access.log"
    middlewares = (folder / "middlewares.yaml").read_text()
    (folder / "middlewares.yaml").write_text(
        middlewares.replace(
            "globalMiddlewares:",
            f"""\
  Limit:
    use: plugins.limiter.middlewares.LimiterMiddleware
    config: {{storage: Memory, maxConnections: 3, expiration: 1h}}
  Log:
    use: plugins.logger.middlewares.LoggerMiddleware
    config: {{format: "${{ip}} ${{status}}", output: "{log}"}}
globalMiddlewares:""",
        )
    )
    plugins = (folder / "plugins.yaml").read_text()
    (folder / "plugins.yaml").write_text(
        plugins
        + "".join(f"  - path: {test_plugin_dir}/{name}.so\n" for name in ("limiter", "logger"))
    )
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
                status, body = send(
                    server.port,
                    "/limited",
                    [("Host", "t"), ("X-Forwarded-For", f"203.0.113.{n}, 198.51.100.7, 10.0.0.2")],
                )
                statuses.append(status)
                if status == 200:
                    ips.append(body.rsplit(b"ip=", 1)[1])
            assert statuses == [200] * 3 + [429] * 7, statuses
            assert ips == [b"198.51.100.7"] * 3
            deadline = time.monotonic() + 5  # the logger writes from its own thread
            while (
                not log.exists() or log.read_text().count("\n") < 10
            ) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert (
                log.read_text().splitlines() == ["198.51.100.7 200"] * 3 + ["198.51.100.7 429"] * 7
            )
            log.unlink()
            # another real client behind the same proxy has its own count
            status, body = send(
                server.port, "/limited", [("Host", "t"), ("X-Forwarded-For", "198.51.100.8")]
            )
            assert status == 200 and body.endswith(b"ip=198.51.100.8")


def test_the_client_address_rule_reads_from_the_right() -> None:
    import ipaddress

    from plughost.serving.pipeline import ServingRules

    rules = ServingRules(
        proxy_header=b"x-forwarded-for", trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),)
    )
    xff = [(b"x-forwarded-for", b"203.0.113.1, 198.51.100.7"), (b"x-forwarded-for", b"10.0.0.5")]
    assert rules.client_address(xff, b"10.0.0.9") == b"198.51.100.7"
    assert rules.client_address(xff, b"192.0.2.1") == b"192.0.2.1"  # untrusted peer
    all_trusted = [(b"x-forwarded-for", b"10.0.0.1, 10.0.0.2")]
    assert rules.client_address(all_trusted, b"10.0.0.9") == b"10.0.0.1"
    assert rules.client_address([], b"10.0.0.9") == b"10.0.0.9"


def test_plugins_info_lines_reach_the_log_at_info(tmp_path: Path, test_plugin_dir: Path) -> None:
    """jwt logs why it refused a token at info level; under `plughost serve` (its default
    --log-level info) that line is in the log, and at --log-level warning it is not."""
    folder = write_config(
        tmp_path / "config",
        test_plugin_dir,
        extra_routes="""\
  Secured:
    gatewayPath: /secured
    methods: [GET]
    middlewares: [Jwt]
    action: Echo
""",
    )
    plugins = (folder / "plugins.yaml").read_text()
    (folder / "plugins.yaml").write_text(plugins + f"  - path: {test_plugin_dir}/jwt.so\n")
    middlewares = (folder / "middlewares.yaml").read_text()
    (folder / "middlewares.yaml").write_text(
        middlewares.replace(
            "globalMiddlewares:",
            """\
  Jwt:
    use: plugins.jwt.middlewares.JWTValidationMiddleware
    config:
      signingKey: {algorithm: HS256, key: "a-secret-of-at-least-32-bytes-long!!"}
globalMiddlewares:""",
        )
    )
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLW5vdC12YWxpZA"
    for level, shown in (("info", True), ("warning", False)):
        with Server("--config", str(folder), "--log-level", level) as server:
            status, _ = send(
                server.port, "/secured", [("Host", "t"), ("Authorization", f"Bearer {token}")]
            )
            assert status == 401
            out = server.output_after(0, "jwt: 401:", timeout=2 if shown else 0.5)
        assert ("jwt: 401: bad signature" in out) is shown, out


def test_header_bytes_reach_the_upstream_as_received(servers: tuple[Server, Server]) -> None:
    """A UTF-8 value goes upstream byte for byte (it once arrived as 'cafÃ©')."""
    for server in servers:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"GET /proxy/x HTTP/1.1\r\nHost: t\r\nX-Name: caf\xc3\xa9\r\n"
                b"X-Raw: \xff\xfe\r\nConnection: close\r\n\r\n"
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        body = data.partition(b"\r\n\r\n")[2]
        seen = upstream_saw(body)
        # the upstream (http.server) reads header bytes as latin-1: map them back
        assert seen["x-name"].encode("latin-1") == "café".encode()
        assert seen["x-raw"].encode("latin-1") == b"\xff\xfe"


# ----------------------------------------------------------------------------------------
# The review's numbered cases, replayed over HTTP: one configuration with every plugin they
# involve, forwarding with httpfw to a real upstream, served on both paths.

SECRET = "a-secret-of-at-least-32-bytes-long!!"


def b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def hs256(claims: dict[str, object]) -> str:
    signed = f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url(claims)}"
    mac = hmac.new(SECRET.encode(), signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def review_config(folder: Path, plugin_dir: Path, upstream: str, valkey_port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = (
        "memory",
        "valkey",
        "requestid",
        "helmet",
        "jwt",
        "basicauth",
        "session",
        "csrf",
        "limiter",
        "httpfw",
    )
    (folder / "plugins.yaml").write_text(
        "plugins:\n" + "".join(f"  - path: {plugin_dir / name}.so\n" for name in names)
    )
    (folder / "server.yaml").write_text("""\
server:
  proxyHeader: X-Forwarded-For
  enableTrustedProxyCheck: true
  trustedProxies: [127.0.0.0/8]
  allowUnderscoresInHeaders: true
""")
    (folder / "storages.yaml").write_text(f"""\
storages:
  Small:
    use: plugins.memory.storages.MemoryStorage
    config: {{maxEntries: 30}}
  Counters:
    use: plugins.memory.storages.MemoryStorage
  Shared:
    use: plugins.valkey.storages.ValkeyStorage
    config: {{port: {valkey_port}, prefix: 'review:'}}
""")
    (folder / "middlewares.yaml").write_text(f"""\
middlewares:
  RequestID: {{use: plugins.requestid.middlewares.RequestIdMiddleware}}
  Helmet: {{use: plugins.helmet.middlewares.HelmetMiddleware}}
  Jwt:
    use: plugins.jwt.middlewares.JWTValidationMiddleware
    config: {{signingKey: {{algorithm: HS256, key: "{SECRET}"}}}}
  Basic:
    use: plugins.basicauth.middlewares.BasicAuthMiddleware
    config: {{users: {{alice: wonderland}}}}
  Load:
    use: plugins.session.middlewares.LoadSessionMiddleware
    config: {{storage: Small}}
  LoadShared:
    use: plugins.session.middlewares.LoadSessionMiddleware
    config: {{storage: Shared}}
  Map:
    use: plugins.session.middlewares.MapSessionToHeaderMiddleware
    config: {{headers: {{X-User-Id: user_id}}}}
  Csrf:
    use: plugins.csrf.middlewares.CSRFMiddleware
    config: {{storage: Small, maxTokensPerClient: 20}}
  Keyed:
    use: plugins.limiter.middlewares.LimiterMiddleware
    config: {{storage: Counters, key: "header:X-API-Key", maxConnections: 3, expiration: 1h}}
globalMiddlewares: [RequestID, Helmet]
""")
    (folder / "actions.yaml").write_text(f"""\
actions:
  Up:
    use: plugins.httpfw.actions.HttpAction
    config: {{upstreamEndpoint: "{upstream}"}}
""")
    routes = {
        "Jwt": ("/jwt/*", "Jwt"),
        "Basic": ("/basic/*", "Basic"),
        "Session": ("/session/*", "Load, Map"),
        "Shared": ("/shared/*", "LoadShared, Map"),
        "Csrf": ("/csrf/*", "Csrf"),
        "Keyed": ("/keyed/*", "Keyed"),
    }
    (folder / "routes.yaml").write_text(
        "routes:\n"
        + "".join(
            f"  {name}:\n    gatewayPath: {path}\n    methods: [GET, POST]\n"
            f"    middlewares: [{chain}]\n    action: Up\n"
            for name, (path, chain) in routes.items()
        )
    )
    return folder


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    with ValkeyServer(tmp_path_factory.mktemp("valkey")) as server:
        yield server


@pytest.fixture(scope="module")
def review(
    tmp_path_factory: pytest.TempPathFactory,
    test_plugin_dir: Path,
    upstream: UpstreamServer,
    valkey: ValkeyServer,
) -> Iterator[tuple[Server, Server]]:
    folder = review_config(
        tmp_path_factory.mktemp("review") / "config", test_plugin_dir, upstream.url, valkey.port
    )
    with both_paths(folder) as servers:
        yield servers


def field(fields: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in fields if k.lower() == name.lower()]


def test_case_1_a_second_credential_never_reaches_the_upstream(
    review: tuple[Server, Server], upstream: UpstreamServer
) -> None:
    """A valid token followed by an unsigned alg:none one claiming admin; valid Basic
    credentials followed by others; two request ids: 400, and the upstream sees nothing."""
    valid = hs256({"sub": "alice", "exp": int(time.time()) + 600})
    forged = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url({'sub': 'admin'})}."
    basic = "Basic " + base64.b64encode(b"alice:wonderland").decode()
    cases = [
        ("/jwt/x", "Authorization", f"Bearer {valid}", f"Bearer {forged}"),
        ("/basic/x", "Authorization", basic, "Basic " + base64.b64encode(b"admin:x").decode()),
        ("/session/x", "X-Request-ID", "rid-1", "rid-2"),
        # the limiter's key: declared single by the limiter, so on every route
        ("/keyed/x", "X-API-Key", "k1", "k2"),
        ("/jwt/x", "X-API-Key", "k1", "k2"),
    ]
    for server in review:
        for path, name, first, second in cases:
            before = upstream.requests
            status, _, body = exchange(
                server.port, "GET", path, [("Host", "t"), (name, first), (name, second)]
            )
            assert (status, upstream.requests) == (400, before), (server.proc.args, path, body)
            # one of them alone: checked, and forwarded exactly once
            status, _, body = exchange(server.port, "GET", path, [("Host", "t"), (name, first)])
            if path == "/jwt/x" and name == "X-API-Key":
                assert status == 401  # (no token)
                continue
            assert status == 201, (path, body)
            assert upstream_saw(body)[name.lower()] == first
        status, _, _ = exchange(
            server.port, "GET", "/jwt/x", [("Host", "t"), ("Authorization", f"Bearer {forged}")]
        )
        assert status == 401


def test_case_4_anonymous_floods_leave_session_and_csrf_routes_answering(
    review: tuple[Server, Server], valkey: ValkeyServer
) -> None:
    """10x maxEntries (30) cookieless requests to a session route and to a csrf route:
    sessions store nothing, csrf at most maxTokensPerClient for the flooding address;
    returning visitors and new ones are answered as before the flood."""
    for server in review:
        port = server.port
        # before the flood: a csrf visitor with a token, a logged-in session in Valkey
        _, fields, _ = exchange(port, "GET", "/csrf/form", [("Host", "t")])
        token = field(fields, "Set-Cookie")[0].split(";")[0].split("=", 1)[1]
        _, fields, _ = exchange(port, "GET", "/shared/x", [("Host", "t")])
        sid = field(fields, "Set-Cookie")[0].split(";")[0].split("=", 1)[1]
        key = f"review:session:{sid}".encode()
        issued = b"__issued=%d&user_id=42" % (time.time() * 1000)
        assert command(valkey.port, b"SET", key, issued, b"EX", b"600") == b"+OK\r\n"
        keys_before = int(command(valkey.port, b"DBSIZE")[1:])

        flood = [("Host", "t"), ("X-Forwarded-For", "198.51.100.1")]
        for path in ("/session/x", "/shared/x", "/csrf/form"):
            statuses = {exchange(port, "GET", path, flood)[0] for _ in range(300)}
            assert statuses == {201}, (server.proc.args, path, statuses)
        assert int(command(valkey.port, b"DBSIZE")[1:]) == keys_before  # not one key more

        cookie = ("Cookie", f"csrf_token={token}")
        status, fields, _ = exchange(port, "GET", "/csrf/form", [("Host", "t"), cookie])
        assert status == 201 and token in field(fields, "Set-Cookie")[0]
        status, _, _ = exchange(
            port, "POST", "/csrf/form", [("Host", "t"), cookie, ("X-Csrf-Token", token)], b"a=1"
        )
        assert status == 201
        status, _, body = exchange(
            port, "GET", "/shared/x", [("Host", "t"), ("Cookie", f"session_id={sid}")]
        )
        assert status == 201 and upstream_saw(body)["x-user-id"] == "42"
        newcomer = [("Host", "t"), ("X-Forwarded-For", "203.0.113.5")]
        for path in ("/session/x", "/csrf/form"):
            status, fields, _ = exchange(port, "GET", path, newcomer)
            assert status == 201 and field(fields, "Set-Cookie"), (path, fields)


def test_case_5_no_spelling_of_a_mapped_header_gets_through(
    review: tuple[Server, Server], valkey: ValkeyServer
) -> None:
    """With underscores allowed by the server, MapSessionToHeader still removes every
    spelling of X-User-Id the client sent, and sets the session's value."""
    sid = "5" * 32
    command(
        valkey.port,
        b"SET",
        f"review:session:{sid}".encode(),
        b"__issued=%d&user_id=42" % (time.time() * 1000),
        b"EX",
        b"60",
    )
    forged = [
        ("X_User_Id", "admin"),
        ("X-User_Id", "admin"),
        ("x-user-id", "admin"),
        ("X_Other", "kept"),
    ]
    for server in review:
        status, _, body = exchange(server.port, "GET", "/session/x", [("Host", "t"), *forged])
        seen = upstream_saw(body)
        assert status == 201 and seen["x_other"] == "kept"
        assert not [k for k in seen if k.replace("_", "-") == "x-user-id"], seen
        status, _, body = exchange(
            server.port,
            "GET",
            "/shared/x",
            [("Host", "t"), ("Cookie", f"session_id={sid}"), *forged],
        )
        seen = upstream_saw(body)
        assert [k for k in seen if k.replace("_", "-") == "x-user-id"] == ["x-user-id"], seen
        assert seen["x-user-id"] == "42"


def test_case_6_header_keys_cannot_spend_an_address_budget(review: tuple[Server, Server]) -> None:
    for server in review:
        statuses = [
            exchange(server.port, "GET", "/keyed/x", [("Host", "t"), ("X-API-Key", "127.0.0.1")])[0]
            for _ in range(4)
        ]
        assert statuses == [201, 201, 201, 429]
        assert exchange(server.port, "GET", "/keyed/x", [("Host", "t")])[0] == 201


def test_case_6_helmet_headers_are_on_404_and_405(review: tuple[Server, Server]) -> None:
    """As helmet's page says: the global middlewares run on the gateway's own answers."""
    for server in review:
        for method, path, expected in (("GET", "/nowhere", 404), ("PUT", "/jwt/x", 405)):
            status, fields, _ = exchange(server.port, method, path, [("Host", "t")])
            assert status == expected
            assert field(fields, "X-Content-Type-Options") == ["nosniff"], fields
