"""YAML reading that keeps line numbers: composed node trees, duplicate keys and ``${VAR}``.

Files are composed (``yaml.compose``), not constructed, so every value keeps the line it
was written on. On top of PyYAML this module:

* turns syntax errors into one-sentence problems with the file and line;
* reports duplicate keys (PyYAML would silently keep the last one);
* applies YAML merge keys (``<<: *base``) as yaml.v3 does;
* substitutes environment variables in scalar *values* after parsing, so line numbers stay
  right: ``${VAR}``, ``${VAR:-default}`` (default when unset or empty), ``$${`` for a literal
  ``${``. Plain (unquoted) scalars are re-typed after substitution, so
  ``port: ${PORT:-6379}`` is an int.

Only upper-case names (``${VALKEY_HOST}``) are environment variables, unless a default is
given (``${name:-x}``): ``${pid}``, ``${time}`` or ``${locals:requestid}`` are the logger
plugin's placeholders in Seam's documentation and are left as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Mapping

import yaml

from .problems import Problems, Where

STR_TAG = "tag:yaml.org,2002:str"
NULL_TAG = "tag:yaml.org,2002:null"
BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
#: Tag given to a scalar whose ``${VAR}`` could not be substituted (already reported): checks
#: skip such values instead of reporting them a second time.
UNRESOLVED_TAG = "!plughost/unresolved"

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_RESOLVER = yaml.resolver.Resolver()


def line_of(node: yaml.Node | None) -> int:
    """The 1-based line where ``node`` starts (0 for None)."""
    return node.start_mark.line + 1 if node is not None else 0


def is_null(node: yaml.Node | None) -> bool:
    """True for an absent value or an explicit YAML null (``key:`` with nothing after)."""
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG)


def read_yaml_file(path: Path, display: str, environ: Mapping[str, str],
                   problems: Problems) -> yaml.Node | None:
    """The composed root of the YAML file ``path`` (None if empty or unreadable).

    ``display`` is the file name used in problems (the path as the user gave it).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.add(Where(display), f"cannot read the file: {exc.strerror or exc}")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        problems.add(Where(display, line),
                     f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x}): save it as UTF-8")
        return None
    return read_yaml_text(text, display, environ, problems)


def read_yaml_text(text: str, display: str, environ: Mapping[str, str],
                   problems: Problems) -> yaml.Node | None:
    """Like :func:`read_yaml_file` for YAML already in memory."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        problems.add(Where(display, _error_line(exc)), _syntax_message(exc))
        return None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML always marks its errors
        problems.add(Where(display), f"the YAML cannot be parsed: {exc}")
        return None
    if root is None:
        return None
    _check_duplicates(root, Where(display), problems, set())
    _flatten_merges(root, set())
    _substitute(root, Where(display), environ, problems, set())
    return root


def _error_line(exc: yaml.MarkedYAMLError) -> int:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else 0


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    problem = (exc.problem or "invalid syntax").strip()
    mark = exc.problem_mark
    column = f" at column {mark.column + 1}" if mark is not None else ""
    context = ""
    if exc.context and exc.context_mark is not None and (
            mark is None or exc.context_mark.line != mark.line):
        context = f" ({exc.context.strip()} that starts on line {exc.context_mark.line + 1})"
    hint = "fix the YAML there"
    if "another document" in problem:
        return ("a configuration file holds one YAML document, but a second one starts here: "
                "remove the '---' line or move that part to its own file")
    if "'\\t'" in problem or "\\t" in problem:
        hint = "indent with spaces: YAML does not allow tabs"
    elif "found ','" in problem:
        hint = "remove the comma: a value in a YAML block map ends at the end of the line"
    elif "mapping values are not allowed" in problem:
        hint = "quote the value if it contains ': ', or fix the indentation"
    elif "expected <document start>" in problem or "but found '<block" in problem:
        hint = "check the indentation of this line against the lines above"
    return f"YAML syntax error: {problem}{column}{context}; {hint}"


def children(node: yaml.Node, where: Where) -> Iterator[tuple[yaml.Node | None, yaml.Node, Where]]:
    """(key node or None, value node, where) for the entries of a map or list node."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key, value, where.child(_key_text(key), line_of(key))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            yield None, value, where.child(i, line_of(value))


def _key_text(key: yaml.Node) -> str:
    return str(key.value) if isinstance(key, yaml.ScalarNode) else "<complex key>"


def _check_duplicates(node: yaml.Node, where: Where, problems: Problems, seen: set[int]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, _value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            text = str(key.value)
            if text in first:
                what = where.key or "the top level"
                problems.add(where.child(text, line_of(key)),
                             f"'{text}' is written twice in {what} (first on line "
                             f"{first[text]}): keep one of them, or rename one")
            else:
                first[text] = line_of(key)
    for _key, value, child in children(node, where):
        _check_duplicates(value, child, problems, seen)


def _flatten_merges(node: yaml.Node, seen: set[int]) -> None:
    """Applies ``<<`` merge keys in place; later keys win, as when constructing."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        if any(k.tag == "tag:yaml.org,2002:merge" for k, _ in node.value):
            try:
                yaml.SafeLoader("").flatten_mapping(node)
            except yaml.MarkedYAMLError:
                pass  # left as written; the key '<<' is then reported as unknown
            last: dict[str, int] = {}
            for i, (k, _v) in enumerate(node.value):
                last[str(k.value)] = i
            node.value = [kv for i, kv in enumerate(node.value) if last[str(kv[0].value)] == i]
        for _k, v in node.value:
            _flatten_merges(v, seen)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _flatten_merges(v, seen)


def is_unresolved(node: yaml.Node | None) -> bool:
    """True for a value whose environment variable is not set (see :data:`UNRESOLVED_TAG`)."""
    return node is not None and node.tag == UNRESOLVED_TAG


def _substitute(node: yaml.Node, where: Where, environ: Mapping[str, str], problems: Problems,
                seen: set[int]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        if node.tag == STR_TAG and "${" in node.value:
            before = len(problems)
            value = substitute_text(node.value, environ, where, problems)
            if len(problems) != before:
                node.tag = UNRESOLVED_TAG
            elif value != node.value:
                node.value = value
                if node.style is None:  # plain scalar: type it again (int, bool, null ...)
                    node.tag = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))
        return
    for _key, value, child in children(node, where):
        _substitute(value, child, environ, problems, seen)


def substitute_text(text: str, environ: Mapping[str, str], where: Where,
                    problems: Problems) -> str:
    """``text`` with ``${VAR}`` / ``${VAR:-default}`` replaced; unset variables are problems."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, has_default, default = m.group(1), m.group(2) is not None, m.group(3)
        if not has_default and not _ENV_NAME.fullmatch(name):
            return m.group(0)  # a plugin's own placeholder such as the logger's ${pid}
        value = environ.get(name)
        if has_default and not value:
            return default or ""
        if value is None:
            problems.add(where, f"environment variable '{name}' is not set: set it, or write "
                                f"${{{name}:-default}} to give a default")
            return m.group(0)
        return value

    return _VAR.sub(repl, text)
