"""The requestid middleware, through the real .so and the host's exchange."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import plughost
from gateway_support import gateways, write_instance_config
from plughost import Next
from plughost.config import ConfigErrors

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


@pytest.mark.parametrize(
    "config, key",
    [
        ({"headerName": "Bad Header"}, "headerName"),
        ({"headerName": ["a"]}, "headerName"),
        ({"contextKey": ""}, "contextKey"),
    ],
)
def test_bad_config_names_the_key(loaded: plughost.Host, config: dict, key: str) -> None:
    with pytest.raises(plughost.ConfigError, match=f"middlewares.ReqID.config.{key}: "):
        loaded.create_middleware(REQUEST_ID, config, name="ReqID")


def write_config(folder: Path, plugin_dir: Path, config: str) -> Path:
    return write_instance_config(folder, plugin_dir, "middleware", "ReqID", REQUEST_ID, config)


def test_options_are_checked_by_name_ignoring_case(tmp_path: Path, plugin_dir: Path) -> None:
    with gateways(tmp_path, write_config, plugin_dir) as gateway:
        with pytest.raises(ConfigErrors) as exc:
            gateway("      contextKey: trace\n      headerNmae: X-Trace\n")
        (problem,) = exc.value.problems
        assert (Path(problem.where.file).name, problem.where.line, problem.where.key) == (
            "middlewares.yaml",
            6,
            "middlewares.ReqID.config.headerNmae",
        )
        assert problem.message == (
            f"{REQUEST_ID} has no option 'headerNmae': did you mean 'headerName'?"
        )

        gw = gateway("      headername: X-Trace\n")
        r = gw.handle("GET", "/", headers={"X-Trace": "t-1"})
        assert r.status == 200
        headers = {k.decode().lower(): v.decode() for k, v in r.headers}
        assert headers["x-trace"] == "t-1" and "x-request-id" not in headers
