"""``routes:`` in both of Seam's forms, and route path syntax.

Map form (Seam's routes page)::

    routes:
      Users:
        gatewayPath: /api/v1/users/:id
        methods: [GET, POST]
        middlewares: [Auth]
        action: UsersForward

List form (Seam's plugin pages)::

    routes:
      - path: "/api/resource"
        method: "GET"
        middlewares: [Limiter]
        action: Forward

Either form takes either spelling (``gatewayPath``/``path``, ``methods``/``method``, a list
or one text). A list entry may carry ``name:``; without one it is named ``"GET /path"``.
Paths are static segments, ``:param`` segments (identifiers, unique in one path) and a final
``*`` that matches the rest.
"""

from __future__ import annotations

import re

import yaml

from .fields import Field, as_str, as_str_list, describe, fields_of
from .model import ALL_METHODS, HTTP_METHODS, RouteSpec
from .problems import Problems, Where, suggest
from .yamlload import is_null, line_of

ROUTE_KEYS = ("gatewayPath", "path", "methods", "method", "middlewares", "action")
LIST_ROUTE_KEYS = ROUTE_KEYS + ("name",)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_path(
    path: str, *, owner: str, label: str = "path", wildcard: bool = True, params: bool = True
) -> tuple[tuple[str, ...], list[str]]:
    """(param names, problems) of a route path; each problem is a sentence saying the fix.

    Messages read "the {label} '/x' of {owner} ..." (e.g. owner "route 'Users'").
    """
    if not path:
        return (), [f"the {label} of {owner} is empty: write a path such as '/api/v1/users'"]
    what = f"{label} '{path}' of {owner}"
    errors: list[str] = []
    if not path.startswith("/"):
        errors.append(f"the {what} must start with '/': write '/{path.lstrip()}'")
        return (), errors
    bad = sorted({c for c in path if c.isspace() or c in "?#" or ord(c) < 32})
    if bad:
        shown = ", ".join("a space" if c == " " else repr(c) for c in bad)
        errors.append(
            f"the {what} contains {shown}: a route path has no spaces, "
            "query string or fragment; percent-encode the character or remove it"
        )
    segments = path[1:].split("/")
    if len(segments) > 1 and segments[-1] == "":
        segments = segments[:-1]  # one trailing slash is allowed
    if "" in segments and path != "/":
        fixed = re.sub("/+", "/", path)
        errors.append(f"the {what} has an empty segment ('//'): write '{fixed}'")
    names: list[str] = []
    for i, seg in enumerate(segments):
        if seg.startswith(":"):
            name = seg[1:]
            if not params:
                errors.append(
                    f"the {what} has the parameter '{seg}': parameters belong in a route's own path"
                )
            elif not _IDENT.fullmatch(name):
                errors.append(
                    f"the parameter '{seg}' in the {what} is not a name: write "
                    "':' followed by letters, digits or '_' (not starting with a "
                    "digit), e.g. ':id'"
                )
            elif name in names:
                errors.append(
                    f"the parameter ':{name}' appears twice in the {what}: give "
                    "each parameter its own name, e.g. ':userId' and ':orderId'"
                )
            else:
                names.append(name)
        elif "*" in seg:
            if not wildcard:
                errors.append(
                    f"the {what} has a wildcard '*': wildcards belong in a route's own path"
                )
            elif seg != "*":
                stem = seg.replace("*", "")
                fixed = "/" + "/".join(segments[:i] + ([stem] if stem else []) + ["*"])
                errors.append(f"'*' in the {what} must be a whole segment: write '{fixed}'")
            elif i != len(segments) - 1 or path.endswith("*/"):
                errors.append(
                    f"'*' in the {what} is only allowed as the last segment: "
                    f"write '/{'/'.join(segments[: i + 1])}' and drop what follows"
                )
    return tuple(names), errors


def once_each(
    names: list[tuple[str, Where]], what: str, problems: Problems, kind: str = "middleware"
) -> list[tuple[str, Where]]:
    """``names`` (the middlewares of a chain, the routes of a service: ``kind``) with
    repeats reported and left out: a chain runs each middleware once."""
    first: dict[str, Where] = {}
    for name, w in names:
        if name in first:
            problems.add(
                w,
                f"{kind} '{name}' is listed twice in {what} (first on line "
                f"{first[name].line}): list it once",
            )
        else:
            first[name] = w
    return list(first.items())


def pattern_key(path: str, *, strict: bool, case_sensitive: bool) -> str:
    """The shape of a path for conflict checks: parameter names do not matter, nor (unless
    ``strict``) a trailing slash, nor (unless ``case_sensitive``) letter case."""
    segs = [":" if s.startswith(":") else s for s in path.split("/")]
    key = "/".join(segs)
    if not strict and len(key) > 1:
        key = key.rstrip("/") or "/"
    return key if case_sensitive else key.lower()


def read_methods(f: Field, problems: Problems, what: str) -> tuple[str, ...]:
    """Upper-case methods of ``methods:``/``method:`` (a list or one text, commas allowed)."""
    out: list[str] = []
    for text, w in as_str_list(f, problems, f"the methods of {what}", allow_scalar=True):
        m = text.strip().upper()
        if m == "*":
            problems.add(w, f"method '*' of {what} is not a method: write ALL for every method")
        elif m != ALL_METHODS and m not in HTTP_METHODS:
            hint = (
                suggest(m, HTTP_METHODS + (ALL_METHODS,))
                or f": use {', '.join(HTTP_METHODS)} or {ALL_METHODS}"
            )
            problems.add(w, f"'{text}' in the methods of {what} is not an HTTP method{hint}")
        elif m not in out:
            out.append(m)
    return tuple(out)


def read_routes(f: Field, problems: Problems) -> list[tuple[RouteSpec, bool]]:
    """The routes of one ``routes:`` section (either form), in order, each with whether its
    path and methods are valid."""
    node = f.value
    if is_null(node):
        return []
    if isinstance(node, yaml.MappingNode):
        out = []
        for rf in fields_of(node, f.where, problems, "routes").values():
            r = _read_route(rf.value, rf.where, rf.name, f"route '{rf.name}'", ROUTE_KEYS, problems)
            if r is not None:
                out.append(r)
        return out
    if isinstance(node, yaml.SequenceNode):
        out = []
        for i, item in enumerate(node.value):
            w = f.where.child(i, line_of(item))
            r = _read_route(item, w, None, f"route {i + 1} of the list", LIST_ROUTE_KEYS, problems)
            if r is not None:
                out.append(r)
        return out
    problems.add(
        f.value_where,
        "routes must be a map of named routes ('Name: {gatewayPath: "
        f"/x, methods: [GET], action: A}}') or a list ('- path: /x'), "
        f"not {describe(node)}",
    )
    return []


def _one_of(entry: dict[str, Field], a: str, b: str, what: str, problems: Problems) -> Field | None:
    fa, fb = entry.get(a), entry.get(b)
    if fa is not None and fb is not None:
        later = (
            fb
            if (fb.where.line, fb.key.start_mark.column) > (fa.where.line, fa.key.start_mark.column)
            else fa
        )
        problems.add(later.where, f"{what} has both '{a}' and '{b}': keep one of them")
    return fa or fb


def _read_route(
    node: yaml.Node,
    where: Where,
    name: str | None,
    what: str,
    keys: tuple[str, ...],
    problems: Problems,
) -> tuple[RouteSpec, bool] | None:
    """The route and whether its path and methods are usable (for conflict checks)."""
    if not isinstance(node, yaml.MappingNode):
        if is_null(node):
            problems.add(where, f"{what} is empty: give it gatewayPath, methods and action")
        else:
            problems.add(
                Where(where.file, line_of(node), where.key),
                f"{what} must be a map with gatewayPath, methods and action, not {describe(node)}",
            )
        return None
    entry = fields_of(node, where, problems, what, keys)
    if "name" in entry:
        given = as_str(entry["name"], problems, f"the name of {what}")
        if given:
            name = given
            what = f"route '{name}'"
    ok = True
    pf = _one_of(entry, "gatewayPath", "path", what, problems)
    path = ""
    params: tuple[str, ...] = ()
    if pf is None:
        problems.add(where, f"{what} has no path: add 'gatewayPath: /api/v1/...'")
        ok = False
    else:
        text = as_str(pf, problems, f"the path of {what}")
        if text is None:
            ok = False
        else:
            path = text
            params, errors = check_path(path, owner=what)
            for e in errors:
                problems.add(pf.value_where, e)
            ok = ok and not errors
    mf = _one_of(entry, "methods", "method", what, problems)
    methods: tuple[str, ...] = ()
    if mf is None:
        problems.add(
            where, f"{what} has no methods: add 'methods: [GET]' (or [ALL] for every method)"
        )
        ok = False
    else:
        before = len(problems)
        methods = read_methods(mf, problems, what)
        ok = ok and len(problems) == before
        if is_null(mf.value) or (isinstance(mf.value, yaml.SequenceNode) and not mf.value.value):
            problems.add(
                mf.value_where, f"the methods of {what} are empty: list at least one, e.g. [GET]"
            )
            ok = False
    mws: list[tuple[str, Where]] = []
    if "middlewares" in entry:
        mws = once_each(
            as_str_list(entry["middlewares"], problems, f"the middlewares of {what}"),
            f"the middlewares of {what}",
            problems,
        )
    action, action_where = "", where
    if "action" not in entry:
        problems.add(where, f"{what} has no action: add 'action: <name of an action in actions>'")
    else:
        af = entry["action"]
        action_where = af.value_where
        text = as_str(af, problems, f"the action of {what}")
        if text is not None and not text.strip():
            problems.add(
                action_where,
                f"the action of {what} is empty: name an action defined under 'actions:'",
            )
        action = (text or "").strip()
    if name is None:
        name = f"{','.join(methods) or 'ALL'} {path}" if path else where.key
    spec = RouteSpec(
        name=name,
        path=path,
        methods=methods,
        middlewares=tuple(n for n, _ in mws),
        action=action,
        where=where,
        path_where=pf.value_where if pf is not None else where,
        methods_where=mf.value_where if mf is not None else where,
        middlewares_where=tuple(w for _, w in mws),
        action_where=action_where,
        params=params,
    )
    return spec, ok
