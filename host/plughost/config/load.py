"""Loading a whole configuration: a folder of Seam's files, one file, or embedded text.

Every problem is collected (syntax, types, unknown keys, duplicates, references, paths,
methods, conflicts, plugin files) and raised together as :class:`ConfigErrors`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from .durations import shown
from .fields import Field, as_bool, as_str_list, describe, fields_of, unreadable_numbers
from .instances import SECTION_OF, read_instances, storage_references
from .model import (
    ALL_METHODS,
    HTTP_METHODS,
    EndpointSpec,
    GatewayConfig,
    InstanceSpec,
    ModuleSpec,
    PluginSpec,
    RouteSpec,
    ServerSpec,
    ServiceSpec,
)
from .plugins import check_plugin_files, read_plugin_folder, read_plugin_list
from .problems import ConfigErrors, ConfigProblem, Problems, Where, suggest
from .routes import pattern_key, read_routes
from .server import read_server
from .services import read_services
from .yamlload import is_null, line_of, read_yaml_file, read_yaml_text

#: Seam's files, in the order they are read.
CONFIG_FILES = ("plugins", "storages", "middlewares", "actions", "routes", "services", "server")
TOP_KEYS = (
    "plugins",
    "plugin",
    "storages",
    "middlewares",
    "globalMiddlewares",
    "actions",
    "routes",
    "services",
    "server",
    "allowInsecurePermissions",
)
_SINGLE = ("plugins", "plugin", "globalMiddlewares", "server", "allowInsecurePermissions")


def load_config(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    extra_names: Mapping[str, Iterable[str]] | None = None,
) -> GatewayConfig:
    """Loads and statically checks the configuration at ``path``.

    ``path`` is a folder holding any of ``plugins.yaml storages.yaml middlewares.yaml
    actions.yaml routes.yaml services.yaml server.yaml`` (``.yml`` too), or one YAML file
    holding those top-level keys. ``environ`` (default ``os.environ``) feeds ``${VAR}``.
    ``extra_names`` declares names defined outside the files, by kind ("middleware",
    "action"): the Python elements a program registers. Raises :class:`ConfigErrors` with every problem found.
    """
    env = os.environ if environ is None else environ
    given = Path(path)
    problems = Problems()
    files: list[Path] = []
    if given.is_dir():
        for stem in CONFIG_FILES:
            found = [
                given / f"{stem}{ext}"
                for ext in (".yaml", ".yml")
                if (given / f"{stem}{ext}").is_file()
            ]
            if len(found) == 2:
                problems.add(
                    Where(str(found[1])),
                    f"both {found[0].name} and {found[1].name} exist: keep only one of them",
                )
            if found:
                files.append(found[0])
        if not files and not problems:
            others = sorted(
                n
                for n in os.listdir(given)
                if n.endswith((".yaml", ".yml")) and (given / n).is_file()
            )
            hint = (
                (
                    f" ({others[0]} is not one of them: to use it, give its path instead of "
                    "the folder's)"
                )
                if len(others) == 1
                else ""
            )
            problems.add(
                Where(str(given)),
                "the folder holds no configuration file: expected "
                "any of " + ", ".join(f"{s}.yaml" for s in CONFIG_FILES) + hint,
            )
        base_dir = given
    elif given.is_file():
        files = [given]
        base_dir = given.parent
    else:
        problems.add(
            Where(str(given)),
            "the configuration path does not exist: give a folder "
            "holding routes.yaml and the other files, or one YAML file",
        )
        problems.raise_if_any()
    roots = []
    broken = False
    for f in files:
        before = len(problems)
        root = read_yaml_file(f, str(f), env, problems)
        broken |= root is None and len(problems) > before
        roots.append((str(f), root))
    if not problems:
        _refuse_empty(given, files, roots, problems)
    return _build(given, files, roots, base_dir, problems, broken, extra_names)


def _emptiness(root: yaml.Node | None, path: Path | None) -> str | None:
    """What an empty configuration document holds (for messages), or None if it has keys."""
    if root is None:
        try:
            if path is not None and path.stat().st_size == 0:
                return "0 bytes"
        except OSError:
            pass
        return "only comments and white space"
    if isinstance(root, yaml.MappingNode) and not root.value:
        return "only an empty map '{}'"
    if is_null(root):
        return f"only a null document ('{getattr(root, 'value', '') or '---'}')"
    return None


_WRITE = "write the gateway's plugins, actions and routes"


def _refuse_empty(
    given: Path, files: list[Path], roots: list[tuple[str, yaml.Node | None]], problems: Problems
) -> None:
    """Reports a configuration whose every file is empty: serving it would serve nothing
    (on 0.0.0.0:8090), which is never what was meant."""
    whys = [_emptiness(root, Path(display)) for display, root in roots]
    if not roots or None in whys:
        return
    first_line = [line_of(root) or 1 for _display, root in roots]
    if not given.is_dir():
        problems.add(
            Where(roots[0][0], first_line[0]),
            f"the configuration file is empty ({whys[0]}): {_WRITE} in it, or give "
            "the path of the file or folder that holds them",
        )
    elif len(roots) == 1:
        problems.add(
            Where(roots[0][0], first_line[0]),
            f"the configuration file is empty ({whys[0]}) and is the only one in "
            f"{given}: {_WRITE} in it, or give the path of the folder that holds them",
        )
    else:
        names = ", ".join(f.name for f in files)
        problems.add(
            Where(str(given)),
            f"the configuration in the folder is empty: its {len(files)} files "
            f"({names}) hold only comments, white space, '{{}}' or null; {_WRITE} "
            "in them",
        )


def config_from_text(
    text: str,
    *,
    name: str = "<embedded>",
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    extra_names: Mapping[str, Iterable[str]] | None = None,
) -> GatewayConfig:
    """Like :func:`load_config` for one YAML document holding all the keys (the embedded
    default configuration); relative paths are taken from ``base_dir``."""
    env = os.environ if environ is None else environ
    problems = Problems()
    root = read_yaml_text(text, name, env, problems)
    why = _emptiness(root, None)
    if why is not None and not problems:
        problems.add(
            Where(name, line_of(root) or 1), f"the configuration is empty ({why}): {_WRITE} in it"
        )
    return _build(
        Path(name),
        [],
        [(name, root)],
        Path(base_dir),
        problems,
        broken=root is None and bool(problems),
        extra_names=extra_names,
    )


def _build(
    source: Path,
    files: list[Path],
    roots: list[tuple[str, yaml.Node | None]],
    base_dir: Path,
    problems: Problems,
    broken: bool,
    extra_names: Mapping[str, Iterable[str]] | None = None,
) -> GatewayConfig:
    """Reads the sections of the composed files and checks them together. ``broken`` says a
    file could not be parsed: names it may define are then unknown, not missing."""
    sections: dict[str, list[Field]] = {k: [] for k in TOP_KEYS}
    misspelt: set[str] = set()  # sections probably written under a misspelt key
    for display, root in roots:
        if is_null(root):
            continue  # an empty file (reported above when every file is empty)
        if not isinstance(root, yaml.MappingNode):
            problems.add(
                Where(display, line_of(root)),
                f"the file must be a map of top-level keys such as 'routes:', not {describe(root)}",
            )
            broken = True
            continue
        # Top-level keys starting with 'x-' are free, as in Compose files: a place for anchors.
        own = yaml.MappingNode(
            root.tag,
            [(k, v) for k, v in root.value if not str(k.value).startswith("x-")],
            root.start_mark,
            root.end_mark,
        )
        for key, f in fields_of(
            own, Where(display), problems, "the file's top level", TOP_KEYS
        ).items():
            sections[key].append(f)
        for key, _value in own.value:
            if isinstance(key, yaml.ScalarNode) and str(key.value) not in TOP_KEYS:
                misspelt.update(difflib.get_close_matches(str(key.value), TOP_KEYS, 1, 0.6))
    for key in _SINGLE:
        fs = sections[key]
        for extra in fs[1:]:
            problems.add(
                extra.where,
                f"'{key}' is also written at {fs[0].where.file}:"
                f"{fs[0].where.line}: write it in one file only",
            )
    first = {k: (v[0] if v else None) for k, v in sections.items()}

    allow_insecure = False
    if first["allowInsecurePermissions"] is not None:
        allow_insecure = bool(
            as_bool(first["allowInsecurePermissions"], problems, "allowInsecurePermissions")
        )
    default_file = roots[0][0] if len(roots) == 1 else str(source / "server.yaml")
    server = read_server(first["server"], base_dir, problems, default_file)

    # Names written anywhere, valid or not: a reference to a name whose entry has its own
    # problem is not reported again. A kind is unknown when a section of it is unreadable.
    declared: dict[str, set[str]] = {
        k: set() for k in ("storage", "middleware", "action", "route", "service")
    }
    for kind, names in (extra_names or {}).items():
        declared[kind].update(names)
    unknown: set[str] = set(declared) if broken else set()
    unknown.update(
        kind
        for kind, section in list(SECTION_OF.items())
        + [("service", "services"), ("route", "routes")]
        if section in misspelt
    )
    for kind, section in list(SECTION_OF.items()) + [("service", "services")]:
        for f in sections[section]:
            if isinstance(f.value, yaml.MappingNode):
                declared[kind].update(str(k.value) for k, _ in f.value.value)
            elif not is_null(f.value):
                unknown.add(kind)
    for f in sections["routes"]:
        if isinstance(f.value, yaml.MappingNode):
            declared["route"].update(str(k.value) for k, _ in f.value.value)
        elif not isinstance(f.value, yaml.SequenceNode) and not is_null(f.value):
            unknown.add("route")

    tables: dict[str, dict[str, InstanceSpec]] = {}
    for kind, section in SECTION_OF.items():
        table: dict[str, InstanceSpec] = {}
        for f in sections[section]:
            for spec in read_instances(f, kind, problems):
                if spec.name in table:
                    _twice(problems, kind, spec.name, spec.where, table[spec.name].where)
                else:
                    table[spec.name] = spec
        tables[kind] = table
    storages, middlewares, actions = tables["storage"], tables["middleware"], tables["action"]

    routes: dict[str, RouteSpec] = {}
    usable: set[str] = set()
    for f in sections["routes"]:
        for route, ok in read_routes(f, problems):
            if route.name in routes:
                _twice(problems, "route", route.name, route.where, routes[route.name].where)
                continue
            routes[route.name] = route
            declared["route"].add(route.name)
            if ok:
                usable.add(route.name)
    services: dict[str, ServiceSpec] = {}
    for f in sections["services"]:
        for svc in read_services(f, problems):
            if svc.name in services:
                _twice(problems, "service", svc.name, svc.where, services[svc.name].where)
            else:
                services[svc.name] = svc

    plugins: list[PluginSpec] = []
    modules: list[ModuleSpec] = []
    if first["plugin"] is not None:
        plugins += read_plugin_folder(first["plugin"], base_dir, problems)
    if first["plugins"] is not None:
        plugins += read_plugin_list(first["plugins"], base_dir, problems, modules)
    check_plugin_files(plugins, allow_insecure, problems)
    configs = [
        (spec.config, spec.config_where) for table in tables.values() for spec in table.values()
    ] + [(p.config, p.config_where) for p in plugins]
    for block, where in configs:
        for w, text in unreadable_numbers(block, where):
            problems.add(
                w,
                f"{shown(text, text)} is out of range: a number in a config has at "
                "most 4300 digits; write a smaller one, or quote it to pass it as "
                "text",
            )

    known = _Known(declared, unknown)
    globals_, globals_where = _global_middlewares(
        first["globalMiddlewares"], middlewares, known, problems
    )
    _check_references(routes, services, middlewares, actions, plugins, known, problems)
    _check_chains(routes, services, globals_, globals_where, middlewares, problems)
    warnings: list[ConfigProblem] = []
    endpoints = _endpoints(routes, usable, services, server, problems, warnings)
    config = GatewayConfig(
        source=source,
        files=files,
        plugins=plugins,
        storages=storages,
        middlewares=middlewares,
        actions=actions,
        global_middlewares=globals_,
        routes=routes,
        services=services,
        server=server,
        allow_insecure_permissions=allow_insecure,
        global_middlewares_where=globals_where,
        endpoints=endpoints,
        warnings=warnings,
        modules=modules,
    )
    if problems:
        # What could be read despite the problems, so that `check --config` can go on
        # checking plugins and instances (their options) in the same run.
        raise ConfigErrors(problems.items, partial=config)
    return config


def _twice(problems: Problems, kind: str, name: str, where: Where, first: Where) -> None:
    problems.add(
        where,
        f"{kind} '{name}' is defined twice (first at {first.file}:{first.line}): "
        "rename or remove one of them",
    )


class _Known:
    """The names of each kind that are written (``declared``) and the kinds whose sections
    could not be read (``unknown``), for reference checks."""

    def __init__(self, declared: dict[str, set[str]], unknown: set[str]) -> None:
        self.declared = declared
        self.unknown = unknown

    def ref(self, problems: Problems, kind: str, name: str, where: Where, by: str) -> bool:
        """Reports ``name`` if no ``kind`` of that name is written; True when it is."""
        table = self.declared[kind]
        if name in table:
            return True
        if kind in self.unknown:
            return False
        section = SECTION_OF.get(kind, kind + "s")  # type: ignore[call-overload]
        hint = suggest(name, sorted(table))
        if not hint:
            hint = (
                f"; define it under '{section}:'"
                if table
                else f"; define it under '{section}:' (none is defined yet)"
            )
        problems.add(where, f"{by} names the {kind} '{name}', which is not defined{hint}")
        return False


def _global_middlewares(
    f: Field | None, middlewares: dict[str, InstanceSpec], known: _Known, problems: Problems
) -> tuple[tuple[str, ...], tuple[Where, ...]]:
    """``globalMiddlewares`` in order, then middlewares marked ``anyRequest: true`` (by name)."""
    names: list[str] = []
    wheres: list[Where] = []
    if f is not None:
        for name, w in as_str_list(f, problems, "globalMiddlewares"):
            if name in names:
                problems.add(
                    w,
                    f"middleware '{name}' is listed twice in globalMiddlewares "
                    f"(first on line {wheres[names.index(name)].line}): list it "
                    "once",
                )
                continue
            known.ref(problems, "middleware", name, w, "globalMiddlewares")
            names.append(name)
            wheres.append(w)
    for name in sorted(n for n, m in middlewares.items() if m.any_request):
        if name not in names:
            names.append(name)
            wheres.append(middlewares[name].where)
    return tuple(names), tuple(wheres)


def _check_references(
    routes: dict[str, RouteSpec],
    services: dict[str, ServiceSpec],
    middlewares: dict[str, InstanceSpec],
    actions: dict[str, InstanceSpec],
    plugins: list[PluginSpec],
    known: _Known,
    problems: Problems,
) -> None:
    for r in routes.values():
        for name, w in zip(r.middlewares, r.middlewares_where):
            known.ref(problems, "middleware", name, w, f"route '{r.name}'")
        if r.action:
            known.ref(problems, "action", r.action, r.action_where, f"route '{r.name}'")
    for s in services.values():
        for name, w in zip(s.routes, s.routes_where):
            known.ref(problems, "route", name, w, f"service '{s.name}'")
        for name, w in zip(s.middlewares, s.middlewares_where):
            known.ref(problems, "middleware", name, w, f"service '{s.name}'")
    users: list[tuple[str, yaml.Node | None, Where]] = [
        (f"{m.kind} '{m.name}'", m.config, m.config_where)
        for m in list(middlewares.values()) + list(actions.values())
    ]
    users += [(f"plugin {p.path.name}", p.config, p.config_where) for p in plugins]
    for who, config, where in users:
        for name, w in storage_references(config, where):
            known.ref(problems, "storage", name, w, f"the config of {who}")


def _check_chains(
    routes: dict[str, RouteSpec],
    services: dict[str, ServiceSpec],
    globals_: tuple[str, ...],
    globals_where: tuple[Where, ...],
    middlewares: dict[str, InstanceSpec],
    problems: Problems,
) -> None:
    """A chain (global middlewares, then the service's, then the route's) runs each
    middleware once: a service or a route naming a middleware that runs before it anyway is
    reported at its own list item. (Repeats inside one list are reported where it is read.)"""
    global_how: dict[str, str] = {}
    for name, w in zip(globals_, globals_where):
        spec = middlewares.get(name)
        if spec is not None and spec.any_request and w == spec.where:
            global_how[name] = f"it runs on every request (anyRequest: true at {w.file}:{w.line})"
        else:
            global_how[name] = f"it is global (globalMiddlewares at {w.file}:{w.line})"
    reported: set[tuple[str, str]] = set()
    chains: list[tuple[str, RouteSpec | ServiceSpec]] = [
        *(("service", s) for s in services.values()),
        *(("route", r) for r in routes.values()),
    ]
    for kind, chain in chains:
        for name, w in zip(chain.middlewares, chain.middlewares_where):
            if name in global_how:
                problems.add(
                    w,
                    f"middleware '{name}' is listed by {kind} '{chain.name}' but "
                    f"{global_how[name]}, so it would run twice: list it once, in "
                    f"globalMiddlewares or in the {kind}",
                )
                if kind == "route":
                    reported.add((chain.name, name))
    for s in services.values():
        by_service = dict(zip(s.middlewares, s.middlewares_where))
        for route_name in s.routes:
            r = routes.get(route_name)
            if r is None:
                continue
            for name, w in zip(r.middlewares, r.middlewares_where):
                if name in by_service and name not in global_how and (r.name, name) not in reported:
                    sw = by_service[name]
                    problems.add(
                        w,
                        f"middleware '{name}' is listed by route '{r.name}' but "
                        f"service '{s.name}' runs it already ({sw.file}:{sw.line}), "
                        "so it would run twice: list it once, in the service or in "
                        "the route",
                    )
                    reported.add((r.name, name))


def _join(base: str, path: str) -> str:
    """A route path under a service's gatewayBasePath (as Go's path.Join, keeping a trailing
    slash the route wrote)."""
    if not base:
        return path
    base = base.rstrip("/")
    if path == "/":
        return base or "/"
    return base + path


def _endpoints(
    routes: dict[str, RouteSpec],
    usable: set[str],
    services: dict[str, ServiceSpec],
    server: ServerSpec,
    problems: Problems,
    warnings: list[ConfigProblem],
) -> tuple[EndpointSpec, ...]:
    out: list[EndpointSpec] = []
    if services:
        listed = {n for s in services.values() for n in s.routes}
        for s in services.values():
            for name in s.routes:
                r = routes.get(name)
                if r is not None and name in usable:
                    out.append(
                        EndpointSpec(
                            _join(s.base_path, r.path),
                            r.methods,
                            r.name,
                            s.name,
                            s.middlewares + r.middlewares,
                            r.action,
                            r.where,
                        )
                    )
        for r in routes.values():
            if r.name not in listed:
                warnings.append(
                    ConfigProblem(
                        r.where,
                        f"route '{r.name}' is not listed by any "
                        "service, so it is not served (as in "
                        "Seam): add it to a service's routes",
                    )
                )
    else:
        out = [
            EndpointSpec(r.path, r.methods, r.name, None, r.middlewares, r.action, r.where)
            for r in routes.values()
            if r.name in usable
        ]
    _check_conflicts(out, routes, server, problems)
    return tuple(out)


def _check_conflicts(
    endpoints: list[EndpointSpec],
    routes: dict[str, RouteSpec],
    server: ServerSpec,
    problems: Problems,
) -> None:
    strict, case = server.strict_routing, server.case_sensitive
    taken: dict[tuple[str, str], tuple[str, Where | None]] = {}
    health: set[str] = set()
    if not server.disable_health_check:
        for path, key in (
            (server.health_live_route, "healthCheckLiveRoute"),
            (server.health_ready_route, "healthCheckReadyRoute"),
        ):
            label = f"the health check route {path} (server.{key})"
            health.add(label)
            for method in ("GET", "HEAD"):
                taken.setdefault(
                    (method, pattern_key(path, strict=strict, case_sensitive=case)), (label, None)
                )
    for e in endpoints:
        key = pattern_key(e.path, strict=strict, case_sensitive=case)
        methods = HTTP_METHODS if ALL_METHODS in e.methods else e.methods
        label = f"route '{e.route}'" + (f" of service '{e.service}'" if e.service else "")
        clashes: dict[str, list[str]] = {}
        for m in methods:
            other = taken.get((m, key))
            if other is None:
                taken[(m, key)] = (f"{label} ({e.path})", e.where)
            elif other[0] != f"{label} ({e.path})":
                clashes.setdefault(
                    other[0] + (f" at {other[1].file}:{other[1].line}" if other[1] else ""), []
                ).append(m)
        for other_label, ms in clashes.items():
            where = routes[e.route].path_where
            fix = "change the path or the methods of one"
            if other_label in health:
                fix = (
                    "change the route's path, move the health check route in server.yaml, "
                    "or set disableHealthCheck: true"
                )
            problems.add(
                where,
                f"{label} ({', '.join(ms)} {e.path}) matches the same requests "
                f"as {other_label}: {fix}",
            )
