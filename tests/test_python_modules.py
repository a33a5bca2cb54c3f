"""Python elements declared in the configuration (``- module: pkg.mod``), served by
``plughost serve`` over HTTP in one chain with native plugins, checked by ``check
--config``, described by ``describe`` and ``schema`` like native types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from gateway_support import Server, private_plugins

PLUGHOST = str(Path(sys.executable).with_name("plughost"))

ELEMENTS = '''
"""acme's gateway elements: a middleware and an action written in Python."""
from plughost.sdk import Option, PythonAction, PythonMiddleware, PythonPlugin

SETTINGS = {}


class Tenant(PythonMiddleware):
    """Puts the tenant in a request header and tags the response."""

    options = (
        Option("header", "string", default="X-Tenant", description="the request header"),
        Option("tier", "enum", default="free", choices=("free", "paid"),
               description="the tier the response announces"),
    )

    def __init__(self, config):
        self.header, self.tier = config["header"], config["tier"]

    def on_request(self, ex):
        ex.set_request_header(self.header, "acme")

    def on_response(self, ex):
        ex.set_response_header("X-Tier", self.tier)


class Hello(PythonAction):
    """Answers with a greeting, the tenant and the request id a native plugin set."""

    options = (
        Option("message", "string", required=True, description="what to say"),
        Option("pause", "duration", default="10ms", maximum=5.0, description="a pause"),
    )

    def __init__(self, config):
        self.message, self.pause = config["message"], config["pause"]

    def handle(self, ex):
        body = "%s %s %s %s pause=%s" % (SETTINGS["greeting"], self.message,
                                        ex.request_header("x-tenant"),
                                        ex.request_header("x-request-id") is not None,
                                        self.pause)
        ex.respond(200, body.encode(), "text/plain")


def init(config):
    SETTINGS.update(config)


PLUGHOST_PLUGIN = PythonPlugin(
    "acme", version="2.0.0", description="acme's elements",
    middlewares=[Tenant], actions=[Hello],
    options=(Option("greeting", "string", default="hi", description="said first"),),
    init=init)
'''

CONFIG = """\
plugins:
  - path: {plugins}/requestid.so
  - path: {plugins}/static.so
  - module: acme_elements
    config:
      greeting: hello
middlewares:
  RequestID:
    use: plugins.requestid.middlewares.RequestIdMiddleware
  Tenant:
    use: plugins.acme.middlewares.Tenant
    config:
      tier: PAID
actions:
  Hello:
    use: plugins.acme.actions.Hello
    config:
      message: from python
  Static:
    use: plugins.static.actions.StaticAction
    config:
      body: native
routes:
  Mixed:
    gatewayPath: /mixed
    methods: [GET]
    middlewares: [RequestID, Tenant]
    action: Hello
  Native:
    gatewayPath: /native
    methods: [GET]
    middlewares: [Tenant]
    action: Static
"""


@pytest.fixture
def folder(tmp_path: Path, plugin_dir: Path) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "acme_elements.py").write_text(ELEMENTS)
    plugins = private_plugins(plugin_dir, tmp_path / "plugins")
    (config / "gateway.yaml").write_text(CONFIG.format(plugins=plugins))
    return config


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PLUGHOST, "check", "--config", str(path)], capture_output=True, text=True, timeout=120
    )


def test_serve_runs_python_and_native_elements_in_one_chain(folder: Path) -> None:
    with Server("--config", str(folder / "gateway.yaml")) as server:
        status, headers, body = server.get("/mixed")
        assert status == 200, body + server.output().encode()
        assert body == b"hello from python acme True pause=0.01"
        assert headers["x-tier"] == "paid"  # the enum's choice, as declared
        assert headers["x-request-id"]  # the native middleware ran in the same chain
        status, headers, body = server.get("/native")
        assert (status, body, headers["x-tier"]) == (200, b"native", "paid")
    assert check(folder / "gateway.yaml").returncode == 0


@pytest.mark.parametrize(
    "edit, where, words",
    [
        (
            ("message: from python", "mesage: from python"),
            ":18: actions.Hello.config.mesage",
            "plugins.acme.actions.Hello has no option 'mesage': did you mean 'message'?",
        ),
        (
            ("tier: PAID", "tier: gold"),
            ":13: middlewares.Tenant.config.tier",
            "'tier' is 'gold', not one of 'free' or 'paid'",
        ),
        (
            ("greeting: hello", "greting: hello"),
            ":6: plugins[2].config.greting",
            "plugin acme has no option 'greting': did you mean 'greeting'?",
        ),
        (
            ("module: acme_elements", "module: acme_elemnts"),
            ":4: plugins[2].module",
            "there is no Python module 'acme_elemnts': install it, or put it on PYTHONPATH",
        ),
        (
            ("use: plugins.acme.actions.Hello", "use: plugins.acme.middlewares.Tenant2"),
            ":16: actions.Hello.use",
            "no loaded plugin provides 'plugins.acme.middlewares.Tenant2'",
        ),
    ],
    ids=["option", "enum", "plugin-option", "module", "type-id"],
)
def test_check_config_reports_python_mistakes_with_file_line_key(
    folder: Path, edit: tuple[str, str], where: str, words: str
) -> None:
    config = folder / "gateway.yaml"
    config.write_text(config.read_text().replace(*edit))
    res = check(config)
    assert res.returncode == 1, res.stdout
    assert f"{config}{where}: {words}" in res.stdout, res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    if where.endswith(".module"):  # its types are not reported unknown on top
        assert res.stdout.splitlines()[-1].startswith("1 problem(s)"), res.stdout


def test_a_module_that_fails_to_import_is_one_sentence(folder: Path) -> None:
    (folder / "acme_elements.py").write_text("x = 1\nraise RuntimeError('no licence key')\n")
    res = check(folder / "gateway.yaml")
    assert res.returncode == 1
    assert (
        "plugins[2].module: importing Python module 'acme_elements' failed: RuntimeError: "
        "no licence key (acme_elements.py:2)"
    ) in res.stdout, res.stdout


def test_describe_and_schema_treat_them_like_native_types(folder: Path) -> None:
    res = subprocess.run(
        [PLUGHOST, "describe", "--json", "module:acme_elements"],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    (plugin,) = json.loads(res.stdout)["plugins"]
    assert (plugin["name"], plugin["version"], plugin["abi"]) == ("acme", "2.0.0", None)
    types = {t["id"]: t for t in plugin["types"]}
    assert types["plugins.acme.actions.Hello"]["options"][0] == {
        "name": "message",
        "kind": "string",
        "description": "what to say",
        "required": True,
    }
    assert types["plugins.acme.middlewares.Tenant"]["description"] == (
        "Puts the tenant in a request header and tags the response."
    )

    res = subprocess.run(
        [PLUGHOST, "schema", "--config", str(folder / "gateway.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    validator = jsonschema.Draft7Validator(json.loads(res.stdout))
    document = yaml.safe_load((folder / "gateway.yaml").read_text())
    assert list(validator.iter_errors(document)) == []
    document["actions"]["Hello"]["config"] = {"mesage": "x"}
    assert list(validator.iter_errors(document))
