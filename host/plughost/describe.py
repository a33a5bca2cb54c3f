"""``plughost describe``: a plugin's types and the options each takes, for people and tools.

The options come from the schemas plugins declare (ABI 1.2, ``ph_option``); a type without
one is shown as such (its create hook alone checks its config).
"""

from __future__ import annotations

from typing import Any

from .config.options import Option
from .loading.loader import Plugin
from .sdk.pymodules import LoadedModule

NO_SCHEMA = "not declared (an older plugin: its create hook checks its config)"


def plugin_to_json(plugin: Plugin | LoadedModule) -> dict[str, Any]:
    """A plugin's description as ``describe --json`` prints it."""
    return {
        "name": plugin.name,
        "version": plugin.version,
        "abi": "%d.%d" % plugin.abi if plugin.abi else None,
        "file": plugin.path,
        "description": plugin.description,
        "options": _options_json(plugin.options),
        "types": [
            {
                "id": t.id,
                "kind": t.kind,
                "description": t.description,
                "options": _options_json(t.options),
            }
            for t in _types(plugin)
        ],
    }


def describe_text(plugin: Plugin | LoadedModule) -> str:
    """A plugin's description for a terminal."""
    made = f"ABI {plugin.abi[0]}.{plugin.abi[1]}" if plugin.abi else "Python"
    lines = [f"plugin {plugin.name} {plugin.version} ({made}) {plugin.path}".replace("  ", " ")]
    if plugin.description:
        lines.append(f"  {plugin.description}")
    lines += _option_lines("  plugin config", plugin.options)
    for ptype in _types(plugin):
        lines.append("")
        lines.append(f"{ptype.kind} {ptype.id}")
        if ptype.description:
            lines.append(f"  {ptype.description}")
        lines += _option_lines("  options", ptype.options)
    return "\n".join(lines)


def _types(plugin: Plugin | LoadedModule) -> list[Any]:
    return [*plugin.middlewares.values(), *plugin.actions.values(), *plugin.storages.values()]


def _options_json(options: tuple[Option, ...] | None) -> list[dict[str, Any]] | None:
    return None if options is None else [o.to_json() for o in options]


def _flatten(options: tuple[Option, ...], prefix: str = "") -> list[tuple[str, Option]]:
    out: list[tuple[str, Option]] = []
    for option in options:
        out.append((prefix + option.name, option))
        if option.fields:
            out += _flatten(option.fields, f"{prefix}{option.name}.")
    return out


def _option_lines(title: str, options: tuple[Option, ...] | None) -> list[str]:
    if options is None:
        return [f"{title}: {NO_SCHEMA}"]
    if not options:
        return [f"{title}: none"]
    rows = [(name, o.shown_kind, _default(o), o.description) for name, o in _flatten(options)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{title}:"]
    for row in rows:
        cells = [f"{cell:<{w}}" for cell, w in zip(row[:3], widths)]
        lines.append(("    " + "  ".join(cells) + "  " + row[3]).rstrip())
    return lines


def _default(option: Option) -> str:
    if option.required:
        return "required"
    if option.default is None:
        return "-"
    bounds = ""
    if option.minimum is not None or option.maximum is not None:
        unit = {"duration": "s", "size": "B"}.get(option.kind, "")
        low = "" if option.minimum is None else _number(option.minimum) + unit
        high = "" if option.maximum is None else _number(option.maximum) + unit
        bounds = f" [{low}..{high}]"
    return (repr(option.default) if option.default == "" else option.default) + bounds


def _number(x: float) -> str:
    return str(int(x)) if x == int(x) and abs(x) < 1e18 else f"{x:g}"
