"""Option schemas (ABI 1.2, ``ph_option``) and the check of a config against one.

A type (or a plugin, for its own ``config:``) that declares its options gets every
instance's config checked here before its create hook runs: unknown keys (with the closest
known one), values of the wrong kind, out of bounds or not among the choices, required
options left out, a key written twice in different case. Every problem carries its file,
line and key. The kinds accept exactly what the host's getters read (``ph_config_int``
takes ``"42"`` as well as ``42``), so a config that passes is one create can read.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import yaml

from .durations import parse_size
from .problems import ConfigProblem, Where, quoted_list
from .yamlload import UNRESOLVED_TAG, line_of

#: ph_option_kind values, by name.
KINDS = {
    1: "string",
    2: "int",
    3: "float",
    4: "bool",
    5: "duration",
    6: "size",
    7: "list",
    8: "map",
    9: "enum",
}

#: ph_option flags.
REQUIRED, MINIMUM, MAXIMUM, COMMA_LIST, OR_FALSE = 0x1, 0x2, 0x4, 0x8, 0x10

_TAG = "tag:yaml.org,2002:"
_WHAT = {
    "string": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "duration": "a duration such as 500ms, 60s or 1h30m",
    "size": "a size such as 4096, 64KB or 4MiB",
    "list": "a list",
    "map": "a map",
    "enum": "one of the choices",
}


@dataclass(frozen=True)
class Option:
    """One declared option (``ph_option``)."""

    name: str
    kind: str  # one of KINDS' values
    description: str = ""
    default: str | None = None  # as a user would write it
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    comma_list: bool = False  # a list option that also takes "a, b, c"
    or_false: bool = False  # `false` is accepted too (turns the option off)
    items: str | None = None  # the kind of a list's items or a free map's values
    choices: tuple[str, ...] = ()
    fields: tuple["Option", ...] | None = None  # a map's declared keys; None: any key

    def to_json(self) -> dict[str, Any]:
        """The option as ``plughost describe --json`` prints it."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "required": self.required,
        }
        if self.default is not None:
            out["default"] = self.default
        for key, value in (
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("items", self.items),
        ):
            if value is not None:
                out[key] = value
        if self.comma_list:
            out["commaSeparated"] = True
        if self.or_false:
            out["orFalse"] = True
        if self.choices:
            out["choices"] = list(self.choices)
        if self.fields is not None:
            out["fields"] = [f.to_json() for f in self.fields]
        return out

    @property
    def shown_kind(self) -> str:
        """The kind for people: ``list of string``, ``enum (Lax, Strict, None)``."""
        if self.kind == "enum" or (self.items == "enum" and self.choices):
            kind = (
                f"{self.kind} ({', '.join(self.choices)})"
                if self.kind == "enum"
                else f"list of {', '.join(self.choices)}"
            )
        elif self.kind in ("list", "map") and self.items:
            kind = f"{self.kind} of {self.items}"
        else:
            kind = self.kind
        return kind + (" or false" if self.or_false else "")


def closest(word: str, names: Any) -> str:
    """The name most like ``word`` ignoring case (a misspelling of it), or ""."""
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else ""


@dataclass
class _Check:
    """The problems of one config, gathered while walking it."""

    owner: str  # "plugins.limiter.middlewares.LimiterMiddleware", for messages
    problems: list[ConfigProblem] = field(default_factory=list)

    def add(self, where: Where, message: str) -> None:
        self.problems.append(ConfigProblem(where, message))


def check_options(
    config: Any, options: tuple[Option, ...], where: Where, owner: str
) -> list[ConfigProblem]:
    """Every problem of ``config`` (a ``yaml.MappingNode``, a dict, or None) against
    ``options``; ``where`` is the place of the config itself (``middlewares.X.config``)."""
    check = _Check(owner)
    if config is None or (isinstance(config, yaml.ScalarNode) and config.tag == _TAG + "null"):
        config = {}
    _check_map(check, config, options, where, top=True)
    return check.problems


def check_block(
    config: Any, options: tuple[Option, ...], file: str, key: str, owner: str
) -> list[ConfigProblem]:
    """:func:`check_options` of a ``config:`` block written in ``file`` at key path ``key``
    (its line is where the block's YAML starts; 0 for plain Python values)."""
    where = Where(file, line_of(config) if isinstance(config, yaml.Node) else 0, key)
    return check_options(config, options, where, owner)


def _entries(node: Any, where: Where) -> Iterator[tuple[str, Any, Where]]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield str(key.value), value, where.child(str(key.value), line_of(key))
    else:
        for key, value in node.items():
            yield str(key), value, where.child(str(key))


def _check_map(
    check: _Check, node: Any, options: tuple[Option, ...], where: Where, top: bool = False
) -> None:
    by_name = {o.name.lower(): o for o in options}
    seen: dict[str, str] = {}
    for key, value, at in _entries(node, where):
        option = by_name.get(key.lower())
        if option is None:
            names = [o.name for o in options]
            hint = closest(key, names)
            what = (
                f"{check.owner} has no option '{key}'"
                if top
                else f"'{where.key.rsplit('.', 1)[-1]}' has no key '{key}'"
            )
            tail = (
                f": did you mean '{hint}'?"
                if hint
                else f": its options are {quoted_list(names)}"
                if names
                else ": it takes no options"
            )
            check.add(at, what + tail)
            continue
        if option.name.lower() in seen:
            check.add(
                at,
                f"'{key}' is written twice (also as '{seen[option.name.lower()]}'): "
                "keys match ignoring case, keep one",
            )
            continue
        seen[option.name.lower()] = key
        _check_value(check, value, option, at)
    for option in options:
        if option.required and option.name.lower() not in seen:
            what = f": {option.description}" if option.description else ""
            owner = f"{check.owner} needs it" if top else "it is required here"
            check.add(
                where.child(option.name, where.line),
                f"'{option.name}' is missing, and {owner}{what}",
            )


def _is_null(node: Any) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "null")


def _is_empty(node: Any) -> bool:
    """An empty map, list or string (what a required option must not be)."""
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        return not node.value
    if isinstance(node, (dict, list, tuple)):
        return not node
    scalar = _scalar(node)
    return scalar is not None and scalar[0] == "str" and not str(scalar[1]).strip()


def _scalar(node: Any) -> tuple[str, Any] | None:
    """(yaml kind, value) of a scalar: ("int", 5), ("str", "5s"), ...; None for a list/map."""
    if isinstance(node, yaml.ScalarNode):
        kind = node.tag.removeprefix(_TAG)
        if kind == "int":
            try:
                return "int", int(node.value.replace("_", ""), 0)
            except ValueError:
                return "str", node.value
        if kind == "float":
            try:
                return "float", float(node.value.replace("_", ""))
            except ValueError:
                return "str", node.value
        if kind == "bool":
            return "bool", node.value.lower() in ("true", "yes", "on", "y")
        return kind, node.value
    if isinstance(node, (yaml.Node, list, tuple, dict)):
        return None
    if isinstance(node, bool):
        return "bool", node
    if isinstance(node, int):
        return "int", node
    if isinstance(node, float):
        return "float", node
    return "str", str(node)


def _described(node: Any) -> str:
    if isinstance(node, (yaml.SequenceNode, list, tuple)):
        return "a list"
    if isinstance(node, (yaml.MappingNode, dict)):
        return "a map"
    scalar = _scalar(node)
    assert scalar is not None
    kind, value = scalar
    text = (
        node.value
        if isinstance(node, yaml.ScalarNode)
        else str(value).lower()
        if kind == "bool"
        else str(value)
    )
    return {
        "bool": f"the boolean {text}",
        "int": f"the number {text}",
        "float": f"the number {text}",
    }.get(kind, f"'{text}'")


def _check_value(check: _Check, node: Any, option: Option, at: Where) -> None:
    if isinstance(node, yaml.Node) and node.tag == UNRESOLVED_TAG:
        return  # its ${VAR} problem is already reported
    if _is_null(node) or (option.required and _is_empty(node)):
        if option.required:
            check.add(
                at,
                f"'{option.name}' is empty: give it {_WHAT[option.kind]}"
                + (" with at least one entry" if option.kind in ("list", "map") else ""),
            )
        return
    word = node.value if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "bool" else ""
    if word.lower() not in ("", "true", "false") and word.lower() in (
        c.lower() for c in option.choices
    ):
        # YAML 1.1 reads a bare on/off/yes/no as a boolean, not as the choice it spells.
        value = "true" if _scalar(node) == ("bool", True) else "false"
        check.add(
            at,
            f"'{option.name}' is {word}, which YAML reads as the boolean {value}: "
            f"write '{word}' in quotes for the value {word}"
            + (", or false to turn it off" if option.or_false else ""),
        )
        return
    if option.or_false and _scalar(node) == ("bool", False):
        return
    kind = option.kind
    if kind == "list":
        items = _list_items(node, option)
        if items is None:
            check.add(at, f"'{option.name}' must be {_list_what(option)}, not {_described(node)}")
            return
        _check_bounds(check, len(items), option, at, "items")
        item_option = Option(option.name, option.items or "", choices=option.choices)
        for i, item in enumerate(items):
            where = at.child(i, line_of(item)) if isinstance(item, yaml.Node) else at.child(i)
            if option.items:
                _check_value(check, item, item_option, where)
        return
    if kind == "map":
        if not isinstance(node, (yaml.MappingNode, dict)):
            check.add(at, f"'{option.name}' must be a map, not {_described(node)}")
            return
        if option.fields is not None:
            _check_map(check, node, option.fields, at)
        elif option.items:
            for key, value, where in _entries(node, at):
                _check_value(check, value, Option(key, option.items, choices=option.choices), where)
        return
    error = _scalar_problem(node, option)
    if error:
        check.add(at, error)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
#: The longest duration ph_config_duration_ms reads, in seconds (int64 milliseconds).
MAX_OPTION_DURATION = 9.2e15


def option_duration(value: Any) -> float | None:
    """Seconds in a duration option, read as ph_config_duration_ms reads it: a number of
    seconds, or Go-style text ("300ms", "1.5s", "2m", "1h30m", "7d"); negative values are
    returned as such (the caller refuses them); None when it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            if text.startswith("-"):
                return -1.0 if option_duration(text[1:]) is not None else None
            text = text.removeprefix("+")
            parts = _DURATION_PART.findall(text)
            if not text or "".join(n + u for n, u in parts) != text:
                return None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or abs(seconds) > MAX_OPTION_DURATION:
        return None
    return seconds


def _choices(choices: tuple[str, ...]) -> str:
    """'a', 'b' or 'c' (an empty choice, "use the default", last)."""
    shown = [f"'{c}'" for c in choices if c] + (["'' (the default)"] if "" in choices else [])
    return ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else "".join(shown)


def _list_what(option: Option) -> str:
    items = f" of {option.items}s" if option.items and option.items != "enum" else ""
    return f"a list{items}" + (" or one comma-separated string" if option.comma_list else "")


def _list_items(node: Any, option: Option) -> list[Any] | None:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, (list, tuple)):
        return list(node)
    scalar = _scalar(node)
    if option.comma_list and scalar is not None and scalar[0] in ("str", "int", "float"):
        return [part.strip() for part in str(scalar[1]).split(",") if part.strip()]
    return None


def _scalar_problem(node: Any, option: Option) -> str | None:
    """Why ``node`` is not a value of ``option``'s scalar kind (or its bounds), or None."""
    name, kind = option.name, option.kind
    scalar = _scalar(node)
    if scalar is None:
        return f"'{name}' must be {_WHAT[kind]}, not {_described(node)}"
    ykind, value = scalar
    what = _WHAT[kind]
    if kind == "enum":
        what = "one of " + _choices(option.choices)
    if option.or_false:
        what += " (or false to turn it off)"
    wrong = f"'{name}' must be {what}, not {_described(node)}"
    if kind == "string":
        if ykind in ("str", "int", "float"):
            return None
        return wrong + ("" if option.or_false else ": quote it if it is text")
    if kind == "bool":
        if ykind == "bool" or (ykind == "str" and str(value).lower() in ("true", "false")):
            return None
        return wrong
    if kind == "enum":
        if ykind not in ("str", "int", "float"):
            return wrong
        text = node.value if isinstance(node, yaml.ScalarNode) else str(value)
        if text.lower() in (c.lower() for c in option.choices):
            return None
        hint = closest(text, option.choices)
        return f"'{name}' is '{text}', not one of {_choices(option.choices)}" + (
            f": did you mean '{hint}'?" if hint else ""
        )
    number: float
    if kind in ("int", "float"):
        if ykind == "bool":
            return wrong
        try:
            number = float(value) if ykind != "int" else value
        except (TypeError, ValueError):
            return wrong
        if isinstance(number, float) and not math.isfinite(number):
            return wrong
        if kind == "int" and number != int(number):
            return f"'{name}' must be a whole number, not {_described(node)}"
        if kind == "int" and ykind == "str" and not re.fullmatch(r"[+-]?\d+", str(value)):
            return wrong
    elif kind == "duration":
        if ykind == "bool":
            return wrong
        seconds = option_duration(value)
        if seconds is None:
            return wrong
        if seconds < 0:
            return f"'{name}' cannot be negative"
        number = seconds
    elif kind == "size":
        if ykind == "bool":
            return wrong
        try:
            number = parse_size(value)
        except ValueError as exc:
            return f"'{name}': {exc}"
        if number < 0:
            return f"'{name}' cannot be negative"
    else:  # pragma: no cover - list and map are handled by the caller
        return None
    return _bound_problem(number, option, _described(node))


def _bound_problem(number: float, option: Option, shown: str, unit: str = "") -> str | None:
    def fmt(x: float) -> str:
        if option.kind == "duration" and not unit and 0 < abs(x) < 1:
            x, suffix = x * 1000, "ms"
        else:
            suffix = "s" if option.kind == "duration" and not unit else ""
        text = f"{x:g}" if x != int(x) or abs(x) >= 1e15 else str(int(x))
        return text + suffix

    low, high = option.minimum, option.maximum
    if (low is not None and number < low) or (high is not None and number > high):
        what = " and ".join(
            part
            for part in (
                f"at least {fmt(low)}" if low is not None else "",
                f"at most {fmt(high)}" if high is not None else "",
            )
            if part
        )
        if unit:  # a list: how many items
            count = int(number)
            return (
                f"'{option.name}' has {count} {unit if count != 1 else unit[:-1]}: it must "
                f"have {what}"
            )
        return f"'{option.name}' is {shown}: it must be {what}"
    return None


def _check_bounds(check: _Check, count: int, option: Option, at: Where, unit: str) -> None:
    problem = _bound_problem(count, option, f"a list of {count}", unit)
    if problem:
        check.add(at, problem)


def typed_config(config: Any, options: tuple[Option, ...]) -> dict[str, Any]:
    """A config that passed :func:`check_options` as Python values, for elements written in
    Python: keys spelt as declared, every declared default filled in, durations in seconds
    (float), sizes in bytes (int), comma-separated lists split, enum values spelt as their
    choice. Options without a value or default are left out."""
    if _is_null(config):
        config = {}
    written = {key.lower(): value for key, value, _ in _entries(config, Where(""))}
    out: dict[str, Any] = {}
    for option in options:
        node = written.get(option.name.lower())
        if _is_null(node):
            if option.default is None:
                continue
            node = yaml.compose(option.default) if option.default else ""
        out[option.name] = _typed(node, option)
    return out


def _typed(node: Any, option: Option) -> Any:
    if option.or_false and _scalar(node) == ("bool", False):
        return False
    kind = option.kind
    if kind == "list":
        items = _list_items(node, option) or []
        item_option = Option(option.name, option.items or "", choices=option.choices)
        return [_typed(i, item_option) if option.items else plain_value(i) for i in items]
    if kind == "map":
        if option.fields is not None:
            return typed_config(node, option.fields)
        return {
            key: (
                _typed(value, Option(key, option.items, choices=option.choices))
                if option.items
                else plain_value(value)
            )
            for key, value, _ in _entries(node, Where(""))
        }
    scalar = _scalar(node)
    value = scalar[1] if scalar is not None else node
    text = node.value if isinstance(node, yaml.ScalarNode) else str(value)
    if kind == "string":
        return text
    if kind == "int":
        return int(float(value)) if not isinstance(value, int) else value
    if kind == "float":
        return float(value)
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "duration":
        return option_duration(value)
    if kind == "size":
        return parse_size(value)
    if kind == "enum":
        return next((c for c in option.choices if c.lower() == text.lower()), text)
    return plain_value(node)


def plain_value(node: Any) -> Any:
    """A YAML node as plain Python values (what yaml.safe_load would give)."""
    if isinstance(node, yaml.Node):
        return yaml.SafeLoader("").construct_document(node)
    return node
