"""Reading a plugin's option schemas (``ph_option`` arrays, ABI 1.2) into Python.

A schema is read once, when the plugin is loaded, and checked for what would make it
unusable (an unknown kind, an enum without choices, a name given twice, an array that never
ends): such a plugin is refused with a sentence naming the type and the option, as a bad
type table is.
"""

from __future__ import annotations

from typing import Any

from ..config.options import COMMA_LIST, KINDS, MAXIMUM, MINIMUM, OR_FALSE, REQUIRED, Option
from .runtime import Runtime

#: More options than any real type declares: an array without its end stops here.
MAX_OPTIONS = 512
#: Maps inside maps inside ...: deeper than any real schema.
MAX_DEPTH = 8
_MAX_TEXT = 4096  # longest name, description, default or choice read


class SchemaError(ValueError):
    """A schema the host cannot use; the message says which option and why."""


def table_options(rt: Runtime, table: Any, ctype: str) -> tuple[Option, ...] | None:
    """The schema a type table (or a ``ph_plugin``, ctype "ph_plugin") declares, or None
    when it declares none or is older than the ``options`` field (1.0, 1.1)."""
    ffi = rt.ffi
    size = int(table.header.size) if ctype == "ph_plugin" else int(table.size)
    if size < ffi.offsetof(ctype, "options") + ffi.sizeof("void *"):
        return None
    return read_options(rt, table.options)


def read_options(
    rt: Runtime, array: Any, depth: int = 0, where: str = ""
) -> tuple[Option, ...] | None:
    """The options of a NULL-name-terminated ``ph_option`` array (None for NULL)."""
    ffi = rt.ffi
    if array == ffi.NULL:
        return None
    if depth > MAX_DEPTH:
        raise SchemaError(f"option schema nests maps deeper than {MAX_DEPTH} levels at {where}")
    stride = int(array[0].size)
    if stride < ffi.sizeof("ph_option"):
        raise SchemaError(
            f"option schema{' of ' + where if where else ''} declares ph_option "
            f"size {stride}, less than ABI 1.2's {ffi.sizeof('ph_option')}: set "
            ".size = sizeof(ph_option) (PH_OPTION does)"
        )
    base = ffi.cast("char *", array)
    options: list[Option] = []
    seen: set[str] = set()
    for i in range(MAX_OPTIONS + 1):
        raw = ffi.cast("ph_option *", base + i * stride)
        if raw.name == ffi.NULL:
            return tuple(options)
        if i == MAX_OPTIONS:
            break
        option = _option(rt, raw, depth, where)
        if option.name.lower() in seen:
            raise SchemaError(
                f"option '{_path(where, option.name)}' is declared twice (names "
                "match ignoring case)"
            )
        seen.add(option.name.lower())
        options.append(option)
    raise SchemaError(
        f"option schema{' of ' + where if where else ''} has more than "
        f"{MAX_OPTIONS} options, or no end: finish it with PH_OPTIONS_END"
    )


def _text(rt: Runtime, ptr: Any) -> str | None:
    if ptr == rt.ffi.NULL:
        return None
    return rt.ffi.string(ptr, _MAX_TEXT).decode("utf-8", "replace")


def _path(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _option(rt: Runtime, raw: Any, depth: int, where: str) -> Option:
    ffi = rt.ffi
    name = _text(rt, raw.name) or ""
    path = _path(where, name)
    if not name.strip() or any(c in name for c in " .\t\n"):
        raise SchemaError(f"option name {name!r} is not a key a configuration can hold")
    kind = KINDS.get(int(raw.kind))
    if kind is None:
        raise SchemaError(f"option '{path}' has kind {int(raw.kind)}, which is no ph_option_kind")
    items = None
    if int(raw.items):
        items = KINDS.get(int(raw.items))
        if items is None or items in ("list", "map") or kind not in ("list", "map"):
            raise SchemaError(
                f"option '{path}' has items {int(raw.items)}: only a list or a "
                "map without fields takes items, of a scalar kind"
            )
    choices: list[str] = []
    if raw.choices != ffi.NULL:
        for j in range(MAX_OPTIONS + 1):
            if raw.choices[j] == ffi.NULL:
                break
            if j == MAX_OPTIONS:
                raise SchemaError(
                    f"option '{path}' has more than {MAX_OPTIONS} choices, or "
                    "no NULL after the last"
                )
            choices.append(_text(rt, raw.choices[j]) or "")
    if (kind == "enum" or items == "enum") and not choices:
        raise SchemaError(f"option '{path}' is an enum without choices: set .choices")
    flags = int(raw.flags)
    fields = read_options(rt, raw.fields, depth + 1, path) if raw.fields != ffi.NULL else None
    if fields is not None and kind != "map":
        raise SchemaError(f"option '{path}' has fields but is a {kind}: only a map has fields")
    return Option(
        name=name,
        kind=kind,
        description=_text(rt, raw.description) or "",
        default=_text(rt, raw.default_text),
        required=bool(flags & REQUIRED),
        minimum=float(raw.min) if flags & MINIMUM else None,
        maximum=float(raw.max) if flags & MAXIMUM else None,
        comma_list=bool(flags & COMMA_LIST),
        or_false=bool(flags & OR_FALSE),
        items=items,
        choices=tuple(choices),
        fields=fields,
    )
