"""The session plugin (plugins.session.middlewares.LoadSessionMiddleware and
MapSessionToHeaderMiddleware): in-process with the memory storage and with a real Valkey,
forwarding to a real upstream that echoes the headers it received. Rotation tests use
durations of a second or less and sleep just past them."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from plughost.config import ConfigErrors
from plughost.errors import ConfigError
from plughost import Gateway

from gateway_support import UpstreamServer, gateways, header_values, set_cookie, storages_yaml
from valkey_support import ValkeyServer, command

LOAD = "plugins.session.middlewares.LoadSessionMiddleware"
MAP = "plugins.session.middlewares.MapSessionToHeaderMiddleware"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
ISSUED = re.compile(rb"^__issued=(\d+)(&|$)")


def issued_now(offset: float = 0.0) -> bytes:
    """The reserved entry that dates a stored session (Unix milliseconds)."""
    return b"__issued=%d" % round((time.time() + offset) * 1000)


def fresh(data: bytes) -> bytes:
    """A stored session value issued just now: loading it must not rotate or write."""
    return issued_now() + (b"&" + data if data else b"")


def assert_issued_now(value: bytes | None, data: bytes = b"") -> None:
    """value is "__issued=<about now>" followed by data."""
    assert value is not None
    m = ISSUED.match(value)
    assert m, value
    assert abs(int(m.group(1)) - time.time() * 1000) < 5000, value
    assert value[m.end(1) :] == (b"&" + data if data else b""), value


def cookie_id(cookie: str, name: str = "session_id") -> str:
    first = cookie.split(";")[0]
    key, _, value = first.partition("=")
    assert key == name
    assert HEX32.match(value), value
    return value


def session_config(
    folder: Path,
    plugin_dir: Path,
    upstream: str,
    load: dict[str, Any],
    *,
    mapping: dict[str, Any] | None = None,
    valkey_port: int | None = None,
    memory: dict[str, Any] | None = None,
    plugins: tuple[str, ...] = ("memory", "valkey", "trace", "session"),
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugins.yaml").write_text(
        "plugins:\n" + "".join(f"  - path: {plugin_dir / name}.so\n" for name in plugins)
    )
    (folder / "storages.yaml").write_text(
        storages_yaml("Sessions", memory, valkey_port=valkey_port)
    )
    mapping = (
        mapping if mapping is not None else {"headers": {"X-User-Id": "user_id", "X-Role": "role"}}
    )
    (folder / "middlewares.yaml").write_text(
        "middlewares:\n"
        f"  Load:\n    use: {LOAD}\n    config: {json.dumps(load)}\n"
        f"  Map:\n    use: {MAP}\n    config: {json.dumps(mapping)}\n"
    )
    (folder / "actions.yaml").write_text(
        f"actions:\n  Forward:\n    use: plugins.trace.actions.ForwardAction\n"
        f"    config: {{url: '{upstream}', timeout: 2s}}\n"
    )
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
    with gateways(tmp_path, session_config, test_plugin_dir, upstream.url) as build:
        yield build


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
    # nothing is stored for a session without data: anonymous requests cost no write
    assert gw.storage("Sessions").get(f"session:{sid}".encode()) is None
    # the client keeps its id: an empty session, still not stored, nothing sent again
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={sid}"})
    assert header_values(r, "Set-Cookie") == []
    assert gw.storage("Sessions").get(f"session:{sid}".encode()) is None


def test_anonymous_requests_store_nothing(make: Any) -> None:
    """A flood of cookieless requests, and of requests with made-up ids, leaves the storage
    empty: a MemoryStorage of 20 entries takes 300 of them and still holds a login."""
    gw = make({"storage": "Sessions"}, memory={"maxEntries": 20})
    store = gw.storage("Sessions")
    store.set(b"session:" + b"1" * 32, fresh(b"user_id=1"), ttl=60)
    for n in range(300):
        cookie = {} if n % 2 else {"Cookie": f"session_id={n:032x}"}
        assert gw.handle("GET", "/app/x", cookie).status == 201
    for n in range(19):  # every other entry still fits
        store.set(b"k%d" % n, b"v")  # raises when full
    got = received(gw.handle("GET", "/app/x", {"Cookie": "session_id=" + "1" * 32}))
    assert got["x-user-id"] == "1"


def test_data_written_under_a_client_id_rotates_it(make: Any) -> None:
    """The login flow: the application writes data under the id the request carried (which
    the gateway never stored); the next request moves the session to a new random id."""
    gw = make({"storage": "Sessions", "autoRenewGracePeriod": 0})
    store = gw.storage("Sessions")
    planted = "0" * 32  # even an id a client made up
    r = gw.handle("GET", "/app/login", {"Cookie": f"session_id={planted}"})
    assert header_values(r, "Set-Cookie") == [] and "x-user-id" not in received(r)
    store.set(f"session:{planted}".encode(), b"user_id=5", ttl=60)  # the application
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={planted}"})
    assert received(r)["x-user-id"] == "5"
    new = cookie_id(set_cookie(r))
    assert new != planted
    assert store.get(f"session:{planted}".encode()) is None
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={planted}"})
    assert "x-user-id" not in received(r)


def test_cookie_attributes(make: Any) -> None:
    gw = make(
        {
            "storage": "Sessions",
            "keyLookup": "cookie:sid",
            "cookieDomain": "example.com",
            "cookiePath": "/app",
            "cookieSecure": True,
            "cookieHTTPOnly": True,
            "cookieSameSite": "strict",
            "cookieExpiration": "90s",
            "autoRenewAfter": "60s",
        }
    )
    cookie = set_cookie(gw.handle("GET", "/app/x"))
    cookie_id(cookie, "sid")
    attrs = [a.strip() for a in cookie.split(";")[1:]]
    for a in (
        "Max-Age=90",
        "Domain=example.com",
        "Path=/app",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    ):
        assert a in attrs, (a, cookie)


def test_session_only_cookie_has_no_expiry(make: Any) -> None:
    gw = make({"storage": "Sessions", "cookieSessionOnly": True})
    cookie = set_cookie(gw.handle("GET", "/app/x"))
    assert "Max-Age" not in cookie and "Expires" not in cookie


def test_same_session_is_loaded_and_mapped_to_headers(make: Any) -> None:
    gw = make({"storage": "Sessions"})
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    store = gw.storage("Sessions")
    value = fresh(b"user_id=42&role=admin+user&note=a%26b%3Dc")
    store.set(f"session:{sid}".encode(), value)
    r = gw.handle("GET", "/app/y", {"Cookie": f"theme=dark; session_id={sid}", "X-Role": "forged"})
    got = received(r)
    assert got["x-user-id"] == "42"
    assert got["x-role"] == "admin user"
    # a session younger than autoRenewAfter is left alone: same value, no cookie
    assert store.get(f"session:{sid}".encode()) == value
    assert header_values(r, "Set-Cookie") == []


def test_missing_session_key_removes_client_header(make: Any) -> None:
    gw = make({"storage": "Sessions"})
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    gw.storage("Sessions").set(f"session:{sid}".encode(), fresh(b"user_id=7"))
    got = received(gw.handle("GET", "/app/y", {"Cookie": f"session_id={sid}", "X-Role": "forged"}))
    assert got["x-user-id"] == "7"
    assert "x-role" not in got
    # without a session, nothing the client sent gets through either
    got = received(gw.handle("GET", "/app/y", {"X-User-Id": "1"}))
    assert "x-user-id" not in got
    # nor under another spelling a CGI-style upstream reads as X-User-Id
    got = received(
        gw.handle(
            "GET",
            "/app/y",
            [("X_User_Id", "1"), ("x-user_id", "2"), ("X_USER-ID", "3"), ("X-Other_Name", "kept")],
        )
    )
    assert not [k for k in got if k.replace("_", "-") == "x-user-id"], got
    assert got["x-other_name"] == "kept"
    got = received(
        gw.handle("GET", "/app/y", [("Cookie", f"session_id={sid}"), ("X_User_Id", "forged")])
    )
    assert got["x-user-id"] == "7" and "x_user_id" not in got


@pytest.mark.parametrize("value", ["garbage", "A" * 32, "ab" * 17, "", "0" * 31 + "g"])
def test_garbage_cookie_gets_new_session(make: Any, value: str) -> None:
    gw = make({"storage": "Sessions"})
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={value}"})
    sid = cookie_id(set_cookie(r))
    assert sid != value
    assert gw.storage("Sessions").get(f"session:{sid}".encode()) is None
    assert gw.storage("Sessions").get(f"session:{value}".encode()) is None


def test_unknown_well_formed_id_is_an_empty_session(make: Any) -> None:
    gw = make({"storage": "Sessions"})
    r = gw.handle("GET", "/app/x", {"Cookie": "session_id=" + "0" * 32, "X-User-Id": "1"})
    assert header_values(r, "Set-Cookie") == []
    assert "x-user-id" not in received(r)
    assert gw.storage("Sessions").get(b"session:" + b"0" * 32) is None


def test_ids_are_random(make: Any) -> None:
    gw = make({"storage": "Sessions"})
    ids = {cookie_id(set_cookie(gw.handle("GET", "/app/x"))) for _ in range(50)}
    assert len(ids) == 50


def test_disable_auto_renew_sends_cookie_only_once(make: Any) -> None:
    gw = make({"storage": "Sessions", "disableAutoRenew": True})
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={sid}"})
    assert header_values(r, "Set-Cookie") == []


def test_disable_auto_renew_session_ends_after_cookie_expiration(make: Any) -> None:
    # autoRenewAfter (30m by default) is not checked against cookieExpiration: it is unused
    gw = make({"storage": "Sessions", "disableAutoRenew": True, "cookieExpiration": "1s"})
    store = gw.storage("Sessions")
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    store.set(f"session:{sid}".encode(), fresh(b"user_id=3"), ttl=1)
    time.sleep(0.5)
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={sid}"})
    assert received(r)["x-user-id"] == "3" and header_values(r, "Set-Cookie") == []
    time.sleep(0.6)  # 1.1 s after it was issued: gone, although it was used meanwhile
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={sid}"})
    assert "x-user-id" not in received(r)
    assert store.get(f"session:{sid}".encode()) is None  # and not stored again


def test_disable_auto_renew_loads_legacy_value_without_writing(make: Any) -> None:
    gw = make({"storage": "Sessions", "disableAutoRenew": True})
    store = gw.storage("Sessions")
    store.set(b"session:" + b"c" * 32, b"user_id=11", ttl=0.4)
    r = gw.handle("GET", "/app/x", {"Cookie": "session_id=" + "c" * 32})
    assert received(r)["x-user-id"] == "11"
    assert header_values(r, "Set-Cookie") == []
    time.sleep(0.5)  # the TTL was not refreshed: nothing was written
    assert store.get(b"session:" + b"c" * 32) is None


def test_disable_session_forward(make: Any) -> None:
    gw = make({"storage": "Sessions", "disableSessionForward": True})
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    gw.storage("Sessions").set(f"session:{sid}".encode(), fresh(b"user_id=42"))
    got = received(gw.handle("GET", "/app/y", {"Cookie": f"session_id={sid}"}))
    assert "x-user-id" not in got


def test_header_key_lookup(make: Any) -> None:
    gw = make({"storage": "Sessions", "keyLookup": "header:X-Session-Id"})
    r = gw.handle("GET", "/app/x")
    assert header_values(r, "Set-Cookie") == []
    (sid,) = header_values(r, "X-Session-Id")
    assert HEX32.match(sid)
    gw.storage("Sessions").set(f"session:{sid}".encode(), fresh(b"user_id=9"))
    r = gw.handle("GET", "/app/y", {"X-Session-Id": sid})
    assert received(r)["x-user-id"] == "9"
    assert header_values(r, "X-Session-Id") == []  # known and fresh: nothing to tell the client
    r = gw.handle("GET", "/app/y", {"Cookie": f"session_id={sid}"})  # cookie is not looked at
    assert "x-user-id" not in received(r)
    assert header_values(r, "X-Session-Id")[0] != sid


# ------------------------------------------------------------------------ id rotation

ROTATE = {
    "storage": "Sessions",
    "cookieExpiration": "10s",
    "autoRenewAfter": "1s",
    "autoRenewGracePeriod": "800ms",
}


def test_fresh_session_is_not_written(make: Any) -> None:
    gw = make(ROTATE)
    store = gw.storage("Sessions")
    key = b"session:" + b"a" * 32
    value = fresh(b"user_id=1")
    store.set(key, value, ttl=0.8)  # written by "someone else" with a short TTL
    for _ in range(3):
        r = gw.handle("GET", "/app/x", {"Cookie": "session_id=" + "a" * 32})
        assert received(r)["x-user-id"] == "1"
        assert header_values(r, "Set-Cookie") == []
    assert store.get(key) == value
    time.sleep(0.85)  # no request refreshed the TTL: no write happened
    assert store.get(key) is None


def test_no_storage_named_keeps_sessions_in_the_default_memory_storage(
    make: Any, caplog: Any
) -> None:
    """As Seam: without `storage`, sessions live in this process's memory (the host's
    default storage, a MemoryStorage), with a warning that says what that means."""
    with caplog.at_level(logging.WARNING, logger="plughost.plugin"):
        gw = make({})
    assert any(
        "no storage named" in r.getMessage() and "ValkeyStorage" in r.getMessage()
        for r in caplog.records
    ), caplog.records
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    default = gw.storage("(default)")
    default.set(f"session:{sid}".encode(), fresh(b"user_id=6"))
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={sid}"})
    assert received(r)["x-user-id"] == "6"  # found in the default storage
    assert header_values(r, "Set-Cookie") == []
    assert gw.storage("Sessions").get(f"session:{sid}".encode()) is None


def test_no_storage_and_no_memory_plugin_is_a_clear_error(
    tmp_path: Path, test_plugin_dir: Path, upstream: UpstreamServer
) -> None:
    folder = session_config(
        tmp_path / "config",
        test_plugin_dir,
        upstream.url,
        {},
        plugins=("memory", "valkey", "trace", "session"),
    )
    (folder / "plugins.yaml").write_text(
        "plugins:\n"
        + "".join(f"  - path: {test_plugin_dir / name}.so\n" for name in ("trace", "session"))
    )
    (folder / "storages.yaml").write_text("storages: {}\n")
    with pytest.raises(ConfigErrors) as info:
        Gateway.from_config(folder)
    text = str(info.value)
    assert "middlewares.Load.config.storage" in text and "no default one" in text
    assert "list memory.so" in text


def test_unset_renewal_options_shrink_to_fit_a_short_cookie_expiration(make: Any) -> None:
    """A Seam configuration setting only cookieExpiration (here 2s, below the 30m default of
    autoRenewAfter) is valid: the id rotates at half the lifetime, with a quarter of that as
    grace period."""
    gw = make({"storage": "Sessions", "cookieExpiration": "2s"})
    old = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    gw.storage("Sessions").set(f"session:{old}".encode(), fresh(b"user_id=2"), ttl=2)
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
    assert header_values(r, "Set-Cookie") == []  # younger than 1s: not due
    time.sleep(1.05)
    new = cookie_id(set_cookie(gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})))
    assert new != old
    time.sleep(0.3)  # past the 250 ms grace period: the old id is gone
    assert gw.storage("Sessions").get(f"session:{old}".encode()) is None


def test_rotation_after_auto_renew_after(make: Any) -> None:
    gw = make(ROTATE)
    store = gw.storage("Sessions")
    old = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    old_key = f"session:{old}".encode()
    # the application stores data with an __issued entry of now: not due yet
    store.set(old_key, fresh(b"user_id=42&role=a%26b"), ttl=10)
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
    assert received(r)["x-user-id"] == "42" and header_values(r, "Set-Cookie") == []

    time.sleep(1.05)  # now at least autoRenewAfter old
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
    got = received(r)
    assert got["x-user-id"] == "42" and got["x-role"] == "a&b"  # data carried over
    cookie = set_cookie(r)
    new = cookie_id(cookie)
    assert new != old
    assert "Max-Age=10" in cookie  # the full cookieExpiration again
    # the data lives under the new id, issued now; the old id only points to it
    assert_issued_now(store.get(f"session:{new}".encode()), b"user_id=42&role=a%26b")
    assert store.get(old_key) == f"__movedTo={new}".encode()

    # the new id is fresh: loaded without any write or cookie
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={new}"})
    assert received(r)["x-user-id"] == "42" and header_values(r, "Set-Cookie") == []

    # a request still in flight with the old id, within the grace period: the same session,
    # and the response tells the browser the new id, without another rotation
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
    assert received(r)["x-user-id"] == "42"
    assert cookie_id(set_cookie(r)) == new
    assert store.get(old_key) == f"__movedTo={new}".encode()

    time.sleep(0.85)  # past autoRenewGracePeriod: the old id is worth nothing
    assert store.get(old_key) is None
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
    assert "x-user-id" not in received(r)
    assert header_values(r, "Set-Cookie") == []  # an empty session; the browser keeps the new id
    # while the new one still works
    assert (
        received(gw.handle("GET", "/app/x", {"Cookie": f"session_id={new}"}))["x-user-id"] == "42"
    )


def test_rotation_with_header_lookup_answers_new_id(make: Any) -> None:
    gw = make({"storage": "Sessions", "keyLookup": "header:X-Session-Id"})
    old = "b" * 32
    gw.storage("Sessions").set(f"session:{old}".encode(), b"user_id=8", ttl=60)  # legacy: due
    r = gw.handle("GET", "/app/x", {"X-Session-Id": old})
    assert received(r)["x-user-id"] == "8"
    (new,) = header_values(r, "X-Session-Id")
    assert HEX32.match(new) and new != old
    assert header_values(r, "Set-Cookie") == []


def test_logout_of_new_id_also_ends_old_id_in_grace(make: Any) -> None:
    gw = make({"storage": "Sessions"})
    store = gw.storage("Sessions")
    old = "d" * 32
    store.set(f"session:{old}".encode(), b"user_id=4", ttl=60)
    new = cookie_id(set_cookie(gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})))
    assert store.delete(f"session:{new}".encode())  # the application logs the user out
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})  # marker leads nowhere
    assert "x-user-id" not in received(r)
    assert cookie_id(set_cookie(r)) not in (old, new)


def test_zero_grace_period_deletes_old_id(make: Any) -> None:
    gw = make({"storage": "Sessions", "autoRenewGracePeriod": 0})
    store = gw.storage("Sessions")
    old = "e" * 32
    store.set(f"session:{old}".encode(), b"user_id=5", ttl=60)
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
    assert received(r)["x-user-id"] == "5"
    new = cookie_id(set_cookie(r))
    assert store.get(f"session:{old}".encode()) is None
    assert_issued_now(store.get(f"session:{new}".encode()), b"user_id=5")
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
    assert "x-user-id" not in received(r)


def test_legacy_value_without_timestamp_loads_and_rotates(make: Any) -> None:
    """Data written before rotation existed (or by an application that dropped __issued)
    loads as before and counts as due: rotated on its first use."""
    gw = make({"storage": "Sessions"})  # defaults: autoRenewAfter 30m
    store = gw.storage("Sessions")
    old = "f" * 32
    store.set(f"session:{old}".encode(), b"user_id=42&role=admin+user", ttl=60)
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
    got = received(r)
    assert got["x-user-id"] == "42" and got["x-role"] == "admin user"
    new = cookie_id(set_cookie(r))
    assert new != old
    assert_issued_now(store.get(f"session:{new}".encode()), b"user_id=42&role=admin+user")
    assert store.get(f"session:{old}".encode()) == f"__movedTo={new}".encode()
    # then it is an ordinary fresh session
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={new}"})
    assert received(r)["x-user-id"] == "42" and header_values(r, "Set-Cookie") == []


@pytest.mark.parametrize(
    "value",
    [
        b"__issued=soon&user_id=6",
        b"__issued=&user_id=6",
        b"user_id=6&__issued=99999999999999999999",
        b"__issued=99999999999999&user_id=6",
        b"user_id=6&%5F%5Fissued=1",
    ],
)
def test_malformed_or_far_future_timestamp_counts_as_due(make: Any, value: bytes) -> None:
    gw = make({"storage": "Sessions"})
    store = gw.storage("Sessions")
    store.set(b"session:" + b"1" * 32, value, ttl=60)
    r = gw.handle("GET", "/app/x", {"Cookie": "session_id=" + "1" * 32})
    assert received(r)["x-user-id"] == "6"
    new = cookie_id(set_cookie(r))
    assert_issued_now(store.get(f"session:{new}".encode()), b"user_id=6")


def test_reserved_entries_are_not_forwarded(make: Any) -> None:
    gw = make(
        {"storage": "Sessions"},
        mapping={"headers": {"X-Issued": "__issued", "X-User-Id": "user_id"}},
    )
    sid = "2" * 32
    gw.storage("Sessions").set(f"session:{sid}".encode(), fresh(b"user_id=12"), ttl=60)
    got = received(
        gw.handle("GET", "/app/x", {"Cookie": f"session_id={sid}", "X-Issued": "forged"})
    )
    assert got["x-user-id"] == "12" and "x-issued" not in got


def test_failed_store_of_new_id_keeps_old_id(make: Any, caplog: Any) -> None:
    """maxEntries 1: the old session fills the storage, so storing the new id fails. The
    storage's own reason reaches the log, though the middleware answered 503 itself."""
    gw = make({"storage": "Sessions"}, memory={"maxEntries": 1})
    store = gw.storage("Sessions")
    old = "3" * 32
    store.set(f"session:{old}".encode(), b"user_id=13", ttl=60)
    with caplog.at_level(logging.WARNING, logger="plughost.plugin"):
        r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
    assert r.status == 503 and json.loads(r.body)["status"] == 503
    assert header_values(r, "Set-Cookie") == []
    assert store.get(f"session:{old}".encode()) == b"user_id=13"  # untouched, still valid
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "middleware 'Load'" in m and "maxEntries" in m and "status 503" in m for m in warned
    ), warned


def test_failed_marker_write_keeps_old_id(make: Any) -> None:
    """maxValueBytes 41: the rotated value (about 30 bytes) is stored, the marker
    "__movedTo=<32 hex>" (42 bytes) is refused, after the new id was stored."""
    gw = make({"storage": "Sessions"}, memory={"maxValueBytes": 41})
    store = gw.storage("Sessions")
    old = "4" * 32
    store.set(f"session:{old}".encode(), b"u=14", ttl=60)
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
    assert r.status == 503
    assert header_values(r, "Set-Cookie") == []
    assert store.get(f"session:{old}".encode()) == b"u=14"  # untouched, still valid


def test_logged_out_session_is_empty(make: Any) -> None:
    gw = make({"storage": "Sessions"})
    sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
    gw.storage("Sessions").set(f"session:{sid}".encode(), fresh(b"user_id=9"))
    assert received(gw.handle("GET", "/app/x", {"Cookie": f"session_id={sid}"}))["x-user-id"]
    assert gw.storage("Sessions").delete(f"session:{sid}".encode())  # logout
    r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={sid}"})
    assert "x-user-id" not in received(r)
    assert gw.storage("Sessions").get(f"session:{sid}".encode()) is None


@pytest.mark.parametrize(
    "load, mapping, words",
    [
        ({"storage": "Nope"}, None, ["storage", "Nope"]),
        ({"storage": "Sessions", "keyLookup": "query:sid"}, None, ["keyLookup", "query:sid"]),
        ({"storage": "Sessions", "keyLookup": "cookie:"}, None, ["keyLookup", "cookie name"]),
        ({"storage": "Sessions", "keyLookup": "header:bad name"}, None, ["keyLookup", "header"]),
        (
            {"storage": "Sessions", "cookieSameSite": "Sometimes"},
            None,
            ["cookieSameSite", "Sometimes"],
        ),
        (
            {"storage": "Sessions", "cookieSameSite": "None"},
            None,
            ["cookieSameSite", "cookieSecure"],
        ),
        (
            {"storage": "Sessions", "cookieExpiration": 0},
            None,
            [
                "middlewares.yaml:4: middlewares.Load.config.cookieExpiration: 'cookieExpiration' is the "
                "number 0: it must be at least 1ms"
            ],
        ),
        ({"storage": "Sessions", "cookieExpiration": "soon"}, None, ["cookieExpiration"]),
        ({"storage": "Sessions", "cookiePath": "/a b"}, None, ["cookiePath"]),
        ({"storage": "Sessions", "cookieDomain": "ex ample.com"}, None, ["cookieDomain"]),
        ({"storage": "Sessions", "cookieSecure": "maybe"}, None, ["cookieSecure"]),
        (
            {"storage": "Sessions", "autoRenewAfter": "2h"},
            None,
            ["autoRenewAfter", "is 2h but must be shorter than cookieExpiration (2h)"],
        ),
        (
            {"storage": "Sessions", "autoRenewAfter": "3h"},
            None,
            ["autoRenewAfter", "shorter than cookieExpiration", "disableAutoRenew"],
        ),
        (
            {"storage": "Sessions", "autoRenewAfter": 0},
            None,
            [
                "middlewares.yaml:4: middlewares.Load.config.autoRenewAfter: 'autoRenewAfter' is the "
                "number 0: it must be at least 1ms"
            ],
        ),
        ({"storage": "Sessions", "autoRenewAfter": "-1m"}, None, ["autoRenewAfter", "negative"]),
        (
            {"storage": "Sessions", "autoRenewAfter": "5s", "autoRenewGracePeriod": "5s"},
            None,
            ["autoRenewGracePeriod", "is 5s but must be shorter than autoRenewAfter (5s)"],
        ),
        (
            {"storage": "Sessions", "autoRenewGracePeriod": "30m"},
            None,
            ["autoRenewGracePeriod", "shorter than autoRenewAfter (30m)"],
        ),
        (
            {"storage": "Sessions", "autoRenewGracePeriod": "-1s"},
            None,
            ["autoRenewGracePeriod", "negative"],
        ),
        ({"storage": "Sessions", "autoRenewGracePeriod": "later"}, None, ["autoRenewGracePeriod"]),
        (
            {"storage": "Sessions"},
            {},
            [
                "middlewares.yaml:7: middlewares.Map.config.headers: "
                "'headers' is missing, and plugins.session.middlewares."
                "MapSessionToHeaderMiddleware needs it"
            ],
        ),
        (
            {"storage": "Sessions"},
            {"headers": {}},
            ["middlewares.Map.config.headers", "is empty: give it a map with at least one entry"],
        ),
        ({"storage": "Sessions"}, {"headers": {"Bad Name": "x"}}, ["Bad Name", "header name"]),
        (
            {"storage": "Sessions"},
            {"headers": {"X-A": ["x"]}},
            [
                "middlewares.yaml:7: middlewares.Map.config.headers.X-A: 'X-A' must be a string, not a "
                "list"
            ],
        ),
        ({"storage": "Sessions"}, {"headers": {"X-A": 7}}, ["headers.X-A", "session key"]),
    ],
)
def test_config_errors_name_the_key(
    make: Any, load: dict[str, Any], mapping: dict[str, Any] | None, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as exc:
        make(load, mapping=mapping)
    text = str(exc.value)
    for word in words:
        assert word in text, text


def test_option_schema_refuses_a_misspelt_option_and_matches_names_ignoring_case(make: Any) -> None:
    """Both types declare their options (ABI 1.2): a misspelt option is refused before create
    runs, at its file, line and key, with the option it resembles; an option written in
    another case is the option itself."""
    with pytest.raises(ConfigError) as exc:
        make({"storage": "Sessions", "cookieExpiraton": "10m"})
    assert (
        "middlewares.yaml:4: middlewares.Load.config.cookieExpiraton: "
        f"{LOAD} has no option 'cookieExpiraton': did you mean 'cookieExpiration'?"
        in str(exc.value)
    ), str(exc.value)
    with pytest.raises(ConfigError) as exc:
        make({"storage": "Sessions"}, mapping={"header": {"X-User-Id": "user_id"}})
    assert (
        "middlewares.yaml:7: middlewares.Map.config.header: "
        f"{MAP} has no option 'header': did you mean 'headers'?" in str(exc.value)
    ), str(exc.value)

    gw = make(
        {"STORAGE": "Sessions", "cookieexpiration": "10m", "COOKIESAMESITE": "strict"},
        mapping={"Headers": {"X-User-Id": "user_id"}},
    )
    cookie = set_cookie(gw.handle("GET", "/app/x"))
    attrs = [a.strip() for a in cookie.split(";")[1:]]
    assert "Max-Age=600" in attrs and "SameSite=Strict" in attrs, cookie
    sid = cookie_id(cookie)
    gw.storage("Sessions").set(f"session:{sid}".encode(), fresh(b"user_id=5"))
    assert received(gw.handle("GET", "/app/x", {"Cookie": f"session_id={sid}"}))["x-user-id"] == "5"


def test_disable_auto_renew_skips_rotation_checks(make: Any) -> None:
    make(
        {
            "storage": "Sessions",
            "disableAutoRenew": True,
            "cookieExpiration": "10m",
            "autoRenewAfter": "1h",
            "autoRenewGracePeriod": "2h",
        }
    )


# ------------------------------------------------------------------------ valkey storage


def commandstats(port: int) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, from INFO commandstats."""
    reply = command(port, b"INFO", b"commandstats").decode()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", reply)}


def pttl(port: int, key: str) -> int:
    return int(command(port, b"PTTL", key.encode())[1:])


def test_valkey_storage(make: Any, tmp_path: Path) -> None:
    with ValkeyServer(tmp_path / "valkey") as valkey:
        gw = make({"storage": "Valkey"}, valkey_port=valkey.port)
        assert command(valkey.port, b"CONFIG", b"RESETSTAT").startswith(b"+OK")
        sid = cookie_id(set_cookie(gw.handle("GET", "/app/x")))
        store = gw.storage("Valkey")
        assert commandstats(valkey.port) == {}  # a new session: not one command
        store.set(f"session:{sid}".encode(), fresh(b"user_id=valkey%20user"), ttl=60)

        # a fresh session: one GET per request and no write at all, TTL untouched
        assert command(valkey.port, b"CONFIG", b"RESETSTAT").startswith(b"+OK")
        for _ in range(5):
            r = gw.handle("GET", "/app/y", {"Cookie": f"session_id={sid}"})
            assert received(r)["x-user-id"] == "valkey user"
            assert header_values(r, "Set-Cookie") == []
        calls = commandstats(valkey.port)
        assert calls.get("get") == 5, calls
        assert not {"set", "del", "expire", "pexpire", "evalsha", "eval"} & set(calls), calls
        assert 50_000 < pttl(valkey.port, f"st:session:{sid}") <= 60_000

        # a second gateway on the same Valkey sees the same session
        gw2 = make({"storage": "Valkey"}, valkey_port=valkey.port)
        got = received(gw2.handle("GET", "/app/y", {"Cookie": f"session_id={sid}"}))
        assert got["x-user-id"] == "valkey user"
        valkey.kill()
        r = gw.handle("GET", "/app/y", {"Cookie": f"session_id={sid}"})
        assert r.status == 503
        assert json.loads(r.body)["status"] == 503


def test_valkey_rotation(make: Any, tmp_path: Path) -> None:
    with ValkeyServer(tmp_path / "valkey") as valkey:
        gw = make(
            {"storage": "Valkey", "autoRenewAfter": "10s", "autoRenewGracePeriod": "5s"},
            valkey_port=valkey.port,
        )
        store = gw.storage("Valkey")
        old = "9" * 32
        # issued 10.1 s ago: due for rotation on its next use
        store.set(f"session:{old}".encode(), issued_now(-10.1) + b"&user_id=77", ttl=60)
        assert command(valkey.port, b"CONFIG", b"RESETSTAT").startswith(b"+OK")
        r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
        assert received(r)["x-user-id"] == "77"
        new = cookie_id(set_cookie(r))
        assert new != old
        calls = commandstats(valkey.port)
        assert calls.get("get") == 1 and calls.get("set") == 2, calls  # new id, then marker
        assert_issued_now(store.get(f"session:{new}".encode()), b"user_id=77")
        assert 7_000_000 < pttl(valkey.port, f"st:session:{new}") <= 7_200_000
        assert store.get(f"session:{old}".encode()) == f"__movedTo={new}".encode()
        assert 0 < pttl(valkey.port, f"st:session:{old}") <= 5000
        # another gateway, a request in flight with the old id: same session, new id
        gw2 = make(
            {"storage": "Valkey", "autoRenewAfter": "10s", "autoRenewGracePeriod": "5s"},
            valkey_port=valkey.port,
        )
        r = gw2.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
        assert received(r)["x-user-id"] == "77"
        assert cookie_id(set_cookie(r)) == new


def test_valkey_refusing_writes_keeps_old_id(make: Any, tmp_path: Path) -> None:
    """A Valkey out of memory (maxmemory, noeviction) refuses SET but serves GET: rotation
    fails with 503 and the old id stays as it was; once Valkey accepts writes, it works."""
    with ValkeyServer(tmp_path / "valkey") as valkey:
        gw = make({"storage": "Valkey"}, valkey_port=valkey.port)
        store = gw.storage("Valkey")
        old = "8" * 32
        store.set(f"session:{old}".encode(), b"user_id=88", ttl=60)  # legacy: due
        for setting in (b"maxmemory-policy", b"noeviction"), (b"maxmemory", b"1"):
            assert command(valkey.port, b"CONFIG", b"SET", *setting).startswith(b"+OK")
        r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
        assert r.status == 503
        assert header_values(r, "Set-Cookie") == []
        assert command(valkey.port, b"CONFIG", b"SET", b"maxmemory", b"0").startswith(b"+OK")
        assert store.get(f"session:{old}".encode()) == b"user_id=88"
        r = gw.handle("GET", "/app/x", {"Cookie": f"session_id={old}"})
        assert received(r)["x-user-id"] == "88"
        assert cookie_id(set_cookie(r)) != old
