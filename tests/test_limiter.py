"""The limiter plugin (plugins.limiter.middlewares.LimiterMiddleware): in-process with the
memory storage, with a real Valkey server (fault tolerance), and across two `plughost serve`
processes sharing one Valkey over real HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from plughost import Gateway

from gateway_support import Server, gateways, header, storages_yaml
from valkey_support import ValkeyServer

LIMITER = "plugins.limiter.middlewares.LimiterMiddleware"


def limiter_config(
    folder: Path,
    plugin_dir: Path,
    limiters: dict[str, dict[str, Any]],
    *,
    valkey_port: int | None = None,
) -> Path:
    """A Seam config folder: storage Memory (and Valkey), one middleware per entry of
    ``limiters`` and routes /<name>/ok (200) and /<name>/fail (500) behind it."""
    folder.mkdir(parents=True, exist_ok=True)
    plugins = ["memory", "valkey", "static", "limiter"]
    (folder / "plugins.yaml").write_text(
        "plugins:\n" + "".join(f"  - path: {plugin_dir / name}.so\n" for name in plugins)
    )
    (folder / "storages.yaml").write_text(
        storages_yaml("Memory", valkey_port=valkey_port, prefix="lt:")
    )
    (folder / "middlewares.yaml").write_text(
        "middlewares:\n"
        + "".join(
            f"  {name}:\n    use: {LIMITER}\n    config: {json.dumps(cfg)}\n"
            for name, cfg in limiters.items()
        )
    )
    (folder / "actions.yaml").write_text("""\
actions:
  Ok:
    use: plugins.static.actions.StaticAction
    config: {body: ok}
  Fail:
    use: plugins.static.actions.StaticAction
    config: {status: 500, body: fail}
""")
    (folder / "routes.yaml").write_text(
        "routes:\n"
        + "".join(
            f"  {name}Ok:\n    gatewayPath: /{name}/ok\n    methods: [GET]\n"
            f"    middlewares: [{name}]\n    action: Ok\n"
            f"  {name}Fail:\n    gatewayPath: /{name}/fail\n    methods: [GET]\n"
            f"    middlewares: [{name}]\n    action: Fail\n"
            for name in limiters
        )
    )
    return folder


def window_start(seconds: float, *, margin: float = 3.0, offset: float = 0.05) -> None:
    """Waits, if needed, so that the current wall-clock window of ``seconds`` has at least
    ``margin`` seconds left (for windows longer than margin), else for the next window's
    start + offset."""
    now = time.time()
    left = seconds - (now % seconds)
    if seconds > margin and left > margin:
        return
    time.sleep(left + offset)


@pytest.fixture
def gateway_factory(tmp_path: Path, test_plugin_dir: Path) -> Iterator[Any]:
    with gateways(tmp_path, limiter_config, test_plugin_dir) as make:
        yield make


def check_exact(gw: Gateway, path: str, n: int, **kw: Any) -> None:
    for i in range(n):
        r = gw.handle("GET", path, **kw)
        assert r.status == 200, (i, r.status, r.body)
        assert header(r, "X-RateLimit-Limit") == str(n)
        assert header(r, "X-RateLimit-Remaining") == str(n - 1 - i)
        assert 1 <= int(header(r, "X-RateLimit-Reset") or 0) <= 3600
    r = gw.handle("GET", path, **kw)
    assert r.status == 429
    assert json.loads(r.body) == {"error": "too many requests", "status": 429}
    retry = int(header(r, "Retry-After") or 0)
    assert 1 <= retry <= 3600
    assert header(r, "X-RateLimit-Remaining") == "0"
    assert header(r, "X-RateLimit-Limit") == str(n)
    assert header(r, "X-RateLimit-Reset") == str(retry)
    assert gw.handle("GET", path, **kw).status == 429


# ------------------------------------------------------------------------ memory storage


def test_exact_limit_then_429(gateway_factory: Any) -> None:
    window_start(3600)
    gw = gateway_factory({"L": {"storage": "Memory", "maxConnections": 3, "expiration": "1h"}})
    check_exact(gw, "/L/ok", 3)
    # another client address has its own counter
    assert gw.handle("GET", "/L/ok", client_ip="10.0.0.2").status == 200


def test_seam_defaults_five_per_minute(gateway_factory: Any) -> None:
    window_start(60)
    gw = gateway_factory({"L": {"storage": "Memory"}})
    statuses = [gw.handle("GET", "/L/ok").status for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    r = gw.handle("GET", "/L/ok")
    assert 1 <= int(header(r, "Retry-After") or 0) <= 60


def test_skip_failed_requests(gateway_factory: Any) -> None:
    window_start(3600)
    gw = gateway_factory(
        {
            "L": {
                "storage": "Memory",
                "maxConnections": 2,
                "expiration": "1h",
                "skipFailedRequests": True,
            }
        }
    )
    for _ in range(5):
        r = gw.handle("GET", "/L/fail")
        assert r.status == 500
        assert header(r, "X-RateLimit-Remaining") == "2"  # not counted
    check_exact(gw, "/L/ok", 2)


def test_failed_requests_count_by_default(gateway_factory: Any) -> None:
    window_start(3600)
    gw = gateway_factory({"L": {"storage": "Memory", "maxConnections": 2, "expiration": "1h"}})
    assert [gw.handle("GET", "/L/fail").status for _ in range(3)] == [500, 500, 429]


def test_skip_successful_requests(gateway_factory: Any) -> None:
    window_start(3600)
    gw = gateway_factory(
        {
            "L": {
                "storage": "Memory",
                "maxConnections": 2,
                "expiration": "1h",
                "skipSuccessfulRequests": True,
            }
        }
    )
    for _ in range(5):
        assert gw.handle("GET", "/L/ok").status == 200
    assert [gw.handle("GET", "/L/fail").status for _ in range(3)] == [500, 500, 429]
    assert gw.handle("GET", "/L/ok").status == 429  # the window is used up


def test_key_by_header(gateway_factory: Any) -> None:
    window_start(3600)
    gw = gateway_factory(
        {
            "L": {
                "storage": "Memory",
                "maxConnections": 2,
                "expiration": "1h",
                "key": "header:X-API-Key",
            }
        }
    )
    check_exact(gw, "/L/ok", 2, headers={"X-API-Key": "alice"})
    check_exact(gw, "/L/ok", 2, headers={"X-API-Key": "bob"})
    # without the header, the client address is the key
    assert gw.handle("GET", "/L/ok").status == 200


def test_expiry_resets_the_window(gateway_factory: Any) -> None:
    gw = gateway_factory({"L": {"storage": "Memory", "maxConnections": 2, "expiration": "1s"}})
    window_start(1.0)
    assert [gw.handle("GET", "/L/ok").status for _ in range(3)] == [200, 200, 429]
    window_start(1.0)
    assert [gw.handle("GET", "/L/ok").status for _ in range(3)] == [200, 200, 429]


def test_sliding_window_weighs_the_previous_window(gateway_factory: Any) -> None:
    gw = gateway_factory(
        {"L": {"storage": "Memory", "maxConnections": 4, "expiration": "2s", "slidingWindow": True}}
    )
    window_start(2.0)
    assert [gw.handle("GET", "/L/ok").status for _ in range(5)] == [200] * 4 + [429]
    window_start(2.0, offset=0.1)
    # previous 4 weigh ~0.95 -> 3: one more request fits, a fixed window would allow 4
    assert [gw.handle("GET", "/L/ok").status for _ in range(2)] == [200, 429]
    time.sleep(max(0.0, 1.5 - time.time() % 2.0))
    # previous 4 weigh ~0.25 -> 1, current 1: two more fit
    assert [gw.handle("GET", "/L/ok").status for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({}, "storage"),
        ({"storage": "Nope"}, "storage"),
        ({"storage": "Memory", "maxConnections": 0}, "maxConnections"),
        ({"storage": "Memory", "maxConnections": "many"}, "maxConnections"),
        ({"storage": "Memory", "expiration": "-5s"}, "expiration"),
        ({"storage": "Memory", "expiration": 0}, "expiration"),
        ({"storage": "Memory", "slidingWindow": "sometimes"}, "slidingWindow"),
        ({"storage": "Memory", "key": "cookie:x"}, "key"),
        ({"storage": "Memory", "key": "header:"}, "key"),
        ({"storage": "Memory", "key": "header:X API Key"}, "key"),
    ],
)
def test_config_errors_name_the_key(gateway_factory: Any, cfg: dict[str, Any], key: str) -> None:
    with pytest.raises(Exception) as exc:
        gateway_factory({"L": cfg})
    assert f"middlewares.L.config.{key}:" in str(exc.value), str(exc.value)


# ------------------------------------------------------------------------ valkey storage


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    srv = ValkeyServer(tmp_path / "valkey").start()
    try:
        yield srv
    finally:
        srv.stop()


def test_valkey_exact_limit(gateway_factory: Any, valkey: ValkeyServer) -> None:
    window_start(3600)
    gw = gateway_factory(
        {"L": {"storage": "Valkey", "maxConnections": 4, "expiration": "1h"}},
        valkey_port=valkey.port,
    )
    check_exact(gw, "/L/ok", 4)


def test_valkey_down_fail_closed_or_open_then_recovers(
    gateway_factory: Any, valkey: ValkeyServer
) -> None:
    window_start(3600)
    gw = gateway_factory(
        {
            "Closed": {
                "storage": "Valkey",
                "maxConnections": 2,
                "expiration": "1h",
                "prefix": "closed",
            },
            "Open": {
                "storage": "Valkey",
                "maxConnections": 2,
                "expiration": "1h",
                "prefix": "open",
                "failOpen": True,
            },
        },
        valkey_port=valkey.port,
    )
    assert gw.handle("GET", "/Closed/ok").status == 200
    valkey.kill()
    for _ in range(3):
        r = gw.handle("GET", "/Closed/ok")
        assert r.status == 503
        assert json.loads(r.body)["status"] == 503
        r = gw.handle("GET", "/Open/ok")
        assert (r.status, r.body) == (200, b"ok")
    valkey.start()
    # the counters died with the server: limits start over and hold again
    assert [gw.handle("GET", "/Closed/ok").status for _ in range(3)] == [200, 200, 429]
    assert [gw.handle("GET", "/Open/ok").status for _ in range(3)] == [200, 200, 429]


# ------------------------------------------------- two `plughost serve` processes, one Valkey


def test_two_processes_share_one_limit(
    tmp_path: Path, test_plugin_dir: Path, valkey: ValkeyServer
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    n = 10
    folder = limiter_config(
        tmp_path / "config",
        test_plugin_dir,
        {"L": {"storage": "Valkey", "maxConnections": n, "expiration": "1h"}},
        valkey_port=valkey.port,
    )
    servers = [Server("--config", str(folder)) for _ in range(2)]
    try:
        window_start(3600)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: servers[i % 2].get("/L/ok"), range(3 * n)))
        statuses = [status for status, _, _ in results]
        assert statuses.count(200) == n and statuses.count(429) == 2 * n
        for status, headers, _ in results:
            if status == 429:
                assert 1 <= int(headers["Retry-After"]) <= 3600
        # each process alone still sees the shared, used-up window
        assert servers[0].get("/L/ok")[0] == 429 and servers[1].get("/L/ok")[0] == 429
    finally:
        for s in servers:
            s.stop()


def test_header_keys_have_their_own_namespace(gateway_factory: Any) -> None:
    """key: header:X-API-Key: three requests whose API key is the address 127.0.0.1 do not
    use up the budget of the client at 127.0.0.1 (once they shared one counter)."""
    gw = gateway_factory(
        {
            "L": {
                "storage": "Memory",
                "maxConnections": 3,
                "expiration": "1h",
                "key": "header:X-API-Key",
            }
        }
    )
    for _ in range(3):
        assert (
            gw.handle("GET", "/L/ok", {"X-API-Key": "127.0.0.1"}, client_ip="10.9.9.9").status
            == 200
        )
    assert gw.handle("GET", "/L/ok", {"X-API-Key": "127.0.0.1"}, client_ip="10.9.9.9").status == 429
    # the client at 127.0.0.1, without a key, is counted by its address: untouched
    assert gw.handle("GET", "/L/ok", client_ip="127.0.0.1").status == 200
