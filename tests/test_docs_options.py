"""The plugin pages' option tables agree with the option schemas the plugins declare: the
same option names, and for each its kind and its default (or that it is required). The
schemas are what the host checks configurations against, and what `plughost describe` and
`plughost schema` print, so a page that disagrees misleads its reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plughost import Host
from plughost.config.options import Option

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs" / "plugins").glob("*.md"))

#: Words a page's type column uses for each kind.
KIND_WORDS = {
    "string": ("string",),
    "int": ("int",),
    "float": ("float", "number"),
    "bool": ("bool",),
    "duration": ("duration",),
    "size": ("size",),
    "list": ("list",),
    "map": ("map",),
    "enum": ("enum", "one of"),
}


def documented(page: Path) -> dict[str, tuple[str, str]]:
    """option name -> (type cell, default cell) of every table whose first column is
    'option'. A table right after a line "`name`:" lists the keys of map option `name`; a
    row may name several options ("`a`, `b`", with types "int, bool" or one type)."""
    rows: dict[str, tuple[str, str]] = {}
    header: list[str] | None = None
    prefix, last_text = "", ""
    for line in page.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            if line.strip():
                last_text = line.strip()
            continue
        cells = [
            c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))
        ]
        if cells and cells[0] == "option":
            header = cells
            owner = re.fullmatch(r"`(\w+)`:", last_text)
            prefix = owner.group(1) + "." if owner else ""
            continue
        if header is None or set(line) <= set("|- :"):
            continue
        names = [n.strip().strip("`") for n in cells[0].split(",")]
        kind_cell = cells[header.index("type")]
        kinds = [k.strip() for k in kind_cell.split(",")]
        for i, name in enumerate(names):
            kind = kinds[i] if len(kinds) == len(names) else kind_cell
            rows[prefix + name] = (kind, cells[header.index("default")])
    return rows


def declared(plugin_dir: Path, name: str) -> dict[str, Option]:
    """option name (dotted below a map) -> Option, over the plugin's own config and all
    its types."""
    with Host() as host:
        plugin = host.describe_plugin(plugin_dir / f"{name}.so")
        out: dict[str, Option] = {}
        for options in [plugin.options, *(t.options for t in plugin.types.values())]:
            assert options is not None, f"{name} declares no schema for one of its parts"
            _flatten(options, "", out)
    return out


def _flatten(options: tuple[Option, ...], prefix: str, out: dict[str, Option]) -> None:
    for option in options:
        out[prefix + option.name] = option
        if option.fields:
            _flatten(option.fields, f"{prefix}{option.name}.", out)


def default_problem(cell: str, option: Option) -> str | None:
    """Why a default cell disagrees with ``option``: a literal default is written in
    backticks (`5`, `""`), first in the cell; words ("every origin", "none") describe what
    an option without a default does."""
    if option.required:
        return None if "required" in cell else "declared required"
    literal = re.match(r"`([^`]*)`", cell)
    if option.default is None:
        return None if literal is None else "declared without a default"
    if literal is None or literal.group(1).strip('"') != option.default.strip('"'):
        return f"declared {option.default!r}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_the_page_documents_every_declared_option_as_declared(page: Path, plugin_dir: Path) -> None:
    docs = documented(page)
    schema = declared(plugin_dir, page.stem)
    assert sorted(docs) == sorted(schema), page.name
    wrong = []
    for name, (kind_cell, default_cell) in docs.items():
        option = schema[name]
        if not any(w in kind_cell.lower() for w in KIND_WORDS[option.kind]):
            wrong.append(f"{name}: type '{kind_cell}', declared {option.kind}")
        problem = default_problem(default_cell, option)
        if problem:
            wrong.append(f"{name}: default '{default_cell}', {problem}")
    assert not wrong, f"{page.name}:\n" + "\n".join(wrong)


NATIVE = sorted(
    p.name for p in (ROOT / "native_plugins").iterdir() if (p / "CMakeLists.txt").is_file()
)


@pytest.mark.parametrize("name", NATIVE)
def test_the_readme_row_names_every_option(name: str, plugin_dir: Path) -> None:
    """The README's plugin table names each plugin's options (its page has the details)."""
    readme = (ROOT / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{name}` |")]
    missing = [
        option
        for option in declared(plugin_dir, name)
        if "." not in option and f"`{option}`" not in row
    ]
    assert not missing, f"README's {name} row leaves out {missing}"
