"""Typed access to composed YAML nodes; every wrong type becomes a problem, not an exception."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Iterable

import yaml

from .problems import Problems, Where, quoted_list, suggest
from .yamlload import (
    BOOL_TAG,
    FLOAT_TAG,
    INT_TAG,
    NULL_TAG,
    children,
    is_null,
    is_unresolved,
    line_of,
)


@dataclass
class Field:
    """One ``key: value`` of a map node, with the Where of its key."""

    name: str
    key: yaml.Node
    value: yaml.Node
    where: Where

    @property
    def value_where(self) -> Where:
        """Where the value starts (its own line for a block written below the key)."""
        return Where(self.where.file, line_of(self.value), self.where.key)


def describe(node: yaml.Node | None) -> str:
    """What ``node`` is, in words (for "must be X, not Y" messages)."""
    if is_null(node):
        return "empty"
    if isinstance(node, yaml.MappingNode):
        return "a map"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    assert isinstance(node, yaml.ScalarNode)
    if node.tag == BOOL_TAG:
        return f"the boolean {node.value}"
    text, length = str(node.value), ""
    if len(text) > 40:  # a 400-digit number is not repeated in full
        text, length = f"{text[:20]}…{text[-8:]}", f" ({len(text)} characters)"
    if node.tag in (INT_TAG, FLOAT_TAG):
        return f"the number {text}{length}"
    return f"the text '{text}'{length}"


def fields_of(
    node: yaml.Node | None,
    where: Where,
    problems: Problems,
    what: str,
    allowed: Iterable[str] | None = None,
) -> dict[str, Field]:
    """The entries of map ``node`` by key (first one wins; duplicates are reported by the
    YAML reader). ``what`` names the map in messages ("route 'Users'"). Keys not in
    ``allowed`` are reported with the closest allowed key."""
    if is_null(node):
        return {}
    if not isinstance(node, yaml.MappingNode):
        problems.add(
            Where(where.file, line_of(node), where.key),
            f"{what} must be a map of keys, not {describe(node)}",
        )
        return {}
    allowed = list(allowed) if allowed is not None else None
    out: dict[str, Field] = {}
    for key, value in node.value:
        name = str(key.value) if isinstance(key, yaml.ScalarNode) else "<complex key>"
        f = Field(name, key, value, where.child(name, line_of(key)))
        if allowed is not None and name not in allowed:
            hint = suggest(name, allowed) or f": it takes only {quoted_list(allowed)}"
            problems.add(f.where, f"unknown key '{name}' in {what}{hint}")
            continue
        out.setdefault(name, f)
    return out


def as_str(f: Field, problems: Problems, what: str) -> str | None:
    """The text of a scalar (numbers and booleans as written); None (+ problem) otherwise."""
    node = f.value
    if is_unresolved(node):
        return None
    if isinstance(node, yaml.ScalarNode) and node.tag != NULL_TAG:
        return str(node.value)
    problems.add(f.value_where, f"{what} must be a text, not {describe(node)}")
    return None


def as_bool(f: Field, problems: Problems, what: str) -> bool | None:
    """A YAML boolean (true/false); None (+ problem) otherwise."""
    node = f.value
    if is_unresolved(node):
        return None
    if isinstance(node, yaml.ScalarNode) and node.tag == BOOL_TAG:
        return bool(yaml.safe_load(node.value))
    problems.add(f.value_where, f"{what} must be true or false, not {describe(node)}")
    return None


def as_int(f: Field, problems: Problems, what: str) -> int | None:
    """A YAML integer; None (+ problem) otherwise."""
    node = f.value
    if is_unresolved(node):
        return None
    if isinstance(node, yaml.ScalarNode) and node.tag == INT_TAG:
        value = _number(node)
        if isinstance(value, int):
            return value
    problems.add(f.value_where, f"{what} must be a whole number, not {describe(node)}")
    return None


def scalar_value(node: yaml.Node) -> object:
    """The Python value of a scalar node (int, float, bool, str or None); a map or a list
    gives the node itself."""
    if not isinstance(node, yaml.ScalarNode):
        return node
    if node.tag == NULL_TAG:
        return None
    if node.tag in (INT_TAG, FLOAT_TAG):
        return _number(node)
    if node.tag == BOOL_TAG:
        return yaml.safe_load(node.value)
    return str(node.value)


def unreadable_numbers(node: yaml.Node | None, where: Where) -> list[tuple[Where, str]]:
    """The integers in the subtree ``node`` (a plugin's config) that Python refuses to read
    (more than 4300 digits), with where each is written: reported before a plugin sees
    them."""
    out: list[tuple[Where, str]] = []
    seen: set[int] = set()

    def walk(n: yaml.Node, w: Where) -> None:
        if id(n) in seen:
            return
        seen.add(id(n))
        if isinstance(n, yaml.ScalarNode):
            if n.tag == INT_TAG:
                try:
                    yaml.safe_load(n.value)
                except ValueError:
                    out.append((Where(w.file, line_of(n), w.key), str(n.value)))
            return
        for _key, value, child in children(n, w):
            walk(value, child)

    if node is not None:
        walk(node, where)
    return out


def _number(node: yaml.ScalarNode) -> int | float | str:
    """The int or float a plain scalar resolved as such holds. An integer of more than 4300
    digits, which Python will not convert from text, is read exactly through Decimal."""
    try:
        return yaml.safe_load(node.value)
    except ValueError:
        try:
            return int(Decimal(str(node.value).replace("_", "")))
        except (InvalidOperation, ValueError):
            return str(node.value)


def as_str_list(
    f: Field, problems: Problems, what: str, allow_scalar: bool = False
) -> list[tuple[str, Where]]:
    """The texts of a list of scalars with their Wheres; ``allow_scalar`` also takes a single
    text (and splits it at commas). Wrong items are reported and skipped."""
    node = f.value
    if is_null(node) or is_unresolved(node):
        return []
    if allow_scalar and isinstance(node, yaml.ScalarNode):
        parts = [p.strip() for p in str(node.value).split(",")]
        return [(p, f.value_where) for p in parts if p]
    if not isinstance(node, yaml.SequenceNode):
        example = "[A, B]" if not allow_scalar else "[GET, POST]"
        problems.add(
            f.value_where, f"{what} must be a list such as {example}, not {describe(node)}"
        )
        return []
    out = []
    for i, item in enumerate(node.value):
        w = f.where.child(i, line_of(item))
        if is_unresolved(item):
            continue
        if isinstance(item, yaml.ScalarNode) and item.tag != NULL_TAG:
            out.append((str(item.value), w))
        else:
            problems.add(w, f"each item of {what} must be a name, not {describe(item)}")
    return out
