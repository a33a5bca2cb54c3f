"""YAML reading that keeps line numbers: composed node trees, duplicate keys and ``${VAR}``.

Files are composed (``yaml.compose``), not constructed, so every value keeps the line it
was written on. On top of PyYAML this module:

* turns syntax errors into one-sentence problems with the file and line;
* reports duplicate keys (PyYAML would silently keep the last one);
* applies YAML merge keys (``<<: *base``) as yaml.v3 does;
* bounds what a file may build: nesting deeper than :data:`MAX_DEPTH`, an alias inside the
  value it names (``a: &a [*a]``), and aliases expanding to more than
  :data:`MAX_ALIAS_EXPANSION` values (a "billion laughs") are problems with a line, found
  while composing, before anything is expanded;
* refuses explicitly tagged scalars whose text is not of their tag (``!!bool maybe``,
  ``!!int abc``), which PyYAML would read as something else;
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
from typing import Any, Iterator, Mapping, cast

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

#: The deepest a value may be nested (maps and lists); real configurations use fewer than 10.
MAX_DEPTH = 64
#: How many more values than it holds a file may reach through aliases.
MAX_ALIAS_EXPANSION = 100_000

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_RESOLVER = yaml.resolver.Resolver()


def line_of(node: yaml.Node | None) -> int:
    """The 1-based line where ``node`` starts (0 for None)."""
    return node.start_mark.line + 1 if node is not None else 0


def is_null(node: yaml.Node | None) -> bool:
    """True for an absent value or an explicit YAML null (``key:`` with nothing after)."""
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG)


def read_yaml_file(
    path: Path, display: str, environ: Mapping[str, str], problems: Problems
) -> yaml.Node | None:
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
        line = data[: exc.start].count(b"\n") + 1
        problems.add(
            Where(display, line),
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x}): save it as UTF-8",
        )
        return None
    return read_yaml_text(text, display, environ, problems)


def read_yaml_text(
    text: str, display: str, environ: Mapping[str, str], problems: Problems
) -> yaml.Node | None:
    """Like :func:`read_yaml_file` for YAML already in memory."""
    try:
        root = yaml.compose(text, Loader=_BoundedLoader)
    except _TooMuch as exc:
        problems.add(Where(display, exc.line, exc.key), exc.message)
        return None
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps the composer shallow
        problems.add(
            Where(display), f"values are nested too deeply: keep them under {MAX_DEPTH} levels"
        )
        return None
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
    _check_tags(root, Where(display), problems, set())
    _substitute(root, Where(display), environ, problems, set())
    return root


class _TooMuch(Exception):
    """A file exceeding one of the composer's bounds: ``message`` says which, ``line``
    where."""

    def __init__(self, mark: yaml.Mark, key: str, message: str) -> None:
        super().__init__(message)
        self.line = mark.line + 1
        self.key = key
        self.message = message


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe composer with bounds on depth and alias expansion, and no alias to a
    value from inside that value. Composing never expands aliases (an alias is the same node
    object again), so the bounds are checked before anything grows."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._open: set[str] = set()  # anchors of values being composed
        self._composed = 0  # nodes composed so far (aliases not counted)
        self._sizes: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded
        self._keys: list[str | int] = []  # the key path of the value being composed

    def _where(self, parent: yaml.Node | None, index: object) -> list[str | int]:
        """The key path of a value composed under ``parent`` at ``index`` (a key node for
        a map's value, a position in a list; a map's key itself adds nothing)."""
        if isinstance(parent, yaml.SequenceNode) and isinstance(index, int):
            return [*self._keys, index]
        if isinstance(parent, yaml.MappingNode) and isinstance(index, yaml.ScalarNode):
            return [*self._keys, str(index.value)]
        return list(self._keys)

    def _fail(self, mark: Any, keys: list[str | int], message: str) -> _TooMuch:
        where = Where("")
        for key in keys[:8]:  # deeper than that, the start of the path tells where
            where = where.child(key)
        return _TooMuch(mark, where.key + ("…" if len(keys) > 8 else ""), message)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        keys = self._where(parent, index)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise self._fail(
                    event.start_mark,
                    keys,
                    f"the alias *{event.anchor} stands inside the value "
                    f"&{event.anchor} names, which would make it endless: refer "
                    "to another value, or write it out",
                )
            return cast(yaml.Node, super().compose_node(parent, index))
        if self._depth >= MAX_DEPTH:
            raise self._fail(
                event.start_mark,
                keys,
                f"values are nested more than {MAX_DEPTH} levels deep here: flatten the structure",
            )
        anchor, outer = event.anchor, self._keys
        self._depth += 1
        self._keys = keys
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = cast(yaml.Node, super().compose_node(parent, index))
        finally:
            self._depth -= 1
            self._keys = outer
            if anchor is not None:
                self._open.discard(anchor)
        self._composed += 1
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._sizes.get(id(child), 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(
                self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value
            )
        if size > self._composed + MAX_ALIAS_EXPANSION:
            raise self._fail(
                node.start_mark,
                keys,
                f"this value grows to more than {MAX_ALIAS_EXPANSION} values "
                "through aliases (*name): write it out, or use fewer aliases",
            )
        self._sizes[id(node)] = size
        return node


#: Explicit tags whose text must read as that type, and what to call it.
_TYPED_TAGS = {
    BOOL_TAG: "true or false",
    INT_TAG: "a whole number",
    FLOAT_TAG: "a number",
    NULL_TAG: "null",
}


def _check_tags(node: yaml.Node, where: Where, problems: Problems, seen: set[int]) -> None:
    """Scalars tagged ``!!bool``, ``!!int``, ``!!float`` or ``!!null`` whose text is not one
    (``!!bool maybe``): a problem each, and the value is skipped by later checks."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        wanted = _TYPED_TAGS.get(node.tag)
        if wanted is None:
            return
        implicit = _RESOLVER.resolve(yaml.ScalarNode, node.value, (True, False))
        if implicit == node.tag or (node.tag == FLOAT_TAG and implicit == INT_TAG):
            return
        short = node.tag.rsplit(":", 1)[-1]
        shown = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        problems.add(
            where,
            f"'{shown}' is tagged !!{short} but is not {wanted}: write {wanted}, or drop the tag",
        )
        node.tag = UNRESOLVED_TAG
        return
    for _key, value, child in children(node, where):
        _check_tags(value, child, problems, seen)


def _error_line(exc: yaml.MarkedYAMLError) -> int:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else 0


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    problem = (exc.problem or "invalid syntax").strip()
    mark = exc.problem_mark
    column = f" at column {mark.column + 1}" if mark is not None else ""
    context = ""
    if (
        exc.context
        and exc.context_mark is not None
        and (mark is None or exc.context_mark.line != mark.line)
    ):
        context = f" ({exc.context.strip()} that starts on line {exc.context_mark.line + 1})"
    hint = "fix the YAML there"
    if "another document" in problem:
        return (
            "a configuration file holds one YAML document, but a second one starts here: "
            "remove the '---' line or move that part to its own file"
        )
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
                problems.add(
                    where.child(text, line_of(key)),
                    f"'{text}' is written twice in {what} (first on line "
                    f"{first[text]}): keep one of them, or rename one",
                )
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


def _substitute(
    node: yaml.Node, where: Where, environ: Mapping[str, str], problems: Problems, seen: set[int]
) -> None:
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
    for _key, item, child in children(node, where):
        _substitute(item, child, environ, problems, seen)


def substitute_text(text: str, environ: Mapping[str, str], where: Where, problems: Problems) -> str:
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
            problems.add(
                where,
                f"environment variable '{name}' is not set: set it, or write "
                f"${{{name}:-default}} to give a default",
            )
            return m.group(0)
        return value

    return _VAR.sub(repl, text)
