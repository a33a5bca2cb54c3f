"""The plugins a configuration can name without a path (``- name: session``).

Three places provide them, searched in this order:

1. the folders of ``$PLUGHOST_PLUGIN_DIR`` (``:``-separated): ``<folder>/<name>.so``, an
   operator's explicit choice (the container image points it at its own build);
2. installed plugin wheels: every entry point of the group ``plughost.plugins``. The entry
   point's name is the plugin's name and its value names the Python package (folder) that
   holds ``<name>.so``, for example ``stamp = "stamp_plugin"`` for
   ``site-packages/stamp_plugin/stamp.so`` (``plughost new`` scaffolds such a project). The
   package is located without importing it and the plugin runs no code until it is loaded;
3. the plugins bundled with plughost: ``plughost/plugins/`` of the installed wheel, or
   ``build/plugins/`` of the source checkout an editable install runs from.

A name provided by two installed wheels, or by a wheel and plughost's bundle, is ambiguous:
naming it is an error that says who provides it, and a path always works.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from . import __version__

ENTRY_POINT_GROUP = "plughost.plugins"
PLUGIN_DIR_VARIABLE = "PLUGHOST_PLUGIN_DIR"
PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent.parent  # the checkout, when this package runs from one

#: A plugin name as the ABI allows it (the <plugin> part of type ids).
NAME_RE = re.compile(r"[a-z][a-z0-9_]*")

Source = str  # "bundled", "wheel" or "folder"


@dataclass(frozen=True)
class InstalledPlugin:
    """One plugin that can be named in a configuration."""

    name: str
    file: Path
    package_version: str  # the wheel's version (plughost's for the bundled ones); "" in a folder
    source: Source
    origin: str  # where it came from, for people: "plughost 0.1.0 (bundled)", ...

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "file": str(self.file),
            "package_version": self.package_version,
            "source": self.source,
            "origin": self.origin,
        }


@dataclass
class PluginIndex:
    """Every nameable plugin, and the problems met while looking (broken entry points)."""

    plugins: list[InstalledPlugin] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def providers(self, name: str) -> list[InstalledPlugin]:
        return [p for p in self.plugins if p.name == name]

    def find(self, name: str) -> InstalledPlugin:
        """The plugin ``name`` resolves to; :class:`PluginNameError` says why there is none."""
        found = self.providers(name)
        folders = [p for p in found if p.source == "folder"]
        if folders:
            return folders[0]
        if len(found) == 1:
            return found[0]
        if found:
            who = " and ".join(p.origin for p in found)
            raise PluginNameError(
                f"plugin name '{name}' is provided by {who}: name one of "
                f"them by 'path:' ({', '.join(str(p.file) for p in found)}) "
                "or uninstall the other"
            )
        known = sorted({p.name for p in self.plugins})
        hint = f"installed plugins are: {', '.join(known)}" if known else "no plugin is installed"
        raise PluginNameError(
            f"no installed plugin is named '{name}' ({hint}; 'plughost "
            "plugins' lists them): install its wheel, or give its file "
            "with 'path:'"
        )


class PluginNameError(LookupError):
    """A plugin name that resolves to no file, or to several; the message says what to do."""


def bundled_plugin_dir() -> Path:
    """Where plughost's own plugins are: in the wheel, or build/plugins/ of a checkout."""
    inside = PACKAGE_DIR / "plugins"
    if inside.is_dir() or not (SOURCE_ROOT / "build_plugins.py").is_file():
        return inside
    return SOURCE_ROOT / "build" / "plugins"


def plugin_index(environ: dict[str, str] | None = None) -> PluginIndex:
    """Looks in the three places (see the module's docstring); runs no plugin code."""
    env = os.environ if environ is None else environ
    index = PluginIndex()
    for text in env.get(PLUGIN_DIR_VARIABLE, "").split(os.pathsep):
        if text.strip():
            folder = Path(os.path.abspath(Path(text).expanduser()))
            index.plugins += _folder_plugins(
                folder, "", "folder", f"{PLUGIN_DIR_VARIABLE} folder {folder}"
            )
    _add_entry_points(index)
    index.plugins += _folder_plugins(
        bundled_plugin_dir(), __version__, "bundled", f"plughost {__version__} (bundled)"
    )
    return index


def find_plugin(name: str, environ: dict[str, str] | None = None) -> InstalledPlugin:
    """The plugin a configuration's ``- name: NAME`` means; raises :class:`PluginNameError`."""
    return plugin_index(environ).find(name)


def _folder_plugins(
    folder: Path, version: str, source: Source, origin: str
) -> list[InstalledPlugin]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [
        InstalledPlugin(n[:-3], folder / n, version, source, origin)
        for n in names
        if n.endswith(".so") and NAME_RE.fullmatch(n[:-3]) and (folder / n).is_file()
    ]


def _add_entry_points(index: PluginIndex) -> None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        version = dist.version if dist is not None else ""
        label = f"{dist.name} {version}" if dist is not None else f"entry point {ep.value}"
        where = f"{label} (entry point {ep.name} = {ep.value!r} in group {ENTRY_POINT_GROUP})"
        if not NAME_RE.fullmatch(ep.name):
            index.problems.append(
                f"{where}: '{ep.name}' is not a plugin name (lowercase "
                "letters, digits and '_', starting with a letter)"
            )
            continue
        folder = _package_folder(ep.value)
        if folder is None:
            index.problems.append(
                f"{where}: there is no Python package '{ep.value}' holding "
                f"{ep.name}.so: reinstall {label}"
            )
            continue
        file = folder / f"{ep.name}.so"
        if not file.is_file():
            index.problems.append(f"{where}: {file} does not exist: reinstall {label}")
            continue
        index.plugins.append(InstalledPlugin(ep.name, file, version, "wheel", label))


def _package_folder(module: str) -> Path | None:
    """The folder of package ``module``, found without running it (its parents may run)."""
    if ":" in module or not all(part.isidentifier() for part in module.split(".")):
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
