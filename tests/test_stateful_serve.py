"""Seam's stateful plugins end to end through ONE real `plughost serve` process, over real
HTTP on loopback: valkey (every storage option), session (LoadSessionMiddleware,
MapSessionToHeaderMiddleware), limiter and csrf, each on routes of their own with
differently configured instances, against a real Valkey (and a second one that requires a
password) and the memory storage. The fault tests at the end kill and freeze Valkey while
requests run, and check clean 503s (or failOpen), no crash and recovery without a restart.

Cookies are handled by hand: every test sends exactly the Cookie header it means to."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from gateway_support import PLUGHOST, Server, UpstreamServer, free_port
from valkey_support import ValkeyServer, command

HEX32 = re.compile(r"^[0-9a-f]{32}$")
PREFIX = "e2e:"  # the main ValkeyStorage's prefix
COMMAND_TIMEOUT_S = 0.3  # the main ValkeyStorage's commandTimeout
PASSWORD = "s3cret"  # the auth Valkey's default-user password (requirepass)
USER, USER_PASSWORD = "gw", "gw-pass"  # an ACL user of the auth Valkey
WRONG_PASSWORD = "not-the-password"
REVOKED_USER = "gw-revoked"  # an ACL user whose password a test changes under the gateway

LOAD = "plugins.session.middlewares.LoadSessionMiddleware"
MAP = "plugins.session.middlewares.MapSessionToHeaderMiddleware"
LIMITER = "plugins.limiter.middlewares.LimiterMiddleware"
CSRF = "plugins.csrf.middlewares.CSRFMiddleware"


# ----------------------------------------------------------------------- raw Valkey access


class ReplyError(str):
    """An error reply ("-ERR ..."), returned rather than raised."""


def _reply(f: Any) -> Any:
    line = f.readline()
    if not line:
        raise ConnectionError("Valkey closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return ReplyError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_reply(f) for _ in range(n)]
    raise ValueError(f"unexpected RESP line {line!r}")


def vk(
    port: int, *commands: tuple[str | bytes | int, ...], auth: tuple[str, ...] = (), db: int = 0
) -> list[Any]:
    """Runs ``commands`` on one connection (after AUTH ``auth`` and SELECT ``db``) and returns
    their replies. (valkey_support.command sends a single command per connection.)"""
    setup: list[tuple[str | bytes | int, ...]] = []
    if auth:
        setup.append(("AUTH", *auth))
    if db:
        setup.append(("SELECT", db))
    out = []
    for cmd in setup + list(commands):
        parts = [p if isinstance(p, bytes) else str(p).encode() for p in cmd]
        out.append(
            b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"".join(out))
        f = s.makefile("rb")
        replies = [_reply(f) for _ in out]
    for cmd, reply in zip(setup, replies):
        assert not isinstance(reply, ReplyError), (cmd[0], reply)
    return replies[len(setup) :]


def vk1(port: int, *parts: str | bytes | int, **kw: Any) -> Any:
    return vk(port, tuple(parts), **kw)[0]


# ------------------------------------------------------------------------ the configuration


def storages(valkey: int, auth: int, backlog: int) -> dict[str, dict[str, Any]]:
    v = "plugins.valkey.storages.ValkeyStorage"
    return {
        "Memory": {"use": "plugins.memory.storages.MemoryStorage"},
        # the main one: every fault test runs on it
        "Valkey": {
            "use": v,
            "config": {
                "host": "127.0.0.1",
                "port": valkey,
                "prefix": PREFIX,
                "connectTimeout": "200ms",
                "commandTimeout": f"{int(COMMAND_TIMEOUT_S * 1000)}ms",
                "poolSize": 3,
            },
        },
        # every option at its default but the port: prefix "plughost:", db 0, 2 s timeouts
        "ValkeyDefaults": {"use": v, "config": {"port": valkey}},
        "ValkeyDb": {"use": v, "config": {"port": valkey, "prefix": "db:", "db": 5, "poolSize": 2}},
        "ValkeyUser": {
            "use": v,
            "config": {
                "port": auth,
                "prefix": "user:",
                "username": USER,
                "password": USER_PASSWORD,
            },
        },
        "ValkeyPassword": {
            "use": v,
            "config": {"port": auth, "prefix": "pw:", "password": PASSWORD},
        },
        # its password is changed on the server while the gateway runs
        "ValkeyRevoked": {
            "use": v,
            "config": {
                "port": auth,
                "prefix": "rv:",
                "username": REVOKED_USER,
                "password": USER_PASSWORD,
                "commandTimeout": "500ms",
            },
        },
        # nothing listens there: the host option is really used
        "ValkeyWrongHost": {
            "use": v,
            "config": {"host": "127.0.0.2", "port": valkey, "connectTimeout": "200ms"},
        },
        # a listener whose accept queue is full: connect() hangs until connectTimeout
        "ValkeySlowConnect": {
            "use": v,
            "config": {"port": backlog, "connectTimeout": "250ms", "commandTimeout": "5s"},
        },
    }


def middlewares() -> dict[str, dict[str, Any]]:
    def load(**cfg: Any) -> dict[str, Any]:
        return {"use": LOAD, "config": cfg}

    def limiter(**cfg: Any) -> dict[str, Any]:
        return {"use": LIMITER, "config": cfg}

    def csrf(**cfg: Any) -> dict[str, Any]:
        return {"use": CSRF, "config": cfg}

    hour = {"expiration": "1h"}
    return {
        # session
        "SessDefault": load(storage="Valkey"),
        "SessAttrs": load(
            storage="ValkeyDefaults",
            keyLookup="cookie:sid",
            cookieDomain="example.com",
            cookiePath="/s/attrs",
            cookieSecure=True,
            cookieHTTPOnly=True,
            cookieSameSite="None",
            cookieExpiration="10m",
            autoRenewAfter="5m",
            autoRenewGracePeriod="0s",
        ),
        "SessStrict": load(storage="Memory", cookieSameSite="Strict", cookieSessionOnly=True),
        "SessHeader": load(storage="Valkey", keyLookup="header:X-Session-Id"),
        "SessNoRenew": load(
            storage="Valkey", keyLookup="cookie:nr", cookieExpiration="1h", disableAutoRenew=True
        ),
        "SessNoForward": load(storage="Valkey", keyLookup="cookie:nf", disableSessionForward=True),
        "SessDb": load(storage="ValkeyDb"),
        "SessUser": load(storage="ValkeyUser"),
        "SessPassword": load(storage="ValkeyPassword"),
        "SessRevoked": load(storage="ValkeyRevoked"),
        "SessWrongHost": load(storage="ValkeyWrongHost"),
        "SessSlowConnect": load(storage="ValkeySlowConnect"),
        "SessMemory": load(storage="Memory"),
        "MapUser": {"use": MAP, "config": {"headers": {"X-User-Id": "user_id", "X-Role": "role"}}},
        # limiter
        "LimDefault": limiter(storage="Valkey", prefix="dflt"),
        "LimExact": limiter(storage="Valkey", maxConnections=3, prefix="exact", **hour),
        "LimMemory": limiter(storage="Memory", maxConnections=2, **hour),
        "LimMemoryBig": limiter(storage="Memory", maxConnections=100000, **hour),
        "LimSkipFailed": limiter(
            storage="Valkey", maxConnections=2, skipFailedRequests=True, prefix="sf", **hour
        ),
        "LimSkipOk": limiter(
            storage="Valkey", maxConnections=2, skipSuccessfulRequests=True, prefix="ss", **hour
        ),
        "LimSliding": limiter(
            storage="Valkey", maxConnections=10, slidingWindow=True, prefix="slide", **hour
        ),
        "LimSecond": limiter(storage="Valkey", maxConnections=1, expiration="1s", prefix="sec"),
        "LimHeader": limiter(
            storage="Valkey", maxConnections=2, key="header:X-API-Key", prefix="hdr", **hour
        ),
        "LimIp": limiter(storage="Valkey", maxConnections=1, key="ip", prefix="ip", **hour),
        "LimShareA": limiter(storage="Valkey", maxConnections=3, prefix="shared", **hour),
        "LimShareB": limiter(storage="Valkey", maxConnections=3, prefix="shared", **hour),
        "LimPool": limiter(storage="ValkeyDb", maxConnections=100000, **hour),  # no prefix
        "LimClosed": limiter(storage="Valkey", maxConnections=100000, prefix="closed", **hour),
        "LimOpen": limiter(
            storage="Valkey", maxConnections=100000, prefix="open", failOpen=True, **hour
        ),
        # csrf
        "CsrfDefault": csrf(storage="Valkey"),
        "CsrfCustom": csrf(
            storage="Memory",
            keyLookup="query:_csrf",
            cookieName="xsrf",
            cookieDomain="example.org",
            cookiePath="/c/custom",
            cookieSecure=True,
            cookieHTTPOnly=True,
            cookieSameSite="Strict",
            cookieExpiration="90s",
            singleUseToken=True,
        ),
        "CsrfCookie": csrf(
            storage="Valkey",
            keyLookup="cookie:csrf_copy",
            cookieSessionOnly=True,
            cookieSecure=True,
            cookieSameSite="None",
        ),
        "CsrfHeader": csrf(
            storage="ValkeyDb", keyLookup="header:X-XSRF-Token", cookieExpiration=120
        ),  # Seam style: an integer of seconds
    }


ROUTES: list[tuple[str, str, list[str], str]] = [
    # path, methods, middlewares, action
    ("/plain", "GET", [], "Ok"),
    ("/s/default/*", "GET", ["SessDefault", "MapUser"], "Forward"),
    ("/s/attrs", "GET", ["SessAttrs"], "Echo"),
    ("/s/strict", "GET", ["SessStrict"], "Echo"),
    ("/s/header/*", "GET", ["SessHeader", "MapUser"], "Forward"),
    ("/s/norenew", "GET", ["SessNoRenew"], "Echo"),
    ("/s/noforward/*", "GET", ["SessNoForward", "MapUser"], "Forward"),
    ("/s/db", "GET", ["SessDb"], "Echo"),
    ("/s/user", "GET", ["SessUser"], "Echo"),
    ("/s/password", "GET", ["SessPassword"], "Echo"),
    ("/s/revoked", "GET", ["SessRevoked"], "Echo"),
    ("/s/wrong-host", "GET", ["SessWrongHost"], "Echo"),
    ("/s/slow-connect", "GET", ["SessSlowConnect"], "Echo"),
    ("/l/default/ok", "GET", ["LimDefault"], "Ok"),
    ("/l/exact/ok", "GET", ["LimExact"], "Ok"),
    ("/l/memory/ok", "GET", ["LimMemory"], "Ok"),
    ("/l/memory/fail", "GET", ["LimMemory"], "Fail"),
    ("/l/skipfail/ok", "GET", ["LimSkipFailed"], "Ok"),
    ("/l/skipfail/fail", "GET", ["LimSkipFailed"], "Fail"),
    ("/l/skipok/ok", "GET", ["LimSkipOk"], "Ok"),
    ("/l/skipok/fail", "GET", ["LimSkipOk"], "Fail"),
    ("/l/sliding/ok", "GET", ["LimSliding"], "Ok"),
    ("/l/second/ok", "GET", ["LimSecond"], "Ok"),
    ("/l/header/ok", "GET", ["LimHeader"], "Ok"),
    ("/l/ip/ok", "GET", ["LimIp"], "Ok"),
    ("/l/sharea/ok", "GET", ["LimShareA"], "Ok"),
    ("/l/shareb/ok", "GET", ["LimShareB"], "Ok"),
    ("/l/pool/ok", "GET", ["LimPool"], "Ok"),
    ("/c/default", "GET, POST", ["CsrfDefault"], "Echo"),
    ("/c/custom", "GET, POST", ["CsrfCustom"], "Echo"),
    ("/c/cookie", "GET, POST", ["CsrfCookie"], "Echo"),
    ("/c/header", "GET, POST", ["CsrfHeader"], "Echo"),
    # the fault tests' routes: Valkey-backed, failOpen, memory, no storage (/plain)
    ("/f/session", "GET", ["SessDefault"], "Echo"),
    ("/f/csrf", "GET", ["CsrfDefault"], "Echo"),
    ("/f/closed", "GET", ["LimClosed"], "Ok"),
    ("/f/open", "GET", ["LimOpen"], "Ok"),
    ("/f/memory", "GET", ["SessMemory", "LimMemoryBig"], "Echo"),
]


def write_stateful_config(
    folder: Path, plugin_dir: Path, *, valkey: int, auth: int, backlog: int, upstream: str
) -> Path:
    """The Seam configuration folder of the shared server (JSON is valid YAML)."""
    folder.mkdir(parents=True, exist_ok=True)
    plugins = ["memory", "valkey", "static", "trace", "session", "limiter", "csrf"]
    (folder / "plugins.yaml").write_text(
        json.dumps({"plugins": [{"path": str(plugin_dir / f"{name}.so")} for name in plugins]})
    )
    (folder / "storages.yaml").write_text(
        json.dumps({"storages": storages(valkey, auth, backlog)}, indent=1)
    )
    (folder / "middlewares.yaml").write_text(json.dumps({"middlewares": middlewares()}, indent=1))
    (folder / "actions.yaml").write_text(
        json.dumps(
            {
                "actions": {
                    "Echo": {"use": "plugins.trace.actions.EchoAction"},
                    "Ok": {"use": "plugins.static.actions.StaticAction", "config": {"body": "ok"}},
                    "Fail": {
                        "use": "plugins.static.actions.StaticAction",
                        "config": {"status": 500, "body": "fail"},
                    },
                    "Forward": {
                        "use": "plugins.trace.actions.ForwardAction",
                        "config": {"url": upstream, "timeout": "2s"},
                    },
                }
            },
            indent=1,
        )
    )
    routes = {}
    for i, (path, methods, mws, action) in enumerate(ROUTES):
        routes[f"R{i}"] = {
            "gatewayPath": path,
            "methods": methods.split(", "),
            "middlewares": mws,
            "action": action,
        }
    (folder / "routes.yaml").write_text(json.dumps({"routes": routes}, indent=1))
    # the client address may come from X-Forwarded-For, set by the test (a trusted peer)
    (folder / "server.yaml").write_text(
        json.dumps(
            {
                "server": {
                    "proxyHeader": "X-Forwarded-For",
                    "enableTrustedProxyCheck": True,
                    "trustedProxies": ["127.0.0.0/8"],
                }
            }
        )
    )
    return folder


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    srv = ValkeyServer(tmp_path_factory.mktemp("valkey")).start()
    try:
        yield srv
    finally:
        if srv.proc and srv.proc.poll() is None:
            os.kill(srv.proc.pid, signal.SIGCONT)  # in case a test froze it
        srv.stop()


@pytest.fixture(scope="module")
def auth_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A second Valkey: the default user needs PASSWORD, and an ACL user USER exists."""
    srv = ValkeyServer(tmp_path_factory.mktemp("valkey-auth")).start()
    try:
        for user in (USER, REVOKED_USER):
            assert (
                command(
                    srv.port,
                    b"ACL",
                    b"SETUSER",
                    user.encode(),
                    b"on",
                    b">" + USER_PASSWORD.encode(),
                    b"~*",
                    b"&*",
                    b"+@all",
                )
                == b"+OK\r\n"
            )
        assert command(srv.port, b"CONFIG", b"SET", b"requirepass", PASSWORD.encode()) == b"+OK\r\n"
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def backlog_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: a new connect() hangs (its SYN is
    dropped) until the client gives up, as a server behind a black-holing firewall."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = []
    for _ in range(8):  # fill the queue; stop at the first connect that hangs
        s = socket.socket()
        s.settimeout(0.3)
        held.append(s)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            break
    else:  # Linux drops SYNs to a full queue; a system that does not cannot run these tests
        pytest.fail(
            "could not fill a listener's accept queue (listen(0) accepted 8 "
            "connections): the connect-timeout tests need a system that drops them"
        )
    try:
        yield port
    finally:
        for s in held:
            s.close()
        listener.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory,
    test_plugin_dir: Path,
    valkey: ValkeyServer,
    auth_valkey: ValkeyServer,
    backlog_port: int,
    upstream: UpstreamServer,
) -> Iterator[Server]:
    folder = write_stateful_config(
        tmp_path_factory.mktemp("config"),
        test_plugin_dir,
        valkey=valkey.port,
        auth=auth_valkey.port,
        backlog=backlog_port,
        upstream=upstream.url,
    )
    server = Server("--config", str(folder))
    try:
        yield server
    finally:
        out = server.stop()
        assert "Traceback" not in out, out[-5000:]


# -------------------------------------------------------------------------------- helpers


def cookies(headers: Any) -> list[tuple[str, str, dict[str, str]]]:
    """Every Set-Cookie as (name, value, {attribute: value}); flags map to ""."""
    out = []
    for raw in headers.get_all("Set-Cookie") or []:
        first, *attrs = [part.strip() for part in raw.split(";")]
        name, _, value = first.partition("=")
        parsed = {}
        for attr in attrs:
            key, _, val = attr.partition("=")
            parsed[key] = val
        out.append((name, value, parsed))
    return out


def one_cookie(headers: Any, name: str) -> tuple[str, dict[str, str]]:
    found = cookies(headers)
    assert [c[0] for c in found] == [name], found
    assert HEX32.match(found[0][1]), found
    return found[0][1], found[0][2]


def check_expires(attrs: dict[str, str], seconds: int) -> None:
    from email.utils import parsedate_to_datetime

    assert attrs["Max-Age"] == str(seconds), attrs
    at = parsedate_to_datetime(attrs["Expires"]).timestamp()
    assert abs(at - (time.time() + seconds)) < 5, attrs


# A returning visitor: every session middleware reads the storage for its id (a cookieless
# request touches no storage: a new session is stored only once it holds data).
RETURNING = {"Cookie": "; ".join(f"{name}={'7' * 32}" for name in ("session_id", "sid", "nr"))}


def log_in(
    gw: Server, port: int, path: str, key_prefix: str, cookie: str = "session_id", **kw: Any
) -> str:
    """Logs a visitor in as an application would: session data (without an issue time)
    written to Valkey under the id the visitor holds, at ``key_prefix`` (``kw``: db, auth).
    The gateway must find it there and rotate it to a new id stored beside it; returns the
    new id."""
    status, headers, body = gw.get(path)
    assert status in (200, 201), body
    sid, _ = one_cookie(headers, cookie)
    assert vk1(port, "EXISTS", f"{key_prefix}session:{sid}", **kw) == 0  # nothing stored yet
    assert vk1(port, "SET", f"{key_prefix}session:{sid}", "user_id=1", "EX", 600, **kw) == "OK"
    status, headers, body = gw.get(path, headers={"Cookie": f"{cookie}={sid}"})
    assert status in (200, 201), body
    new, _ = one_cookie(headers, cookie)
    assert new != sid
    stored = vk1(port, "GET", f"{key_prefix}session:{new}", **kw)
    assert re.fullmatch(rb"__issued=\d{13}&user_id=1", stored), stored
    return new


def unavailable(status: int, body: bytes) -> dict[str, Any]:
    """A clean storage-failure answer: 503 with a JSON body that says so."""
    assert status == 503, (status, body)
    doc = json.loads(body)
    assert doc["status"] == 503 and "unavailable" in doc["error"], doc
    return doc


def received(status: int, body: bytes) -> dict[str, str]:
    """The request headers the upstream received (names lower-cased)."""
    assert status == 201, (status, body)
    return {k.lower(): v for k, v in json.loads(body)["headers"].items()}


def window_start(seconds: float, *, margin: float = 3.0, offset: float = 0.05) -> None:
    """Waits, if needed, so that the current wall-clock window of ``seconds`` has at least
    ``margin`` seconds left (windows longer than margin), else until the next one starts."""
    left = seconds - (time.time() % seconds)
    if seconds > margin and left > margin:
        return
    time.sleep(left + offset)


def window(seconds: float) -> int:
    """The limiter's window index for windows of ``seconds`` (wall clock, as the plugin)."""
    return int(time.time() * 1000) // int(seconds * 1000)


def rate_headers(headers: Any) -> tuple[int, int, int]:
    return (
        int(headers["X-RateLimit-Limit"]),
        int(headers["X-RateLimit-Remaining"]),
        int(headers["X-RateLimit-Reset"]),
    )


def check_limit(gw: Server, path: str, n: int, window_s: int, **kw: Any) -> None:
    """n requests pass with exact headers, then 429 with Retry-After and a JSON body."""
    for i in range(n):
        status, headers, body = gw.get(path, **kw)
        assert status == 200, (i, status, body)
        limit, remaining, reset = rate_headers(headers)
        assert (limit, remaining) == (n, n - 1 - i)
        assert 1 <= reset <= window_s
    status, headers, body = gw.get(path, **kw)
    assert status == 429, (status, body)
    assert json.loads(body) == {"error": "too many requests", "status": 429}
    assert headers["Content-Type"] == "application/json"
    retry = int(headers["Retry-After"])
    assert 1 <= retry <= window_s
    assert rate_headers(headers) == (n, 0, retry)


def pttl(port: int, key: str, **kw: Any) -> int:
    return vk1(port, "PTTL", key, **kw)


# ------------------------------------------------------------------------- valkey storage


def test_valkey_prefix_host_port_db_and_defaults(gw: Server, valkey: ValkeyServer) -> None:
    # prefix "e2e:" on the main storage, db 0
    sid = log_in(gw, valkey.port, "/s/default/x", PREFIX)
    assert vk(valkey.port, ("EXISTS", f"plughost:session:{sid}"), ("EXISTS", f"session:{sid}")) == [
        0,
        0,
    ]
    # every option left at its default but the port: prefix "plughost:"
    log_in(gw, valkey.port, "/s/attrs", "plughost:", cookie="sid")
    # db 5 with prefix "db:": nothing in db 0
    sid = log_in(gw, valkey.port, "/s/db", "db:", db=5)
    assert vk1(valkey.port, "EXISTS", f"db:session:{sid}") == 0
    # host: the same port on 127.0.0.2, where nothing listens, fails cleanly
    unavailable(*gw.get("/s/wrong-host", headers=RETURNING)[::2])


def test_valkey_pool_size_bounds_connections(gw: Server, valkey: ValkeyServer) -> None:
    """poolSize 2 (ValkeyDb): a burst of concurrent requests through it opens at most two
    connections to the server (those are the only clients on db 5)."""
    window_start(3600)
    w = window(3600)
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: gw.get("/l/pool/ok")[0], range(48)))
    assert statuses == [200] * 48
    clients = vk1(valkey.port, "CLIENT", "LIST").decode().splitlines()
    on_db5 = [c for c in clients if " db=5 " in f" {c} "]
    assert len(on_db5) == 2, clients  # used concurrently: as many as allowed, no more
    # no limiter prefix: the counter key is "limiter::ip:<client>:<window>" under "db:"
    assert vk1(valkey.port, "GET", f"db:limiter::ip:127.0.0.1:{w}", db=5) == b"48"


def test_valkey_username_and_password(gw: Server, auth_valkey: ValkeyServer) -> None:
    port = auth_valkey.port
    log_in(gw, port, "/s/user", "user:", auth=(PASSWORD,))
    users = vk1(port, "CLIENT", "LIST", auth=(PASSWORD,)).decode()
    assert f"user={USER} " in users, users
    log_in(gw, port, "/s/password", "pw:", auth=(USER, USER_PASSWORD))


def revoke(port: int) -> None:
    """Changes REVOKED_USER's password on the server and drops its connections."""
    assert (
        vk1(port, "ACL", "SETUSER", REVOKED_USER, "resetpass", ">changed", auth=(PASSWORD,)) == "OK"
    )
    vk1(port, "CLIENT", "KILL", "USER", REVOKED_USER, auth=(PASSWORD,))


def test_valkey_password_changed_under_the_gateway_is_a_clear_503(
    gw: Server, auth_valkey: ValkeyServer
) -> None:
    """The gateway started with the right password; the server then changes it: the next
    requests get a clean 503, and the log says AUTH was refused (never the password)."""
    assert gw.get("/s/revoked", headers=RETURNING)[0] == 200
    before = len(gw.output())
    revoke(auth_valkey.port)
    status, headers, body = gw.get("/s/revoked", headers=RETURNING)
    unavailable(status, body)
    assert "Set-Cookie" not in headers
    log = gw.output_after(before, "AUTH failed", "WRONGPASS")
    assert "AUTH failed" in log and "WRONGPASS" in log and "password" in log, log
    assert USER_PASSWORD not in log


def test_storage_failure_reason_is_logged(
    gw: Server, valkey: ValkeyServer, backlog_port: int
) -> None:
    """When a middleware answers 503 because its storage failed, the log must say why (the
    storage's error: which server, refused / timed out), not only that it failed: an
    operator cannot tell a wrong address from a dead server otherwise."""
    for path in ("/s/wrong-host", "/s/slow-connect"):
        unavailable(*gw.get(path, headers=RETURNING)[::2])
    expected = [f"127.0.0.2:{valkey.port}", f"127.0.0.1:{backlog_port}"]
    # From the start: an earlier test may have met the same failure, and repeats within 10 s
    # are held back and summarised (plughost.serving.logflood).
    log = gw.output_after(0, *expected)
    missing = [text for text in expected if text not in log]
    assert not missing, f"not in the log: {missing}; the log has:\n{log}"


@pytest.mark.parametrize(
    "auth, reply",
    [
        ({"password": WRONG_PASSWORD}, "WRONGPASS"),
        ({}, "NOAUTH"),
        ({"password": PASSWORD, "db": 99999}, "DB index is out of range"),
    ],
    ids=["wrong-password", "no-password", "bad-db"],
)
def test_valkey_refusing_the_storage_settings_stops_the_start(
    tmp_path: Path,
    test_plugin_dir: Path,
    auth_valkey: ValkeyServer,
    auth: dict[str, Any],
    reply: str,
) -> None:
    """A server that answers but refuses the password or db is a configuration error found
    at start (one connection at create); an unreachable server is only a warning."""
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "plugins.yaml").write_text(
        json.dumps(
            {"plugins": [{"path": str(test_plugin_dir / f"{n}.so")} for n in ("valkey", "static")]}
        )
    )
    (folder / "storages.yaml").write_text(
        json.dumps(
            {
                "storages": {
                    "V": {
                        "use": "plugins.valkey.storages.ValkeyStorage",
                        "config": {"port": auth_valkey.port, **auth},
                    },
                    "Later": {
                        "use": "plugins.valkey.storages.ValkeyStorage",
                        "config": {"port": free_port(), "connectTimeout": "200ms"},
                    },
                }
            }
        )
    )
    (folder / "actions.yaml").write_text(
        json.dumps({"actions": {"Ok": {"use": "plugins.static.actions.StaticAction"}}})
    )
    (folder / "routes.yaml").write_text(
        json.dumps({"routes": {"R": {"gatewayPath": "/", "methods": ["GET"], "action": "Ok"}}})
    )
    done = subprocess.run(
        [PLUGHOST, "check", "--config", str(folder)], capture_output=True, text=True, timeout=60
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "storages.V" in out and reply in out and "Traceback" not in out, out
    assert "storages.Later" not in out  # not reachable yet: a warning, not a problem
    assert WRONG_PASSWORD not in out and PASSWORD not in out


def test_valkey_connect_timeout(gw: Server, backlog_port: int) -> None:
    """connectTimeout 250ms (commandTimeout 5s) against a server that never completes the
    TCP handshake: a 503 after about 250 ms, not after the 2 s default."""
    t0 = time.monotonic()
    status, _, body = gw.get("/s/slow-connect", headers=RETURNING)
    elapsed = time.monotonic() - t0
    unavailable(status, body)
    assert 0.2 <= elapsed < 1.5, elapsed


# -------------------------------------------------------------------------------- session


def issued_now() -> str:
    """The reserved entry that marks a session id as just issued (no rotation due)."""
    return f"__issued={int(time.time() * 1000)}"


def test_session_cookie_defaults_forward_and_rotation(gw: Server, valkey: ValkeyServer) -> None:
    # a new session: Seam's cookie defaults, and nothing stored until it holds data
    status, headers, body = gw.get("/s/default/a", headers={"X-User-Id": "spoofed"})
    sent = received(status, body)
    assert "x-user-id" not in sent and "x-role" not in sent  # a client cannot supply them
    sid, attrs = one_cookie(headers, "session_id")
    check_expires(attrs, 7200)
    assert attrs.keys() == {"Max-Age", "Expires", "Path", "SameSite"}, attrs
    assert (attrs["Path"], attrs["SameSite"]) == ("/", "Lax")
    key = f"{PREFIX}session:{sid}"
    assert vk1(valkey.port, "EXISTS", key) == 0

    # session data written by a backend (URL-encoded), the id still young: the data is
    # forwarded, nothing is written back, no Set-Cookie, the TTL is left alone
    data = f"{issued_now()}&user_id=42&role=admin+user&x=%26"
    assert vk1(valkey.port, "SET", key, data, "PX", 50_000) == "OK"
    status, headers, body = gw.get(
        "/s/default/b", headers={"Cookie": f"theme=dark; session_id={sid}", "X-Role": "spoofed"}
    )
    sent = received(status, body)
    assert (sent["x-user-id"], sent["x-role"]) == ("42", "admin user")
    assert "__issued" not in json.dumps(sent)  # reserved entries are never forwarded
    assert "Set-Cookie" not in headers
    assert 0 < pttl(valkey.port, key) <= 50_000
    assert vk1(valkey.port, "GET", key) == data.encode()

    # data without __issued counts as due: the id rotates, the data moves to the new id, the
    # old one becomes a marker for autoRenewGracePeriod (10 s by default)
    vk1(valkey.port, "SET", key, "user_id=42&role=admin", "PX", 50_000)
    status, headers, body = gw.get("/s/default/c", headers={"Cookie": f"session_id={sid}"})
    assert received(status, body)["x-user-id"] == "42"
    new, attrs = one_cookie(headers, "session_id")
    assert new != sid
    check_expires(attrs, 7200)
    assert vk1(valkey.port, "GET", key) == f"__movedTo={new}".encode()
    assert 0 < pttl(valkey.port, key) <= 10_000
    moved = vk1(valkey.port, "GET", f"{PREFIX}session:{new}")
    assert re.fullmatch(rb"__issued=\d{13}&user_id=42&role=admin", moved), moved
    assert 7_100_000 < pttl(valkey.port, f"{PREFIX}session:{new}") <= 7_200_000
    # a request still carrying the old id (in flight meanwhile) reaches the same session
    status, headers, body = gw.get("/s/default/d", headers={"Cookie": f"session_id={sid}"})
    assert received(status, body)["x-user-id"] == "42"
    assert one_cookie(headers, "session_id")[0] == new

    # a malformed id gets a new, random one; an unknown well-formed one is an empty session
    # (nothing stored, nothing sent)
    for claimed in ("../etc", sid.upper()):
        status, headers, body = gw.get("/s/default/e", headers={"Cookie": f"session_id={claimed}"})
        fresh, _ = one_cookie(headers, "session_id")
        assert fresh not in (claimed, sid, new)
        assert "x-user-id" not in received(status, body)
    status, headers, body = gw.get("/s/default/e", headers={"Cookie": "session_id=" + "ab" * 16})
    assert "x-user-id" not in received(status, body) and "Set-Cookie" not in headers
    assert vk1(valkey.port, "EXISTS", f"{PREFIX}session:{'ab' * 16}") == 0


def test_session_cookie_attributes_and_rotation_without_grace(
    gw: Server, valkey: ValkeyServer
) -> None:
    status, headers, body = gw.get("/s/attrs")
    assert status == 200, body
    sid, attrs = one_cookie(headers, "sid")
    check_expires(attrs, 600)
    assert attrs == {
        "Max-Age": "600",
        "Expires": attrs["Expires"],
        "Domain": "example.com",
        "Path": "/s/attrs",
        "Secure": "",
        "HttpOnly": "",
        "SameSite": "None",
    }
    key = f"plughost:session:{sid}"
    assert vk1(valkey.port, "EXISTS", key) == 0  # not stored until it holds data
    vk1(valkey.port, "SET", key, f"{issued_now()}&a=0", "PX", 600_000)
    # the id comes back in cookie "sid" (not session_id): a known, young session
    status, headers, _ = gw.get("/s/attrs", headers={"Cookie": f"session_id=x; sid={sid}"})
    assert status == 200 and "Set-Cookie" not in headers
    # issued 6 minutes ago: older than autoRenewAfter (5m), so the id rotates; with
    # autoRenewGracePeriod 0 the old id is deleted at once
    vk1(valkey.port, "SET", key, f"__issued={int(time.time() * 1000) - 360_000}&a=1", "PX", 240_000)
    status, headers, _ = gw.get("/s/attrs", headers={"Cookie": f"sid={sid}"})
    new, attrs = one_cookie(headers, "sid")
    assert new != sid and attrs["Max-Age"] == "600"
    assert vk1(valkey.port, "EXISTS", key) == 0
    assert vk1(valkey.port, "GET", f"plughost:session:{new}").endswith(b"&a=1")
    status, headers, _ = gw.get("/s/attrs", headers={"Cookie": f"sid={sid}"})
    assert status == 200 and "Set-Cookie" not in headers  # the old id leads to nothing


def test_session_strict_session_only_in_memory(gw: Server) -> None:
    status, headers, body = gw.get("/s/strict")
    assert status == 200, body
    sid, attrs = one_cookie(headers, "session_id")
    assert attrs == {"Path": "/", "SameSite": "Strict"}  # no Max-Age/Expires
    status, headers, _ = gw.get("/s/strict", headers={"Cookie": f"session_id={sid}"})
    assert status == 200 and "Set-Cookie" not in headers  # found in memory: no new id


def test_session_header_lookup(gw: Server, valkey: ValkeyServer) -> None:
    status, headers, body = gw.get("/s/header/x")
    received(status, body)
    sid = headers["X-Session-Id"]
    assert HEX32.match(sid) and "Set-Cookie" not in headers
    key = f"{PREFIX}session:{sid}"
    vk1(valkey.port, "SET", key, f"{issued_now()}&user_id=7", "PX", 60_000)
    status, headers, body = gw.get(
        "/s/header/y", headers={"X-Session-Id": sid, "Cookie": "session_id=" + "0" * 32}
    )
    sent = received(status, body)
    assert sent["x-user-id"] == "7" and "x-role" not in sent
    assert "X-Session-Id" not in headers and "Set-Cookie" not in headers  # young: unchanged
    # a due id rotates: the new one comes back in the header
    vk1(valkey.port, "SET", key, "user_id=7", "PX", 60_000)
    status, headers, body = gw.get("/s/header/z", headers={"X-Session-Id": sid})
    assert received(status, body)["x-user-id"] == "7"
    assert HEX32.match(headers["X-Session-Id"]) and headers["X-Session-Id"] != sid


def test_session_disable_auto_renew(gw: Server, valkey: ValkeyServer) -> None:
    status, headers, body = gw.get("/s/norenew")
    assert status == 200, body
    sid, attrs = one_cookie(headers, "nr")
    check_expires(attrs, 3600)
    key = f"{PREFIX}session:{sid}"
    assert vk1(valkey.port, "EXISTS", key) == 0
    # no __issued (due for any rotating middleware) and a short TTL: never rotated, never
    # refreshed
    vk1(valkey.port, "SET", key, "a=1", "PX", 50_000)
    for _ in range(2):
        status, headers, body = gw.get("/s/norenew", headers={"Cookie": f"nr={sid}"})
        assert status == 200 and "Set-Cookie" not in headers, body
    assert vk1(valkey.port, "GET", key) == b"a=1"
    assert 0 < pttl(valkey.port, key) <= 50_000


def test_session_disable_forward(gw: Server, valkey: ValkeyServer) -> None:
    status, headers, body = gw.get("/s/noforward/x")
    received(status, body)
    sid, _ = one_cookie(headers, "nf")
    vk1(
        valkey.port,
        "SET",
        f"{PREFIX}session:{sid}",
        f"{issued_now()}&user_id=9&role=admin",
        "PX",
        60_000,
    )
    status, headers, body = gw.get(
        "/s/noforward/y", headers={"Cookie": f"nf={sid}", "X-User-Id": "spoofed"}
    )
    sent = received(status, body)
    assert "x-user-id" not in sent and "x-role" not in sent
    assert "Set-Cookie" not in headers  # the session itself was found


# -------------------------------------------------------------------------------- limiter


def test_limiter_seam_defaults(gw: Server) -> None:
    window_start(60)
    check_limit(gw, "/l/default/ok", 5, 60)  # 5 per 60 s


def test_limiter_exact_limit_and_counter_key(gw: Server, valkey: ValkeyServer) -> None:
    window_start(3600)
    w = window(3600)
    check_limit(gw, "/l/exact/ok", 3, 3600)
    status, headers, _ = gw.get("/l/exact/ok")
    assert status == 429
    # "<storage prefix>limiter:<prefix>:ip:<client>:<window>"; refused requests count too
    key = f"{PREFIX}limiter:exact:ip:127.0.0.1:{w}"
    assert vk1(valkey.port, "GET", key) == b"5"
    assert 0 < pttl(valkey.port, key) <= 3_600_000


def test_limiter_memory_storage_counts_failed_requests(gw: Server) -> None:
    window_start(3600)
    status, headers, _ = gw.get("/l/memory/fail")
    assert status == 500 and rate_headers(headers)[:2] == (2, 1)
    status, headers, _ = gw.get("/l/memory/ok")
    assert status == 200 and rate_headers(headers)[:2] == (2, 0)
    assert gw.get("/l/memory/ok")[0] == 429


def test_limiter_skip_failed_requests(gw: Server) -> None:
    window_start(3600)
    for _ in range(4):
        status, headers, _ = gw.get("/l/skipfail/fail")
        assert status == 500 and rate_headers(headers)[:2] == (2, 2)  # not counted
    check_limit(gw, "/l/skipfail/ok", 2, 3600)


def test_limiter_skip_successful_requests(gw: Server) -> None:
    window_start(3600)
    for _ in range(4):
        status, headers, _ = gw.get("/l/skipok/ok")
        assert status == 200 and rate_headers(headers)[:2] == (2, 2)  # not counted
    assert [gw.get("/l/skipok/fail")[0] for _ in range(3)] == [500, 500, 429]
    assert gw.get("/l/skipok/ok")[0] == 429  # the window is used up


def test_limiter_sliding_window(gw: Server, valkey: ValkeyServer) -> None:
    """10 requests per hour, sliding: 10 requests of the previous window (seeded in Valkey)
    weigh (1 - elapsed fraction) of the current window; refused requests are taken back."""
    exp_ms = 3_600_000
    while True:
        window_start(3600)
        now_ms = int(time.time() * 1000)
        fraction = (now_ms % exp_ms) / exp_ms
        weighted = 10 * (1 - fraction)
        # the plugin truncates the weighted count: stay clear of an integer boundary
        if abs(weighted - round(weighted)) * exp_ms / 10 > 5_000:
            break
        time.sleep(5)
    w = now_ms // exp_ms
    prev = f"{PREFIX}limiter:slide:ip:127.0.0.1:{w - 1}"
    cur = f"{PREFIX}limiter:slide:ip:127.0.0.1:{w}"
    assert vk1(valkey.port, "SET", prev, 10, "PX", exp_ms) == "OK"
    allowed = 10 - int(weighted)
    statuses, remaining = [], []
    for _ in range(allowed + 2):
        status, headers, _ = gw.get("/l/sliding/ok")
        statuses.append(status)
        remaining.append(rate_headers(headers)[1])
    assert statuses == [200] * allowed + [429, 429], (fraction, statuses)
    assert remaining == list(range(allowed - 1, -1, -1)) + [0, 0]
    assert vk1(valkey.port, "GET", cur) == str(allowed).encode()  # refusals taken back
    assert pttl(valkey.port, cur) > exp_ms  # kept 2 x expiration for the next window


def test_limiter_expiration_one_second(gw: Server, valkey: ValkeyServer) -> None:
    window_start(1.0)
    status, headers, _ = gw.get("/l/second/ok")
    assert status == 200 and rate_headers(headers) == (1, 0, 1)
    status, headers, _ = gw.get("/l/second/ok")
    assert status == 429 and headers["Retry-After"] == "1"
    key = f"{PREFIX}limiter:sec:ip:127.0.0.1:{window(1.0)}"
    assert 0 < pttl(valkey.port, key) <= 1000
    window_start(1.0)
    assert gw.get("/l/second/ok")[0] == 200  # a new window


def test_limiter_key_by_header(gw: Server, valkey: ValkeyServer) -> None:
    window_start(3600)
    w = window(3600)
    check_limit(gw, "/l/header/ok", 2, 3600, headers={"X-API-Key": "alice"})
    check_limit(gw, "/l/header/ok", 2, 3600, headers={"X-API-Key": "bob"})
    assert vk1(valkey.port, "GET", f"{PREFIX}limiter:hdr:h:alice:{w}") == b"3"
    # without the header the client address is the key
    check_limit(gw, "/l/header/ok", 2, 3600)
    assert vk1(valkey.port, "GET", f"{PREFIX}limiter:hdr:ip:127.0.0.1:{w}") == b"3"


def test_limiter_key_by_client_address(gw: Server, valkey: ValkeyServer) -> None:
    """key "ip": the client address, here taken from X-Forwarded-For (a trusted proxy)."""
    window_start(3600)
    w = window(3600)
    first = {"X-Forwarded-For": "203.0.113.7"}
    check_limit(gw, "/l/ip/ok", 1, 3600, headers=first)
    assert gw.get("/l/ip/ok", headers={"X-Forwarded-For": "203.0.113.8"})[0] == 200
    assert (
        gw.get("/l/ip/ok", headers={"X-Forwarded-For": "203.0.113.7", "X-API-Key": "other"})[0]
        == 429
    )
    assert vk1(valkey.port, "GET", f"{PREFIX}limiter:ip:ip:203.0.113.7:{w}") == b"3"


def test_limiter_prefix_shares_or_separates_counters(gw: Server) -> None:
    """Two limiters with the same prefix on one storage share their counters; the others
    (other prefixes) are not touched."""
    window_start(3600)
    assert rate_headers(gw.get("/l/sharea/ok")[1])[1] == 2
    assert rate_headers(gw.get("/l/shareb/ok")[1])[1] == 1
    assert rate_headers(gw.get("/l/sharea/ok")[1])[1] == 0
    assert gw.get("/l/shareb/ok")[0] == 429 and gw.get("/l/sharea/ok")[0] == 429


# ----------------------------------------------------------------------------------- csrf


def test_csrf_defaults_on_valkey(gw: Server, valkey: ValkeyServer) -> None:
    status, headers, body = gw.get("/c/default")
    assert status == 200, body
    token, attrs = one_cookie(headers, "csrf_token")
    check_expires(attrs, 3600)  # cookieExpiration 0 means 1 h
    assert attrs.keys() == {"Max-Age", "Expires", "Path", "SameSite"}, attrs
    assert (attrs["Path"], attrs["SameSite"]) == ("/", "Lax")
    key = f"{PREFIX}csrf:{token}"
    assert 3_500_000 < pttl(valkey.port, key) <= 3_600_000
    jar = {"Cookie": f"theme=dark; csrf_token={token}"}

    def post(extra: dict[str, str]) -> tuple[int, Any, bytes]:
        return gw.request("POST", "/c/default", body=b"a=1", headers=extra)

    for hdrs in ({}, jar, {"X-Csrf-Token": token}, {**jar, "X-Csrf-Token": "ab" * 16}):
        status, headers, body = post(hdrs)
        assert status == 403 and json.loads(body)["status"] == 403, (hdrs, body)
        assert "Set-Cookie" not in headers
    for _ in range(2):  # not single-use: the token stays valid, its TTL refreshed
        status, headers, body = post({**jar, "X-Csrf-Token": token})
        assert status == 200 and body.startswith(b"POST /c/default"), body
        assert one_cookie(headers, "csrf_token")[0] == token
    # a forged token (well-formed, in both places) is not in the storage
    forged = "cd" * 16
    assert post({"Cookie": f"csrf_token={forged}", "X-Csrf-Token": forged})[0] == 403
    # the storage decides: a token deleted there is refused
    assert vk1(valkey.port, "DEL", key) == 1
    assert post({**jar, "X-Csrf-Token": token})[0] == 403


def test_csrf_query_lookup_cookie_attributes_single_use_memory(gw: Server) -> None:
    status, headers, body = gw.get("/c/custom")
    assert status == 200, body
    token, attrs = one_cookie(headers, "xsrf")
    check_expires(attrs, 90)
    assert attrs == {
        "Max-Age": "90",
        "Expires": attrs["Expires"],
        "Domain": "example.org",
        "Path": "/c/custom",
        "Secure": "",
        "HttpOnly": "",
        "SameSite": "Strict",
    }

    def post(query_token: str | None, cookie_token: str, **extra: str) -> tuple[int, Any, bytes]:
        query = f"?_csrf={query_token}" if query_token else ""
        return gw.request(
            "POST",
            "/c/custom" + query,
            body=b"",
            headers={"Cookie": f"xsrf={cookie_token}", **extra},
        )

    assert post(None, token, **{"X-Csrf-Token": token})[0] == 403  # the header is not looked at
    status, headers, body = post(token, token)
    assert status == 200, body
    fresh, _ = one_cookie(headers, "xsrf")
    assert fresh != token  # single use: a new token comes back
    assert post(token, token)[0] == 403  # the used one is gone
    assert post(fresh, fresh)[0] == 200


def test_csrf_cookie_lookup_session_only(gw: Server, valkey: ValkeyServer) -> None:
    status, headers, body = gw.get("/c/cookie")
    assert status == 200, body
    token, attrs = one_cookie(headers, "csrf_token")
    assert attrs == {"Path": "/", "Secure": "", "SameSite": "None"}  # no Max-Age/Expires
    assert 3_500_000 < pttl(valkey.port, f"{PREFIX}csrf:{token}") <= 3_600_000  # still 1 h
    status, _, body = gw.request(
        "POST", "/c/cookie", body=b"", headers={"Cookie": f"csrf_token={token}; csrf_copy={token}"}
    )
    assert status == 200, body
    assert (
        gw.request(
            "POST",
            "/c/cookie",
            body=b"",
            headers={"Cookie": f"csrf_token={token}", "X-Csrf-Token": token},
        )[0]
        == 403
    )


def test_csrf_header_name_and_integer_expiration(gw: Server, valkey: ValkeyServer) -> None:
    status, headers, body = gw.get("/c/header")
    assert status == 200, body
    token, attrs = one_cookie(headers, "csrf_token")
    check_expires(attrs, 120)
    assert 110_000 < pttl(valkey.port, f"db:csrf:{token}", db=5) <= 120_000
    jar = {"Cookie": f"csrf_token={token}"}
    assert (
        gw.request("POST", "/c/header", body=b"", headers={**jar, "X-Csrf-Token": token})[0] == 403
    )
    status, _, body = gw.request(
        "POST", "/c/header", body=b"", headers={**jar, "X-XSRF-Token": token}
    )
    assert status == 200, body


# ---------------------------------------------------------------------------------- faults


FAULT_PATHS = ("/f/session", "/f/csrf", "/f/closed", "/f/open", "/plain", "/f/memory")
NEEDS_VALKEY = {"/f/session", "/f/csrf", "/f/closed"}


@dataclass
class Result:
    path: str
    start: float
    end: float
    status: int  # -1: the client failed (connection refused/reset, timeout)
    headers: Any
    body: bytes


class Traffic(threading.Thread):
    """Requests FAULT_PATHS in a loop until stopped, recording every result."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.results: list[Result] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for path in FAULT_PATHS:
                t0 = time.monotonic()
                try:
                    status, headers, body = self.server.get(path, headers=RETURNING, timeout=10)
                except OSError as exc:
                    status, headers, body = -1, {}, repr(exc).encode()
                self.results.append(Result(path, t0, time.monotonic(), status, headers, body))
            time.sleep(0.01)

    def cycles_after(self, t: float) -> int:
        """Complete rounds of FAULT_PATHS started after t."""
        return sum(1 for r in self.results if r.start > t and r.path == FAULT_PATHS[-1])

    def wait(self, cond: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, self.summary()
            assert self.is_alive()
            time.sleep(0.02)

    def summary(self) -> str:
        return "\n".join(
            f"{r.start:.3f} +{r.end - r.start:.3f} {r.path} {r.status} {r.body[:80]!r}"
            for r in self.results[-40:]
        )

    def __enter__(self) -> "Traffic":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join(30)


def check_healthy(results: list[Result]) -> None:
    for r in results:
        assert r.status == 200, (r.path, r.status, r.body)


def check_outage(results: list[Result], max_seconds: float) -> None:
    seen: dict[str, int] = {}
    for r in results:
        seen[r.path] = seen.get(r.path, 0) + 1
        assert r.end - r.start < max_seconds, (r.path, r.end - r.start)
        if r.path in NEEDS_VALKEY:
            unavailable(r.status, r.body)
        else:
            assert r.status == 200, (r.path, r.status, r.body)
        if r.path == "/f/open":  # let through without rate limiting
            assert r.body == b"ok" and "X-RateLimit-Limit" not in r.headers
    assert all(seen.get(p, 0) >= 2 for p in FAULT_PATHS), seen


def test_fault_valkey_killed_then_restarted(gw: Server, valkey: ValkeyServer) -> None:
    pid = gw.proc.pid
    window_start(3600)
    with Traffic(gw) as traffic:
        traffic.wait(lambda: traffic.cycles_after(0) >= 2, 10)
        killed = time.monotonic()
        valkey.kill()
        traffic.wait(lambda: traffic.cycles_after(killed) >= 3, 10)
        restarting = time.monotonic()
        valkey.start()
        up = time.monotonic()
        traffic.wait(lambda: traffic.cycles_after(up) >= 2, 10)
    results = traffic.results
    check_healthy([r for r in results if r.end < killed])
    # connection refused: every answer is immediate
    check_outage([r for r in results if r.start > killed and r.end < restarting], 1.0)
    check_healthy([r for r in results if r.start > up])
    assert gw.alive() and gw.proc.pid == pid  # no crash, no restart
    log = gw.output()
    assert "answering 503" in log and "failOpen is true" in log
    # the counters died with the server: the limits start over and hold again
    status, headers, _ = gw.get("/f/closed")
    assert status == 200 and int(headers["X-RateLimit-Remaining"]) > 99_990


def test_fault_valkey_frozen_answers_within_command_timeout(
    gw: Server, valkey: ValkeyServer
) -> None:
    """A Valkey that accepts connections but does not answer (SIGSTOP): every request that
    needs it fails after commandTimeout (300 ms), requests that do not need it are not
    held up, and everything works again once it resumes."""
    assert valkey.proc is not None
    pid = gw.proc.pid
    try:
        with Traffic(gw) as traffic:
            traffic.wait(lambda: traffic.cycles_after(0) >= 1, 10)
            frozen = time.monotonic()
            os.kill(valkey.proc.pid, signal.SIGSTOP)
            traffic.wait(lambda: traffic.cycles_after(frozen) >= 3, 15)
        outage = [r for r in traffic.results if r.start > frozen]
        check_outage(outage, COMMAND_TIMEOUT_S + 0.7)
        for r in outage:  # the Valkey-bound ones waited for the command timeout, no longer
            if r.path in NEEDS_VALKEY or r.path == "/f/open":
                assert r.end - r.start >= COMMAND_TIMEOUT_S - 0.05, (r.path, r.end - r.start)
        # while requests hang on Valkey (as many as the pool holds), the rest of the
        # gateway answers at once
        with ThreadPoolExecutor(3) as pool:
            stuck = [pool.submit(gw.get, "/f/session", headers=RETURNING) for _ in range(3)]
            time.sleep(0.05)
            t0 = time.monotonic()
            assert gw.get("/plain")[0] == 200
            assert gw.get("/f/memory")[0] == 200
            assert time.monotonic() - t0 < 0.25
            for f in stuck:
                unavailable(*f.result()[::2])
    finally:
        os.kill(valkey.proc.pid, signal.SIGCONT)
    for path in FAULT_PATHS:  # recovered at once, without restarting the gateway
        status, _, body = gw.get(path)
        assert status == 200, (path, status, body)
    assert gw.alive() and gw.proc.pid == pid


def test_fault_idle_pooled_connection_after_restart(gw: Server, valkey: ValkeyServer) -> None:
    """A storage that had no traffic while Valkey restarted still holds connections to the
    old server in its pool: the first request after the restart must not fail on one
    (the server closed them when it died; the pool can tell before using one)."""
    for _ in range(3):  # ValkeyDefaults: a pooled connection, now idle
        if gw.get("/s/attrs", headers=RETURNING)[0] == 200:
            break
    assert gw.get("/s/attrs", headers=RETURNING)[0] == 200
    valkey.kill()
    valkey.start()
    status, _, body = gw.get("/s/attrs", headers=RETURNING)
    assert status == 200, (status, body)
    assert gw.get("/s/attrs", headers=RETURNING)[0] == 200


def test_valkey_over_mutual_tls_through_plughost_serve(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """tls, tlsCaCert, tlsCert/tlsKey, tlsServerName over real HTTP: sessions and a rate
    limit kept in a Valkey (Debian's redis-server) that only speaks TLS and wants a client
    certificate."""
    from valkey_support import make_tls_files, tls_command

    pki = make_tls_files(tmp_path / "pki")
    with ValkeyServer(tmp_path / "tls", tls=pki, tls_auth_clients=True) as srv:
        tls = {
            "port": srv.port,
            "prefix": "tls:",
            "tls": True,
            "tlsCaCert": str(pki.ca),
            "tlsCert": str(pki.client_cert),
            "tlsKey": str(pki.client_key),
            "tlsServerName": "localhost",
        }
        folder = tmp_path / "config"
        folder.mkdir()
        (folder / "gateway.yaml").write_text(
            json.dumps(
                {
                    "plugins": [
                        {"path": str(test_plugin_dir / f"{n}.so")}
                        for n in ("valkey", "session", "limiter", "static")
                    ],
                    "storages": {
                        "Tls": {"use": "plugins.valkey.storages.ValkeyStorage", "config": tls}
                    },
                    "middlewares": {
                        "Session": {"use": LOAD, "config": {"storage": "Tls"}},
                        "Limit": {
                            "use": "plugins.limiter.middlewares.LimiterMiddleware",
                            "config": {"storage": "Tls", "maxConnections": 2},
                        },
                    },
                    "actions": {
                        "Ok": {
                            "use": "plugins.static.actions.StaticAction",
                            "config": {"body": "ok"},
                        }
                    },
                    "routes": {
                        "R": {
                            "gatewayPath": "/",
                            "methods": ["GET"],
                            "middlewares": ["Session", "Limit"],
                            "action": "Ok",
                        }
                    },
                }
            )
        )
        with Server("--config", str(folder / "gateway.yaml")) as gw:
            status, headers, body = gw.get("/")
            assert status == 200 and body == b"ok", body
            sid, _ = one_cookie(headers, "session_id")
            client = {"ca": pki.ca, "cert": pki.client_cert, "key": pki.client_key}
            # the application logs the visitor in: found in the TLS Valkey, rotated there
            assert (
                tls_command(
                    srv.port,
                    b"SET",
                    f"tls:session:{sid}".encode(),
                    b"user_id=1",
                    b"EX",
                    b"600",
                    **client,
                )
                == b"+OK\r\n"
            )
            status, headers, _ = gw.get("/", headers={"Cookie": f"session_id={sid}"})
            assert status == 200
            new, _ = one_cookie(headers, "session_id")
            assert new != sid
            assert gw.get("/")[0] == 429  # the counter lives in the TLS Valkey
        stored = tls_command(srv.port, b"EXISTS", f"tls:session:{new}".encode(), **client)
        assert stored == b":1\r\n"
