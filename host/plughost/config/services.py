"""``services:`` — Seam's groups of routes.

Each is ``Name: {routes: [...], gatewayBasePath: /api, middlewares: [...]}``.

Seam mounts each route a service lists at ``gatewayBasePath`` joined with the route's path,
with the service's ``middlewares`` before the route's own.
"""

from __future__ import annotations

import yaml

from .fields import Field, as_str, as_str_list, describe, fields_of
from .model import ServiceSpec
from .problems import Problems
from .routes import check_path, once_each
from .yamlload import is_null

SERVICE_KEYS = ("routes", "gatewayBasePath", "middlewares")


def read_services(f: Field, problems: Problems) -> list[ServiceSpec]:
    """The services of one ``services:`` section, in order."""
    node = f.value
    if is_null(node):
        return []
    if not isinstance(node, yaml.MappingNode):
        problems.add(
            f.value_where,
            "services must be a map of names, such as 'Users: {routes: "
            f"[UsersRoute]}}', not {describe(node)}",
        )
        return []
    out = []
    for sf in fields_of(node, f.where, problems, "services").values():
        what = f"service '{sf.name}'"
        if not isinstance(sf.value, yaml.MappingNode) and not is_null(sf.value):
            problems.add(
                sf.value_where,
                f"{what} must be a map with 'routes: [...]', not {describe(sf.value)}",
            )
            continue
        entry = fields_of(sf.value, sf.where, problems, what, SERVICE_KEYS)
        routes = (
            as_str_list(entry["routes"], problems, f"the routes of {what}")
            if "routes" in entry
            else []
        )
        unique = once_each(routes, what, problems, kind="route")
        mws = (
            once_each(
                as_str_list(entry["middlewares"], problems, f"the middlewares of {what}"),
                f"the middlewares of {what}",
                problems,
            )
            if "middlewares" in entry
            else []
        )
        base, base_where = "", None
        if "gatewayBasePath" in entry:
            bf = entry["gatewayBasePath"]
            base_where = bf.value_where
            base = as_str(bf, problems, f"gatewayBasePath of {what}") or ""
            if base:
                _params, errors = check_path(
                    base, owner=what, label="gatewayBasePath", wildcard=False
                )
                for e in errors:
                    problems.add(bf.value_where, e)
        out.append(
            ServiceSpec(
                name=sf.name,
                routes=tuple(n for n, _ in unique),
                where=sf.where,
                routes_where=tuple(w for _, w in unique),
                base_path=base,
                base_path_where=base_where,
                middlewares=tuple(n for n, _ in mws),
                middlewares_where=tuple(w for _, w in mws),
            )
        )
    return out
