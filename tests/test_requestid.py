"""The requestid middleware, through the real .so and the host's exchange."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import plughost
from plughost import Next

REQUEST_ID = "plugins.requestid.middlewares.RequestIdMiddleware"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def loaded(host: plughost.Host, plugin_dir: Path) -> plughost.Host:
    host.load_plugin(plugin_dir / "requestid.so")
    return host


def run(host: plughost.Host, middleware, headers=()) -> plughost.Exchange:
    ex = host.exchange("GET", "/", headers=headers)
    assert middleware.on_request(ex) == Next.CONTINUE
    assert middleware.on_response(ex)
    return ex


def test_generates_a_uuid4_when_absent(loaded: plughost.Host) -> None:
    mw = loaded.create_middleware(REQUEST_ID)
    ids = set()
    for _ in range(50):
        with run(loaded, mw) as ex:
            rid = ex.request_header("x-request-id")
            assert rid and UUID4.match(rid)
            assert ex.response_header("X-Request-ID") == rid
            assert ex.locals["requestId"] == rid.encode()
            ids.add(rid)
    assert len(ids) == 50


def test_keeps_a_sane_incoming_id(loaded: plughost.Host) -> None:
    mw = loaded.create_middleware(REQUEST_ID)
    with run(loaded, mw, {"X-Request-ID": "abc-123"}) as ex:
        assert ex.response_header("x-request-id") == "abc-123"
        assert ex.locals["requestId"] == b"abc-123"


@pytest.mark.parametrize("bad", ["x" * 201, "caf\u00e9", " padded "])
def test_replaces_an_insane_incoming_id(loaded: plughost.Host, bad: str) -> None:
    mw = loaded.create_middleware(REQUEST_ID)
    with run(loaded, mw, {"X-Request-ID": bad}) as ex:
        assert UUID4.match(ex.response_header("x-request-id") or "")


def test_header_and_context_key_are_configurable(loaded: plughost.Host) -> None:
    mw = loaded.create_middleware(REQUEST_ID, {"headerName": "X-Trace", "contextKey": "trace"})
    with run(loaded, mw, {"x-trace": "t-1"}) as ex:
        assert ex.response_header("X-Trace") == "t-1"
        assert ex.locals == {"trace": b"t-1"}
        assert ex.response_header("X-Request-ID") is None


@pytest.mark.parametrize("config, key", [
    ({"headerName": "Bad Header"}, "headerName"),
    ({"headerName": ["a"]}, "headerName"),
    ({"contextKey": ""}, "contextKey"),
])
def test_bad_config_names_the_key(loaded: plughost.Host, config: dict, key: str) -> None:
    with pytest.raises(plughost.ConfigError, match=f"middlewares.ReqID.config.{key}: "):
        loaded.create_middleware(REQUEST_ID, config, name="ReqID")
