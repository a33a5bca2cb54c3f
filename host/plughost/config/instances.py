"""``storages:``, ``middlewares:`` and ``actions:`` — named instances of plugin types.

Seam writes each as ``Name: {use: <type id>, config: {...}}``; Seam's middlewares page also
writes ``anyRequest: true`` on a middleware that runs for every request.
"""

from __future__ import annotations

import yaml

from .fields import Field, as_bool, as_str, describe, fields_of
from .model import InstanceKind, InstanceSpec
from .problems import Problems, Where
from .yamlload import is_null, is_unresolved, line_of

SECTION_OF: dict[InstanceKind, str] = {
    "storage": "storages",
    "middleware": "middlewares",
    "action": "actions",
}
_EXAMPLE_USE = {
    "storage": "plugins.valkey.storages.ValkeyStorage",
    "middleware": "plugins.requestid.middlewares.RequestIdMiddleware",
    "action": "plugins.httpfw.actions.HttpAction",
}


def instance_keys(kind: InstanceKind) -> tuple[str, ...]:
    """The keys an instance entry of ``kind`` may have."""
    return ("use", "config", "anyRequest") if kind == "middleware" else ("use", "config")


def read_instances(f: Field, kind: InstanceKind, problems: Problems) -> list[InstanceSpec]:
    """The instances of one ``storages:``/``middlewares:``/``actions:`` section, in order."""
    section = SECTION_OF[kind]
    node = f.value
    if is_null(node):
        return []
    if not isinstance(node, yaml.MappingNode):
        problems.add(
            f.value_where,
            f"{section} must be a map of names, such as 'MyName: {{use: "
            f"{_EXAMPLE_USE[kind]}}}', not {describe(node)}",
        )
        return []
    out = []
    for name_f in fields_of(node, f.where, problems, section).values():
        spec = _read_instance(name_f, kind, problems)
        if spec is not None:
            out.append(spec)
    return out


def _read_instance(f: Field, kind: InstanceKind, problems: Problems) -> InstanceSpec | None:
    what = f"{kind} '{f.name}'"
    entry = fields_of(f.value, f.where, problems, what, instance_keys(kind))
    if not isinstance(f.value, yaml.MappingNode) and not is_null(f.value):
        return None
    if "use" not in entry:
        problems.add(
            f.where, f"{what} has no 'use': add 'use: <type id>', e.g. 'use: {_EXAMPLE_USE[kind]}'"
        )
        return None
    use = as_str(entry["use"], problems, f"'use' of {what}")
    if use is None:
        return None
    if not use.strip():
        problems.add(
            entry["use"].value_where,
            f"'use' of {what} is empty: write a type id, e.g. '{_EXAMPLE_USE[kind]}'",
        )
        return None
    config = None
    config_where = f.where.child("config")
    if "config" in entry:
        cf = entry["config"]
        config_where = cf.where
        if isinstance(cf.value, yaml.MappingNode):
            config = cf.value
        elif not is_null(cf.value):
            problems.add(
                cf.value_where,
                f"the config of {what} must be a map of options, not {describe(cf.value)}",
            )
    any_request = False
    if "anyRequest" in entry:
        any_request = bool(as_bool(entry["anyRequest"], problems, f"anyRequest of {what}"))
    return InstanceSpec(
        name=f.name,
        kind=kind,
        use=use.strip(),
        config=config,
        where=f.where,
        use_where=entry["use"].value_where,
        config_where=config_where,
        any_request=any_request,
    )


def storage_references(config: yaml.Node | None, where: Where) -> list[tuple[str, Where]]:
    """Storage names a config names under its top-level ``storage:`` key (the convention of
    Seam's session and limiter plugins)."""
    if not isinstance(config, yaml.MappingNode):
        return []
    for key, value in config.value:
        if (
            isinstance(key, yaml.ScalarNode)
            and key.value == "storage"
            and isinstance(value, yaml.ScalarNode)
            and not is_null(value)
            and not is_unresolved(value)
        ):
            return [(str(value.value), where.child("storage", line_of(key)))]
    return []
