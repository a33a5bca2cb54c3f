"""``plughost schema``: the JSON Schema editors use, checked with a JSON Schema validator
(the ``jsonschema`` library) against the repository's own configurations and against
mistakes the host refuses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PLUGHOST = str(Path(sys.executable).with_name("plughost"))
LIMITER = "plugins.limiter.middlewares.LimiterMiddleware"


def schema_of(*args: str) -> dict[str, Any]:
    res = subprocess.run([PLUGHOST, "schema", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    schema = json.loads(res.stdout)
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


@pytest.fixture(scope="module")
def validator(plugin_dir: Path) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(schema_of())


def errors(validator: jsonschema.Draft7Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def sample_documents() -> list[tuple[str, Any]]:
    """Every configuration file of the repository, and every YAML example of the docs."""
    files = [*sorted((ROOT / "docker").glob("*/*.yaml")), ROOT / "host/plughost/default.yaml"]
    out = [(str(f.relative_to(ROOT)), yaml.safe_load(f.read_text())) for f in files]
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)):
            document = yaml.safe_load(block)
            if isinstance(document, dict) and document.keys() & {
                "plugins",
                "middlewares",
                "actions",
                "storages",
            }:
                out.append((f"{page.relative_to(ROOT)} yaml block {i + 1}", document))
    return out


@pytest.mark.parametrize(
    "name, document", sample_documents(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_the_repositorys_configurations_validate(
    validator: jsonschema.Draft7Validator, name: str, document: Any
) -> None:
    assert errors(validator, document) == [], name


def test_a_misspelt_option_is_flagged_as_the_user_types(
    validator: jsonschema.Draft7Validator,
) -> None:
    def limiter(**config: Any) -> dict[str, Any]:
        return {"middlewares": {"L": {"use": LIMITER, "config": {"storage": "M", **config}}}}

    found = errors(validator, limiter(maxConnection=3))
    assert len(found) == 1 and found[0].startswith("middlewares/L/config: 'maxConnection' "), found
    assert errors(validator, limiter(maxConnections="many"))
    assert errors(validator, limiter(maxConnections=0))  # below the minimum of 1
    assert errors(validator, {"middlewares": {"L": {"use": LIMITER, "config": {}}}})  # storage
    # What the host accepts, the schema accepts: any case, ${VAR}, text for numbers.
    assert (
        errors(
            validator,
            limiter(MAXCONNECTIONS=3, expiration="${WINDOW:-60s}", skipFailedRequests="true"),
        )
        == []
    )
    assert errors(validator, limiter(expiration="1m30s", maxConnections="10")) == []
    # A mistake in the structure around it.
    assert errors(validator, {"middlewares": {"L": {"uses": LIMITER}}})
    assert errors(validator, {"plugins": [{"path": "x.so", "name": "x"}]})
    assert errors(validator, {"routse": {}})


def test_the_schema_carries_descriptions_defaults_and_choices(plugin_dir: Path) -> None:
    schema = schema_of()
    middleware = schema["properties"]["middlewares"]["additionalProperties"]
    assert LIMITER in middleware["properties"]["use"]["anyOf"][0]["enum"]
    (branch,) = [b for b in middleware["allOf"] if b["if"]["properties"]["use"]["const"] == LIMITER]
    config = branch["then"]["properties"]["config"]
    assert config["required"] == ["storage"]
    max_connections = config["properties"]["maxConnections"]
    assert max_connections["default"] == 5 and max_connections["description"]
    assert max_connections["anyOf"][0] == {"type": "integer", "minimum": 1}


def test_with_config_a_plugin_given_by_path_is_described(
    test_plugin_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"plugins:\n  - path: {test_plugin_dir / 'optiondemo.so'}\n"
        "actions:\n  Echo:\n    use: plugins.optiondemo.actions.EchoOptionsAction\n"
        "    config: {name: x}\n"
        "routes:\n  E:\n    gatewayPath: /\n    methods: [GET]\n    action: Echo\n"
    )
    validator = jsonschema.Draft7Validator(schema_of("--config", str(config)))
    document = yaml.safe_load(config.read_text())
    assert errors(validator, document) == []
    document["actions"]["Echo"]["config"] = {"name": "x", "mode": "slow", "tags": [1, 2, 3, 4]}
    found = errors(validator, document)
    assert any(f.startswith("actions/Echo/config/mode") for f in found), found
    assert any(f.startswith("actions/Echo/config/tags") for f in found), found
