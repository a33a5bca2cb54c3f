"""Plugin registration: Seam's ordered ``plugins:`` list and KrakenD's folder + pattern.

Seam (``plugins.yaml``)::

    plugins:
      - path: /plugins/valkey.so
      - path: /plugins/session.so
        sha256: 9f2c...            # plughost: optional, checked before loading
        config:
          storage: ValkeySessionStorage

KrakenD style::

    plugin:
      folder: ./plugins/           # relative to the configuration's folder
      pattern: ".so"               # a name suffix, or a wildcard pattern such as "ph_*.so"

Every plugin file must exist, match its ``sha256`` if one is given, and neither it nor the
folder holding it may be writable by group or others (unless ``allowInsecurePermissions``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from pathlib import Path

import yaml

from .fields import Field, as_str, describe, fields_of
from .model import PluginSpec
from .problems import Problems, Where
from .yamlload import is_null, line_of

PLUGIN_KEYS = ("path", "config", "sha256")
FOLDER_KEYS = ("folder", "pattern")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def read_plugin_list(f: Field, base_dir: Path, problems: Problems) -> list[PluginSpec]:
    """The entries of ``plugins:`` in order (entries with problems are left out)."""
    node = f.value
    if is_null(node):
        return []
    if not isinstance(node, yaml.SequenceNode):
        problems.add(f.value_where, "plugins must be a list of entries such as "
                                    "'- path: /plugins/valkey.so', in load order, not "
                                    f"{describe(node)}")
        return []
    specs = []
    for i, item in enumerate(node.value):
        w = f.where.child(i, line_of(item))
        what = f"plugin entry {i + 1}"
        if isinstance(item, yaml.ScalarNode) and not is_null(item):
            problems.add(w, f"{what} must be a map such as 'path: {item.value}', not "
                            f"{describe(item)}: write '- path: {item.value}'")
            continue
        entry = fields_of(item, w, problems, what, PLUGIN_KEYS)
        if "path" not in entry:
            if isinstance(item, yaml.MappingNode) or is_null(item):
                problems.add(w, f"{what} has no 'path': add 'path: /plugins/<name>.so'")
            continue
        text = as_str(entry["path"], problems, f"the path of {what}")
        if text is None:
            continue
        if not text.strip():
            problems.add(entry["path"].value_where, f"the path of {what} is empty: write the "
                                                    "plugin's .so file")
            continue
        sha = None
        if "sha256" in entry:
            sha = as_str(entry["sha256"], problems, "sha256")
            if sha is not None and not _SHA256.fullmatch(sha):
                problems.add(entry["sha256"].value_where,
                             f"sha256 '{sha}' is not a SHA-256 digest: write the 64 hex digits "
                             "that 'sha256sum' prints for the plugin file")
                sha = None
            elif sha is not None:
                sha = sha.lower()
        config, config_where = None, w
        if "config" in entry:
            cf = entry["config"]
            config_where = cf.where
            if is_null(cf.value):
                config = None
            elif isinstance(cf.value, yaml.MappingNode):
                config = cf.value
            else:
                problems.add(cf.value_where, f"the config of {what} must be a map of options, "
                                             f"not {describe(cf.value)}")
        path = Path(os.path.abspath(base_dir / os.path.expanduser(text)))
        specs.append(PluginSpec(path=path, config=config, sha256=sha,
                                where=entry["path"].value_where, config_where=config_where))
    return specs


def read_plugin_folder(f: Field, base_dir: Path, problems: Problems) -> list[PluginSpec]:
    """The plugins a KrakenD-style ``plugin: {folder, pattern}`` finds, sorted by name."""
    entry = fields_of(f.value, f.where, problems, "plugin", FOLDER_KEYS)
    if not entry:
        if isinstance(f.value, yaml.MappingNode) or is_null(f.value):
            problems.add(f.where, "plugin needs 'folder:' (and optionally 'pattern:', default "
                                  "'.so'): write e.g. 'plugin: {folder: ./plugins, pattern: .so}'")
        return []
    if "folder" not in entry:
        problems.add(f.where, "plugin has no 'folder': add 'folder: ./plugins' (the folder "
                              "holding the plugin files)")
        return []
    folder_text = as_str(entry["folder"], problems, "plugin.folder")
    pattern = ".so"
    if "pattern" in entry:
        pattern = as_str(entry["pattern"], problems, "plugin.pattern") or ""
        if not pattern:
            problems.add(entry["pattern"].value_where, "plugin.pattern is empty: write a name "
                                                       "ending such as '.so' or a wildcard "
                                                       "pattern such as 'ph_*.so'")
            return []
    if folder_text is None:
        return []
    where = entry["folder"].value_where
    folder = Path(os.path.abspath(base_dir / os.path.expanduser(folder_text)))
    if not folder.is_dir():
        why = "does not exist" if not folder.exists() else "is not a folder"
        problems.add(where, f"plugin folder {folder} {why}: create it or fix plugin.folder")
        return []
    wild = any(c in pattern for c in "*?[")
    names = sorted(n for n in os.listdir(folder)
                   if (fnmatch.fnmatchcase(n, pattern) if wild else n.endswith(pattern))
                   and (folder / n).is_file())
    if not names:
        problems.add(where, f"no file in plugin folder {folder} matches the pattern "
                            f"'{pattern}': build the plugins into it or fix plugin.pattern")
    return [PluginSpec(path=folder / n, config=None, sha256=None, where=where,
                       config_where=where, origin="folder") for n in names]


def check_plugin_files(specs: list[PluginSpec], allow_insecure: bool,
                       problems: Problems) -> None:
    """Existence, duplicates, sha256 and permissions of every plugin file."""
    first: dict[str, PluginSpec] = {}
    checked_dirs: set[Path] = set()
    for spec in specs:
        key = os.path.realpath(spec.path)
        if key in first:
            other = first[key].where
            problems.add(spec.where, f"plugin {spec.path} is registered twice (also at "
                                     f"{other.file}:{other.line}): keep one registration")
            continue
        first[key] = spec
        if not spec.path.exists():
            problems.add(spec.where, f"plugin file {spec.path} does not exist: build the plugin "
                                     "or fix the path")
            continue
        if not spec.path.is_file():
            problems.add(spec.where, f"plugin path {spec.path} is not a file: give the path of "
                                     "the plugin's .so file")
            continue
        if spec.sha256 is not None:
            actual = _sha256(spec.path)
            if actual != spec.sha256:
                problems.add(spec.where, f"plugin file {spec.path} has SHA-256 {actual} but "
                                         f"the configuration expects {spec.sha256}: rebuild "
                                         "the plugin or update the hash")
        if not allow_insecure:
            _check_mode(spec.path, "plugin file", spec.where, problems)
            parent = spec.path.parent
            if parent not in checked_dirs:
                checked_dirs.add(parent)
                _check_mode(parent, "plugin folder", spec.where, problems)
            if spec.origin == "folder" and parent.parent not in checked_dirs:
                checked_dirs.add(parent.parent)
                _check_mode(parent.parent, "folder holding the plugin folder", spec.where,
                            problems)


def _check_mode(path: Path, what: str, where: Where, problems: Problems) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = " and ".join(w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH))
                           if mode & bit)
        problems.add(where, f"{what} {path} is writable by {who} (mode "
                            f"{stat.S_IMODE(mode):04o}), so anyone in that set could replace "
                            f"the code the gateway runs: run 'chmod go-w {path}', or set "
                            "'allowInsecurePermissions: true' at the top level to accept it")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
