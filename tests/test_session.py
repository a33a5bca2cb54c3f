"""The session plugin (plugins.session.middlewares.LoadSessionMiddleware and
MapSessionToHeaderMiddleware): in-process with the memory storage and with a real Valkey,
forwarding to a real upstream that echoes the headers it received."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from plughost.errors import ConfigError
from plughost.gateway import Gateway

from gateway_support import UpstreamServer
from valkey_support import ValkeyServer, command

LOAD = "plugins.session.middlewares.LoadSessionMiddleware"
MAP = "plugins.session.middlewares.MapSessionToHeaderMiddleware"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def headers(response: Any, name: str) -> list[str]:
    return [v.decode("latin-1") for k, v in response.headers if k.lower() == name.lower().encode()]


def set_cookie(response: Any) -> str:
    found = headers(response, "Set-Cookie")
    assert len(found) == 1, found
    return found[0]


def cookie_id(cookie: str, name: str = "session_id") -> str:
    first = cookie.split(";")[0]
    key, _, value = first.partition("=")
    assert key == name
    assert HEX32.match(value), value
    return value


def session_config(folder: Path, plugin_dir: Path, upstream: str, load: dict[str, Any], *,
                   mapping: dict[str, Any] | None = None, valkey_port: int | None = None,
                   ) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    plugins = ["memory", "valkey", "trace", "session"]
    (folder / "plugins.yaml").write_text("plugins:\n" + "".join(
        f"  - path: {plugin_dir / name}.so\n" for name in plugins))
    storages = "storages:\n  Sessions:\n    use: plugins.memory.storages.MemoryStorage\n"
    if valkey_port is not None:
        storages += ("  Valkey:\n    use: plugins.valkey.storages.ValkeyStorage\n"
                     f"    config: {{port: {valkey_port}, prefix: 'st:', "
                     "connectTimeout: 500ms, commandTimeout: 500ms}\n")
    (folder / "storages.yaml").write_text(storages)
    mapping = mapping if mapping is not None else {"headers": {"X-User-Id": "user_id",
                                                               "X-Role": "role"}}
    (folder / "middlewares.yaml").write_text(
        "middlewares:\n"
        f"  Load:\n    use: {LOAD}\n    config: {json.dumps(load)}\n"
        f"  Map:\n    use: {MAP}\n    config: {json.dumps(mapping)}\n")
    (folder / "actions.yaml").write_text(
        f"actions:\n  Forward:\n    use: plugins.trace.actions.ForwardAction\n"
        f"    config: {{url: '{upstream}', timeout: 2s}}\n")
    (folder / "routes.yaml").write_text("""\
routes:
  App:
    gatewayPath: /app/*
    methods: [GET]
    middlewares: [Load, Map]
    action: Forward
""")
    return folder


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture
def make(tmp_path: Path, test_plugin_dir: Path, upstream: UpstreamServer) -> Iterator[Any]:
    opened: list[Gateway] = []

    def build(load: dict[str, Any], **kwargs: Any) -> Gateway:
        folder = session_config(tmp_path / f"config{len(opened)}", test_plugin_dir,
                                upstream.url, load, **kwargs)
        gw = Gateway.from_config(folder)
        opened.append(gw)
        return gw

    yield build
    for gw in opened:
        gw.close()


def received(response: Any) -> dict[str, str]:
    """The request headers the upstream received (names lower-cased)."""
    assert response.status == 201, (response.status, response.body)
    return {k.lower(): v for k, v in json.loads(response.body)["headers"].items()}


def test_new_session_gets_cookie_with_seam_defaults(make: Any) -> None:
    gw = make({"storage": "Sessions"})
    r = gw.handle("GET", "/app/x")
    cookie = set_cookie(r)
    sid = cookie_id(cookie)
    attrs = [a.strip() for a in cookie.split(";")[1:]]
    assert "Max-Age=7200" in attrs  # cookieExpiration 2h
    assert any(a.startswith("Expires=") and a.endswith("GMT") for a in attrs)
    assert "Path=/" in attrs and "SameSite=Lax" in attrs
    assert "Secure" not in attrs and "HttpOnly" not in attrs
    assert not any(a.startswith("Domain=") for a in attrs)
    # the new session exists in the storage, with empty data
    assert gw.storage("Sessions").get(f"session:{sid}".encode()) == b""


def test_cookie_attributes(make: Any) -> None:
    gw = make({"storage": "Sessions", "keyLookup": "cookie:sid", "cookieDomain": "example.com",
               "cookiePath": "/app", "cookieSecure": True, "cookieHTTPOnly": True,
               "cookieSameSite": "strict", "cookieExpiration": "90s"})
    cookie = set_cookie(gw.handle("GET", "/app/x"))
    cookie_id(cookie, "sid")
    attrs = [a.strip() for a in cookie.split(";")[1:]]
    for a in ("Max-Age=90", "Domain=example.com", "Path=/app", "Secure", "HttpOnly",
              "SameSite=Strict"):
        assert a in attrs, (a, cookie)


def test_session_only_cookie_has_no_expiry(make: Any) -> None:
    gw = make({"storage": "Sessions", "cookieSessionOnly": True})
    cookie = set_cookie(gw.handle("GET", "/app/x"))
    assert "Max-Age" not in cookie and "Expires" not in cookie


def test_same_session_is_loaded_and_mapped_to_headers(make: Any) -> None:
    gw = make({"storage": "Sessions"})
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    store = gw.storage("Sessions")
    store.set(f"session:{sid}".encode(), b"user_id=42&role=admin+user&note=a%26b%3Dc")
    r = gw.handle("GET", "/app/y", {"Cookie": f"theme=dark; session_id={sid}",
                                    "X-Role": "forged"})
    got = received(r)
    assert got["x-user-id"] == "42"
    assert got["x-role"] == "admin user"
    # the TTL was refreshed with the same data; the cookie slides with it
    assert store.get(f"session:{sid}".encode()) == b"user_id=42&role=admin+user&note=a%26b%3Dc"
    assert cookie_id(set_cookie(r)) == sid


def test_missing_session_key_removes_client_header(make: Any) -> None:
    gw = make({"storage": "Sessions"})
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    gw.storage("Sessions").set(f"session:{sid}".encode(), b"user_id=7")
    got = received(gw.handle("GET", "/app/y", {"Cookie": f"session_id={sid}",
                                               "X-Role": "forged"}))
    assert got["x-user-id"] == "7"
    assert "x-role" not in got
    # without a session, nothing the client sent gets through either
    got = received(gw.handle("GET", "/app/y", {"X-User-Id": "1"}))
    assert "x-user-id" not in got


@pytest.mark.parametrize("value", ["garbage", "0" * 32, "A" * 32, "ab" * 17, ""])
def test_unknown_or_garbage_cookie_gets_new_session(make: Any, value: str) -> None:
    gw = make({"storage": "Sessions"})
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={value}"})
    sid = cookie_id(set_cookie(r))
    assert sid != value
    assert gw.storage("Sessions").get(f"session:{sid}".encode()) == b""
    assert gw.storage("Sessions").get(f"session:{value}".encode()) is None


def test_ids_are_random(make: Any) -> None:
    gw = make({"storage": "Sessions"})
    ids = {cookie_id(set_cookie(gw.handle("GET", "/app/x"))) for _ in range(50)}
    assert len(ids) == 50


def test_disable_auto_renew_sends_cookie_only_once(make: Any) -> None:
    gw = make({"storage": "Sessions", "disableAutoRenew": True})
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={sid}"})
    assert headers(r, "Set-Cookie") == []


def test_disable_session_forward(make: Any) -> None:
    gw = make({"storage": "Sessions", "disableSessionForward": True})
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    gw.storage("Sessions").set(f"session:{sid}".encode(), b"user_id=42")
    got = received(gw.handle("GET", "/app/y", {"Cookie": f"session_id={sid}"}))
    assert "x-user-id" not in got


def test_header_key_lookup(make: Any) -> None:
    gw = make({"storage": "Sessions", "keyLookup": "header:X-Session-Id"})
    r = gw.handle("GET", "/app/x")
    assert headers(r, "Set-Cookie") == []
    (sid,) = headers(r, "X-Session-Id")
    assert HEX32.match(sid)
    gw.storage("Sessions").set(f"session:{sid}".encode(), b"user_id=9")
    r = gw.handle("GET", "/app/y", {"X-Session-Id": sid})
    assert received(r)["x-user-id"] == "9"
    r = gw.handle("GET", "/app/y", {"Cookie": f"session_id={sid}"})  # cookie is not looked at
    assert "x-user-id" not in received(r)
    assert headers(r, "X-Session-Id")[0] != sid


def test_expired_session_gets_new_one(make: Any) -> None:
    gw = make({"storage": "Sessions"})
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    assert gw.storage("Sessions").delete(f"session:{sid}".encode())
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={sid}"})
    assert cookie_id(set_cookie(r)) != sid


@pytest.mark.parametrize("load, mapping, words", [
    ({}, None, ["storage", "is required"]),
    ({"storage": "Nope"}, None, ["storage", "Nope"]),
    ({"storage": "Sessions", "keyLookup": "query:sid"}, None, ["keyLookup", "query:sid"]),
    ({"storage": "Sessions", "keyLookup": "cookie:"}, None, ["keyLookup", "cookie name"]),
    ({"storage": "Sessions", "keyLookup": "header:bad name"}, None, ["keyLookup", "header"]),
    ({"storage": "Sessions", "cookieSameSite": "Sometimes"}, None,
     ["cookieSameSite", "Sometimes"]),
    ({"storage": "Sessions", "cookieSameSite": "None"}, None, ["cookieSameSite", "cookieSecure"]),
    ({"storage": "Sessions", "cookieExpiration": 0}, None, ["cookieExpiration", "positive"]),
    ({"storage": "Sessions", "cookieExpiration": "soon"}, None, ["cookieExpiration"]),
    ({"storage": "Sessions", "cookiePath": "/a b"}, None, ["cookiePath"]),
    ({"storage": "Sessions", "cookieDomain": "ex ample.com"}, None, ["cookieDomain"]),
    ({"storage": "Sessions", "cookieSecure": "maybe"}, None, ["cookieSecure"]),
    ({"storage": "Sessions"}, {}, ["headers", "is required"]),
    ({"storage": "Sessions"}, {"headers": {"Bad Name": "x"}}, ["Bad Name", "header name"]),
    ({"storage": "Sessions"}, {"headers": {"X-A": ["x"]}}, ["X-A", "session key"]),
])
def test_config_errors_name_the_key(make: Any, load: dict[str, Any],
                                    mapping: dict[str, Any] | None, words: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        make(load, mapping=mapping)
    text = str(exc.value)
    for word in words:
        assert word in text, text


# ------------------------------------------------------------------------ valkey storage


def test_valkey_storage(make: Any, tmp_path: Path) -> None:
    with ValkeyServer(tmp_path / "valkey") as valkey:
        gw = make({"storage": "Valkey"}, valkey_port=valkey.port)
        sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
        store = gw.storage("Valkey")
        assert store.get(f"session:{sid}".encode()) == b""
        assert 7000 < int(command(valkey.port, b"TTL", f"st:session:{sid}".encode())[1:]) <= 7200
        store.set(f"session:{sid}".encode(), b"user_id=valkey%20user", ttl=60)
        got = received(gw.handle("GET", "/app/y", {"Cookie": f"session_id={sid}"}))
        assert got["x-user-id"] == "valkey user"
        # use refreshed the TTL to cookieExpiration (2h)
        assert 7000 < int(command(valkey.port, b"TTL", f"st:session:{sid}".encode())[1:]) <= 7200
        # a second gateway on the same Valkey sees the same session
        gw2 = make({"storage": "Valkey"}, valkey_port=valkey.port)
        got = received(gw2.handle("GET", "/app/y", {"Cookie": f"session_id={sid}"}))
        assert got["x-user-id"] == "valkey user"
        valkey.kill()
        r = gw.handle("GET", "/app/y", {"Cookie": f"session_id={sid}"})
        assert r.status == 503
        assert json.loads(r.body)["status"] == 503
