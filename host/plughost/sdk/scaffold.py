"""``plughost new NAME``: scaffolds an out-of-tree plugin project.

The project builds against the installed SDK (``plugin.h`` and the CMake package inside this
Python package), so it needs no plughost source tree::

    NAME/
      CMakeLists.txt   find_package(plughost) + plughost_add_plugin(NAME SOURCES NAME.c)
      NAME.c           a storage, a middleware and an action, documented like native_plugins/
      gateway.yaml     a Seam configuration using all three
      pyproject.toml   `pip wheel .` builds a plugin wheel (scikit-build-core runs the CMake
                       build); its entry point in plughost.plugins makes the installed
                       plugin nameable ('- name: NAME')
      plughost_NAME/__init__.py   the package folder the wheel puts NAME.so into
      README.md        build, check, run, ship as a wheel
      .gitignore

The templates are package data (``plughost/sdk/templates/plugin/*.in``) with ``@KEY@``
placeholders.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .. import __version__, abi

#: A plugin name: the <plugin> part of type ids ([a-z0-9_]+ in the ABI), the CMake project
#: and target, and the file name. It must also start with a letter: a C identifier.
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME_LENGTH = 48

#: Target names CMake reserves (policy CMP0037) or that clash with its generated targets.
RESERVED_NAMES = frozenset(
    {
        "all",
        "clean",
        "depend",
        "edit_cache",
        "help",
        "install",
        "install_local",
        "install_strip",
        "list_install_components",
        "package",
        "package_source",
        "rebuild_cache",
        "test",
    }
)

#: template file -> file written into the project ({name} is the plugin's name).
FILES = {
    "CMakeLists.txt.in": "CMakeLists.txt",
    "plugin.c.in": "{name}.c",
    "gateway.yaml.in": "gateway.yaml",
    "pyproject.toml.in": "pyproject.toml",
    "package/__init__.py.in": "plughost_{name}/__init__.py",
    "README.md.in": "README.md",
    "gitignore.in": ".gitignore",
}


class ScaffoldError(Exception):
    """A name or a destination ``plughost new`` refuses; the message says what to do."""


@dataclass
class Project:
    name: str
    path: Path
    files: list[Path]


def suggest_name(name: str) -> str:
    """A valid plugin name close to ``name`` ("My-Plugin" -> "my_plugin"), or ""."""
    text = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    text = re.sub(r"^[0-9_]+", "", text)[:MAX_NAME_LENGTH]
    return text if NAME_RE.match(text) and text not in RESERVED_NAMES else ""


def validate_name(name: str) -> None:
    """Raises ScaffoldError saying what is wrong with ``name`` and what would do."""
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_NAME_LENGTH:
        problem = f"is longer than {MAX_NAME_LENGTH} characters"
    elif not NAME_RE.match(name):
        problem = (
            "is not a plugin name: use lowercase letters, digits and '_', starting "
            "with a letter (it becomes the <plugin> part of type ids such as "
            "plugins.<plugin>.middlewares.StampMiddleware, the file <plugin>.so and "
            "a C identifier)"
        )
    elif name in RESERVED_NAMES:
        problem = "is a target name CMake reserves"
    if problem:
        hint = suggest_name(name)
        raise ScaffoldError(
            f"'{name}' {problem}" + (f"; try '{hint}'" if hint and hint != name else "")
        )


def header_name(name: str) -> str:
    """The middleware's default response header: "my_plugin" -> "X-My-Plugin"."""
    return "X-" + "-".join(part.capitalize() for part in name.split("_") if part)


def substitutions(name: str) -> dict[str, str]:
    header = header_name(name)
    return {
        "PLUGIN": name,
        "DIST_NAME": name.replace("_", "-"),
        "HEADER": header,
        "HEADER_LOWER": header.lower(),
        "ABI_VERSION": f"{abi.ABI_MAJOR}.{abi.ABI_MINOR}",
        "ABI_MAJOR": str(abi.ABI_MAJOR),
        "ABI_MINOR": str(abi.ABI_MINOR),
        "PLUGHOST_VERSION": __version__,
    }


def render(template: str, values: dict[str, str]) -> str:
    """Replaces every ``@KEY@``; a placeholder without a value is a bug in the template."""

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder @{key}@ has no value")
        return values[key]

    return re.sub(r"@([A-Z][A-Z0-9_]*)@", one, template)


def create_project(
    name: str, parent: str | os.PathLike[str] = ".", directory: str | os.PathLike[str] | None = None
) -> Project:
    """Writes the project for plugin ``name`` into ``directory`` (default ``parent/name``),
    which must not exist yet. Raises ScaffoldError for a bad name or an existing folder."""
    validate_name(name)
    target = Path(directory) if directory is not None else Path(parent) / name
    if target.exists() or target.is_symlink():
        raise ScaffoldError(
            f"{target} already exists: choose another name or folder (plughost "
            "new never overwrites anything)"
        )
    if not target.parent.is_dir():
        raise ScaffoldError(f"{target.parent} is not a folder: create it first")
    values = substitutions(name)
    templates = resources.files("plughost.sdk") / "templates" / "plugin"
    rendered = {
        out.format(name=name): render(templates.joinpath(src).read_text("utf-8"), values)
        for src, out in FILES.items()
    }
    target.mkdir()
    written = []
    for filename, text in rendered.items():
        path = target / filename
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return Project(name=name, path=target, files=written)


def next_steps(project: Project) -> str:
    """What to do after ``plughost new``, for the terminal."""
    where = os.path.relpath(project.path)
    if where.startswith(".."):
        where = str(project.path)
    n = project.name
    steps = [
        (f"cd {where}", ""),
        ('cmake -S . -B build -Dplughost_DIR="$(plughost info --cmake-dir)"', ""),
        ("cmake --build build", f"-> build/{n}.so"),
        (f"plughost check --load build/{n}.so", "ABI, platform, then a load test"),
        ("plughost check --config gateway.yaml", "the example gateway's configuration"),
        ("plughost serve --config gateway.yaml", "then: curl -i http://127.0.0.1:8090/hello"),
        ("pip wheel . -w dist", f"a plugin wheel; installed, '- name: {n}' names it"),
    ]
    width = max(len(cmd) for cmd, note in steps if note)
    return "\n".join(
        [
            f"created {where}/ with plugin '{n}': "
            + ", ".join(str(p.relative_to(project.path)) for p in project.files),
            "",
            "next steps:",
            *(f"  {cmd:<{width}}  # {note}" if note else f"  {cmd}" for cmd, note in steps),
            "",
            f"{n}.c's header comment documents its three types; plugin.h documents the ABI.",
        ]
    )
