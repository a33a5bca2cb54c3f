"""The static action, through the real .so."""

from __future__ import annotations

from pathlib import Path

import pytest

import plughost
from gateway_support import gateways, write_instance_config
from plughost import Next
from plughost.config import ConfigErrors

STATIC = "plugins.static.actions.StaticAction"


@pytest.fixture
def loaded(host: plughost.Host, plugin_dir: Path) -> plughost.Host:
    host.load_plugin(plugin_dir / "static.so")
    return host


def test_answers_its_configured_response(loaded: plughost.Host) -> None:
    action = loaded.create_action(
        STATIC,
        {
            "status": 201,
            "body": "created\n",
            "headers": {"X-Kind": "demo", "Cache-Control": "no-store"},
        },
    )
    with loaded.exchange("POST", "/things") as ex:
        assert action.handle(ex) == Next.RESPOND
        assert ex.status == 201
        assert ex.response_body == b"created\n"
        headers = dict(ex.response_headers)
        assert headers["X-Kind"] == "demo"
        assert headers["Cache-Control"] == "no-store"
        assert headers.get("Content-Type", headers.get("content-type", "")).startswith("text/plain")


def test_defaults(loaded: plughost.Host) -> None:
    action = loaded.create_action(STATIC)
    with loaded.exchange() as ex:
        assert action.handle(ex) == Next.RESPOND
        assert ex.status == 200 and ex.response_body == b""


def test_content_type_header_wins_over_default(loaded: plughost.Host) -> None:
    action = loaded.create_action(
        STATIC, {"body": "{}", "headers": {"Content-Type": "application/json"}}
    )
    with loaded.exchange() as ex:
        action.handle(ex)
        types = [v for k, v in ex.response_headers if k.lower() == "content-type"]
        assert types == ["application/json"]


@pytest.mark.parametrize(
    "config, key",
    [
        ({"status": 99}, "status"),
        ({"status": "ok"}, "status"),
        ({"headers": ["X-A"]}, "headers"),
        ({"headers": {"X-A": "a\r\nInjected: 1"}}, "headers.X-A"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
    ],
)
def test_bad_config_names_the_key(loaded: plughost.Host, config: dict, key: str) -> None:
    with pytest.raises(plughost.ConfigError, match=f"actions.Hello.config.{key}"):
        loaded.create_action(STATIC, config, name="Hello")


def write_config(folder: Path, plugin_dir: Path, config: str) -> Path:
    return write_instance_config(folder, plugin_dir, "action", "Hello", STATIC, config)


def test_options_are_checked_by_name_ignoring_case(tmp_path: Path, plugin_dir: Path) -> None:
    with gateways(tmp_path, write_config, plugin_dir) as gateway:
        with pytest.raises(ConfigErrors) as exc:
            gateway("      body: '{}'\n      contentTpye: application/json\n")
        (problem,) = exc.value.problems
        assert (Path(problem.where.file).name, problem.where.line, problem.where.key) == (
            "actions.yaml",
            6,
            "actions.Hello.config.contentTpye",
        )
        assert problem.message == (
            f"{STATIC} has no option 'contentTpye': did you mean 'contentType'?"
        )

        gw = gateway("      BODY: '{}'\n      contenttype: application/json\n      Status: 201\n")
        r = gw.handle("GET", "/")
        assert (r.status, r.body) == (201, b"{}")
        types = [v for k, v in r.headers if k.lower() == b"content-type"]
        assert types == [b"application/json"]
