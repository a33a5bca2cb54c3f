"""``plughost schema``: a JSON Schema of plughost's configuration files, for editors.

One schema covers both layouts: Seam's folder (``plugins.yaml``, ``middlewares.yaml``, ...,
each holding some of the top-level keys) and one file holding them all. Every type a plugin
declares an option schema for (ABI 1.2) gets its ``config:`` described: completion of
option names, kinds, defaults, bounds and choices, and a misspelt option flagged as the user
types. Keys match ignoring case in plughost, so each option also matches in any case; values
written as ``${VAR}`` are accepted wherever a scalar is.

Draft-07, which the YAML language server (VS Code's YAML extension and others) implements.
"""

from __future__ import annotations

from typing import Any, Iterable

import yaml

from . import __version__
from .config.options import Option
from .config.server import SERVER_KEYS

DRAFT = "http://json-schema.org/draft-07/schema#"
ENV = {"type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"}
TYPE_ID_PATTERN = r"^plugins\.[a-z0-9_]+\.(middlewares|actions|storages)\.[A-Za-z0-9_]+$"
_DURATION = r"^\+?(\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d))*$"
_SIZE = r"^\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]|[bB])?$"
_SERVER_KINDS = {
    "bool": "bool",
    "duration": "duration",
    "size": "size",
    "posint": "int",
    "str": "string",
    "file": "string",
    "route": "string",
    "address": "string",
    "listen": "string",
    "network": "string",
    "ip_list": "list",
}


def configuration_schema(plugins: Iterable[Any]) -> dict[str, Any]:
    """The JSON Schema of a configuration whose plugins are ``plugins`` (loaded or
    described :class:`~plughost.loading.loader.Plugin` objects)."""
    types: dict[str, dict[str, Any]] = {"middleware": {}, "action": {}, "storage": {}}
    for plugin in plugins:
        for kind, table in (
            ("middleware", plugin.middlewares),
            ("action", plugin.actions),
            ("storage", plugin.storages),
        ):
            for type_id, ptype in table.items():
                types[kind][type_id] = ptype
    return {
        "$schema": DRAFT,
        "$id": f"https://plughost.dev/schema/{__version__}/configuration.json",
        "title": "plughost configuration",
        "description": "A plughost (Seam) configuration file: plugins.yaml, storages.yaml, "
        "middlewares.yaml, actions.yaml, routes.yaml, services.yaml, "
        "server.yaml, or one file holding all of them.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "plugins": {
                "type": ["array", "null"],
                "items": _plugin_entry(plugins),
                "description": "plugins in load order",
            },
            "plugin": {
                "type": "object",
                "additionalProperties": False,
                "description": "KrakenD-style: every file of a folder",
                "properties": {
                    "folder": {"type": "string"},
                    "pattern": {"type": "string", "default": ".so"},
                },
                "required": ["folder"],
            },
            "storages": _instances(types["storage"], "storage", any_request=False),
            "middlewares": _instances(types["middleware"], "middleware", any_request=True),
            "globalMiddlewares": {"type": ["array", "null"], "items": {"type": "string"}},
            "actions": _instances(types["action"], "action", any_request=False),
            "routes": _routes(),
            "services": {
                "type": ["object", "null"],
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "routes": {"type": "array", "items": {"type": "string"}},
                        "gatewayBasePath": {"type": "string"},
                        "middlewares": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
            "server": _server(),
            "allowInsecurePermissions": {"type": "boolean"},
        },
    }


def option_schema(option: Option) -> dict[str, Any]:
    """The JSON Schema of one option's value."""
    schema = _value_schema(option.kind, option)
    if option.or_false:
        schema = {"anyOf": [schema, {"const": False}]}
    if option.description:
        schema["description"] = option.description
    if option.default is not None:
        try:
            schema["default"] = yaml.safe_load(option.default) if option.default else ""
        except yaml.YAMLError:
            schema["default"] = option.default
    return schema


def options_object(options: tuple[Option, ...]) -> dict[str, Any]:
    """An object whose keys are ``options`` (in any case), nothing else."""
    props = {o.name: option_schema(o) for o in options}
    return {
        "type": ["object", "null"],
        "properties": props,
        "patternProperties": {_any_case(o.name): props[o.name] for o in options},
        "additionalProperties": False,
        "required": [o.name for o in options if o.required],
    }


def _value_schema(kind: str, option: Option) -> dict[str, Any]:
    bounds = {
        k: v for k, v in (("minimum", option.minimum), ("maximum", option.maximum)) if v is not None
    }
    if kind == "string":
        return {"type": ["string", "number"]}
    if kind == "int":
        return {
            "anyOf": [
                {"type": "integer", **bounds},
                {"type": "string", "pattern": r"^[+-]?\d+$"},
                ENV,
            ]
        }
    if kind == "float":
        return {"anyOf": [{"type": "number", **bounds}, ENV]}
    if kind == "bool":
        return {
            "anyOf": [
                {"type": "boolean"},
                {"type": "string", "pattern": "^([tT][rR][uU][eE]|[fF][aA][lL][sS][eE])$"},
                ENV,
            ]
        }
    if kind == "duration":
        seconds = {"type": "number", "minimum": max(0.0, option.minimum or 0.0)}
        if option.maximum is not None:
            seconds["maximum"] = option.maximum
        return {"anyOf": [seconds, {"type": "string", "pattern": _DURATION}, ENV]}
    if kind == "size":
        number = {"type": "integer", "minimum": max(0.0, option.minimum or 0.0)}
        if option.maximum is not None:
            number["maximum"] = option.maximum
        return {"anyOf": [number, {"type": "string", "pattern": _SIZE}, ENV]}
    if kind == "enum":
        return {
            "anyOf": [
                {"enum": list(option.choices)},
                {"type": "string", "pattern": _any_case_of(option.choices)},
                ENV,
            ]
        }
    if kind == "list":
        item = _value_schema(option.items, option) if option.items else {}
        array: dict[str, Any] = {"type": "array", "items": item}
        if option.minimum is not None:
            array["minItems"] = int(option.minimum)
        if option.maximum is not None:
            array["maxItems"] = int(option.maximum)
        return {"anyOf": [array, {"type": "string"}]} if option.comma_list else array
    if kind == "map":
        if option.fields is not None:
            return options_object(option.fields)
        return {
            "type": "object",
            "additionalProperties": _value_schema(option.items, option) if option.items else {},
        }
    return {}


def _any_case(name: str) -> str:
    return (
        "^"
        + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else _escape(c) for c in name)
        + "$"
    )


def _any_case_of(choices: tuple[str, ...]) -> str:
    return "^(" + "|".join(_any_case(c)[1:-1] for c in choices) + ")$"


def _escape(c: str) -> str:
    return "\\" + c if c in r".^$*+?()[]{}|\/-" else c


def _plugin_entry(plugins: Iterable[Any]) -> dict[str, Any]:
    names = sorted({p.name for p in plugins})
    plugin_config: dict[str, Any] = {"type": ["object", "null"]}
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "path": {"type": "string", "description": "the plugin's .so file"},
            "name": {
                "description": "a bundled or installed plugin, by name",
                "anyOf": [{"enum": names}, {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}],
            },
            "module": {
                "type": "string",
                "description": "a Python module declaring types",
                "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
            },
            "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
            "config": plugin_config,
        },
        "oneOf": [{"required": ["path"]}, {"required": ["name"]}, {"required": ["module"]}],
    }


def _instances(types: dict[str, Any], kind: str, any_request: bool) -> dict[str, Any]:
    """``storages:``/``middlewares:``/``actions:``: names -> {use, config}."""
    base: dict[str, Any] = {
        "use": {
            "description": f"the {kind} type",
            "anyOf": [{"enum": sorted(types)}, {"type": "string", "pattern": TYPE_ID_PATTERN}],
        },
        "config": {"type": ["object", "null"]},
    }
    if any_request:
        base["anyRequest"] = {"type": "boolean"}
    branches = []
    for type_id, ptype in sorted(types.items()):
        if ptype.options is None:
            continue
        config = options_object(ptype.options)
        if ptype.description:
            config["description"] = ptype.description
        branches.append(
            {
                "if": {"properties": {"use": {"const": type_id}}, "required": ["use"]},
                "then": {"properties": {"config": config}},
            }
        )
    instance: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": base,
        "required": ["use"],
    }
    if branches:
        instance["allOf"] = branches
    return {"type": ["object", "null"], "additionalProperties": instance}


def _routes() -> dict[str, Any]:
    methods = {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}
    names = {"type": "array", "items": {"type": "string"}}
    by_name: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["action"],
        "properties": {
            "gatewayPath": {"type": "string"},
            "path": {"type": "string"},
            "methods": methods,
            "method": methods,
            "middlewares": names,
            "action": {"type": "string"},
        },
    }
    listed = {**by_name, "properties": {**by_name["properties"], "name": {"type": "string"}}}
    return {
        "anyOf": [
            {"type": "object", "additionalProperties": by_name},
            {"type": "array", "items": listed},
            {"type": "null"},
        ]
    }


def _server() -> dict[str, Any]:
    props = {}
    for key, (_attr, kind) in SERVER_KEYS.items():
        option = Option(
            key,
            _SERVER_KINDS.get(kind, "string"),
            items="string" if kind == "ip_list" else None,
            comma_list=kind == "ip_list",
        )
        props[key] = _value_schema(option.kind, option)
    return {"type": ["object", "null"], "additionalProperties": False, "properties": props}
