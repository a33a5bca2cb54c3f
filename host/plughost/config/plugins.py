"""Plugin registration: Seam's ordered ``plugins:`` list and KrakenD's folder + pattern.

Seam (``plugins.yaml``)::

    plugins:
      - path: /plugins/valkey.so
      - path: /plugins/session.so
        sha256: 9f2c...            # plughost: optional, checked before loading
        config:
          storage: ValkeySessionStorage
      - name: limiter              # plughost: a bundled or installed plugin, by name

KrakenD style::

    plugin:
      folder: ./plugins/           # relative to the configuration's folder
      pattern: ".so"               # a name suffix, or a wildcard pattern such as "ph_*.so"

Every plugin file must exist, match its ``sha256`` if one is given, and neither it nor any
folder on its path (after symlinks, and the folders holding the symlinks) may be writable by
group or others, as sshd's StrictModes wants of authorized_keys (unless
``allowInsecurePermissions``); see :func:`_check_permissions` for sticky folders like /tmp.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import pwd
import re
import stat
from pathlib import Path

import yaml

from ..installed import NAME_RE, PluginIndex, PluginNameError, plugin_index
from .fields import Field, as_str, describe, fields_of
from .model import ModuleSpec, PluginSpec
from .problems import Problems
from .yamlload import is_null, line_of

PLUGIN_KEYS = ("path", "name", "module", "config", "sha256")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
FOLDER_KEYS = ("folder", "pattern")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def read_plugin_list(
    f: Field, base_dir: Path, problems: Problems, modules: list[ModuleSpec] | None = None
) -> list[PluginSpec]:
    """The entries of ``plugins:`` in order (entries with problems are left out); the
    ``module:`` entries (Python modules declaring types) go to ``modules``."""
    node = f.value
    if is_null(node):
        return []
    if not isinstance(node, yaml.SequenceNode):
        problems.add(
            f.value_where,
            "plugins must be a list of entries such as "
            "'- path: /plugins/valkey.so', in load order, not "
            f"{describe(node)}",
        )
        return []
    specs = []
    index: PluginIndex | None = None  # looked up once, when an entry names a plugin
    for i, item in enumerate(node.value):
        w = f.where.child(i, line_of(item))
        what = f"plugin entry {i + 1}"
        if isinstance(item, yaml.ScalarNode) and not is_null(item):
            problems.add(
                w,
                f"{what} must be a map such as 'path: {item.value}', not "
                f"{describe(item)}: write '- path: {item.value}'",
            )
            continue
        entry = fields_of(item, w, problems, what, PLUGIN_KEYS)
        if "module" in entry:
            spec = _module_entry(entry, what, problems)
            if spec is not None and modules is not None:
                modules.append(spec)
            continue
        if "path" in entry and "name" in entry:
            problems.add(
                entry["name"].where,
                f"{what} has both 'path' and 'name': keep one "
                "('name' for an installed plugin, 'path' for a "
                "file)",
            )
            continue
        if "name" in entry:
            if index is None:
                index = plugin_index()
            path = _named_plugin(entry["name"], index, problems, what)
        elif "path" in entry:
            path = _plugin_path(entry["path"], base_dir, problems, what)
        else:
            if isinstance(item, yaml.MappingNode) or is_null(item):
                problems.add(
                    w,
                    f"{what} has no 'path' or 'name': add 'path: "
                    "/plugins/<name>.so', 'name: <plugin>' for a bundled or "
                    "installed plugin, or 'module: <python.module>'",
                )
            continue
        if path is None:
            continue
        located = entry["name"] if "name" in entry else entry["path"]
        sha = None
        if "sha256" in entry:
            sha = as_str(entry["sha256"], problems, "sha256")
            if sha is not None and not _SHA256.fullmatch(sha):
                problems.add(
                    entry["sha256"].value_where,
                    f"sha256 '{sha}' is not a SHA-256 digest: write the 64 hex digits "
                    "that 'sha256sum' prints for the plugin file",
                )
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
                problems.add(
                    cf.value_where,
                    f"the config of {what} must be a map of options, not {describe(cf.value)}",
                )
        specs.append(
            PluginSpec(
                path=path,
                config=config,
                sha256=sha,
                where=located.value_where,
                config_where=config_where,
                origin="name" if "name" in entry else "list",
            )
        )
    return specs


def _module_entry(entry: dict[str, Field], what: str, problems: Problems) -> ModuleSpec | None:
    """A ``module:`` entry: a Python module declaring types (plughost.sdk.pymodules)."""
    f = entry["module"]
    others = [k for k in ("path", "name", "sha256") if k in entry]
    if others:
        problems.add(
            f.where,
            f"{what} has 'module' and '{others[0]}': a Python module is "
            "named alone (with its 'config:')",
        )
        return None
    module = as_str(f, problems, f"the module of {what}")
    if module is None:
        return None
    if not _MODULE.fullmatch(module):
        problems.add(
            f.value_where,
            f"the module of {what}, '{module}', is not a Python "
            "module name such as 'acme.gateway_elements'",
        )
        return None
    config, config_where = None, f.where
    if "config" in entry:
        cf = entry["config"]
        config_where = cf.where
        if isinstance(cf.value, yaml.MappingNode):
            config = cf.value
        elif not is_null(cf.value):
            problems.add(
                cf.value_where,
                f"the config of {what} must be a map of options, not {describe(cf.value)}",
            )
    return ModuleSpec(module=module, config=config, where=f.value_where, config_where=config_where)


def _plugin_path(f: Field, base_dir: Path, problems: Problems, what: str) -> Path | None:
    """The file a ``path:`` names (relative to ``base_dir``), or None after a problem."""
    text = as_str(f, problems, f"the path of {what}")
    if text is None:
        return None
    if not text.strip():
        problems.add(f.value_where, f"the path of {what} is empty: write the plugin's .so file")
        return None
    unusable = unusable_path(text)
    if unusable:
        problems.add(f.value_where, f"the path of {what} {unusable}")
        return None
    return Path(os.path.abspath(base_dir / os.path.expanduser(text)))


def _named_plugin(f: Field, index: PluginIndex, problems: Problems, what: str) -> Path | None:
    """The file a ``name:`` resolves to (see :mod:`plughost.installed`), or None."""
    name = as_str(f, problems, f"the name of {what}")
    if name is None:
        return None
    if not NAME_RE.fullmatch(name):
        problems.add(
            f.value_where,
            f"the name of {what}, '{name}', is not a plugin name: "
            "write the <plugin> part of its type ids, such as "
            "'session' (or give its file with 'path:')",
        )
        return None
    try:
        return index.find(name).file
    except PluginNameError as exc:
        problems.add(f.value_where, str(exc))
        return None


def read_plugin_folder(f: Field, base_dir: Path, problems: Problems) -> list[PluginSpec]:
    """The plugins a KrakenD-style ``plugin: {folder, pattern}`` finds, sorted by name."""
    entry = fields_of(f.value, f.where, problems, "plugin", FOLDER_KEYS)
    if not entry:
        if isinstance(f.value, yaml.MappingNode) or is_null(f.value):
            problems.add(
                f.where,
                "plugin needs 'folder:' (and optionally 'pattern:', default "
                "'.so'): write e.g. 'plugin: {folder: ./plugins, pattern: .so}'",
            )
        return []
    if "folder" not in entry:
        problems.add(
            f.where,
            "plugin has no 'folder': add 'folder: ./plugins' (the folder holding the plugin files)",
        )
        return []
    folder_text = as_str(entry["folder"], problems, "plugin.folder")
    pattern = ".so"
    if "pattern" in entry:
        pattern = as_str(entry["pattern"], problems, "plugin.pattern") or ""
        if not pattern:
            problems.add(
                entry["pattern"].value_where,
                "plugin.pattern is empty: write a name "
                "ending such as '.so' or a wildcard "
                "pattern such as 'ph_*.so'",
            )
            return []
    if folder_text is None:
        return []
    where = entry["folder"].value_where
    unusable = unusable_path(folder_text)
    if unusable:
        problems.add(where, f"plugin.folder {unusable}")
        return []
    folder = Path(os.path.abspath(base_dir / os.path.expanduser(folder_text)))
    kind = _file_kind(folder)
    if kind != "folder":
        why = (
            kind
            if kind.startswith("cannot")
            else ("does not exist" if kind == "missing" else "is not a folder")
        )
        problems.add(where, f"plugin folder {folder} {why}: create it or fix plugin.folder")
        return []
    wild = any(c in pattern for c in "*?[")
    names = sorted(
        n
        for n in os.listdir(folder)
        if (fnmatch.fnmatchcase(n, pattern) if wild else n.endswith(pattern))
        and (folder / n).is_file()
    )
    if not names:
        problems.add(
            where,
            f"no file in plugin folder {folder} matches the pattern "
            f"'{pattern}': build the plugins into it or fix plugin.pattern",
        )
    return [
        PluginSpec(
            path=folder / n,
            config=None,
            sha256=None,
            where=where,
            config_where=where,
            origin="folder",
        )
        for n in names
    ]


#: The longest file name (one path component) Linux file systems take, in bytes.
_NAME_MAX = 255


def unusable_path(text: str) -> str | None:
    """Why ``text`` cannot be a file path at all (the rest of a sentence), or None."""
    if "\0" in text:
        return "holds a NUL character, which no file path can: remove it"
    encoded = os.fsencode(text)  # lone surrogates stand for the bytes they escape
    longest = max(len(part) for part in encoded.split(b"/"))
    if longest > _NAME_MAX:
        return (
            f"has a name of {longest} bytes, longer than the {_NAME_MAX} a file system "
            "takes: shorten it"
        )
    return None


def _file_kind(path: Path) -> str:
    """ "file", "folder", "other", "missing", or "cannot be read (<reason>)"."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as exc:
        return f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if stat.S_ISREG(mode):
        return "file"
    return "folder" if stat.S_ISDIR(mode) else "other"


def check_plugin_files(specs: list[PluginSpec], allow_insecure: bool, problems: Problems) -> None:
    """Existence, duplicates, sha256 and permissions of every plugin file."""
    first: dict[str, PluginSpec] = {}
    checked: set[str] = set()
    for spec in specs:
        key = os.path.realpath(spec.path)
        if key in first:
            other = first[key].where
            problems.add(
                spec.where,
                f"plugin {spec.path} is registered twice (also at "
                f"{other.file}:{other.line}): keep one registration",
            )
            continue
        first[key] = spec
        kind = _file_kind(spec.path)
        if kind.startswith("cannot"):
            problems.add(spec.where, f"plugin file {spec.path} {kind}: fix the path")
            continue
        if kind == "missing":
            problems.add(
                spec.where,
                f"plugin file {spec.path} does not exist: build the plugin or fix the path",
            )
            continue
        if kind != "file":
            problems.add(
                spec.where,
                f"plugin path {spec.path} is not a file: give the path of the plugin's .so file",
            )
            continue
        if spec.sha256 is not None:
            actual = _sha256(spec.path)
            if actual != spec.sha256:
                problems.add(
                    spec.where,
                    f"plugin file {spec.path} has SHA-256 {actual} but "
                    f"the configuration expects {spec.sha256}: rebuild "
                    "the plugin or update the hash",
                )
        if not allow_insecure:
            _check_permissions(spec, checked, problems)


def _check_permissions(spec: PluginSpec, checked: set[str], problems: Problems) -> None:
    """Refuses the plugin when anyone but its owner could replace it, as sshd's StrictModes
    does for authorized_keys: the file and every folder a lookup of its path goes through,
    from the root down, following symlinks (so both the folders holding a symlink and those
    holding its target count), must not be writable by group or others. ``checked`` holds
    what was already checked for an earlier plugin, so each problem is reported once.

    A sticky folder such as /tmp (mode 1777) is accepted when it belongs to root or to the
    user running plughost and so does the entry the path takes in it: the sticky bit lets
    no one else rename or remove that entry, so nothing below it can be swapped."""
    walk = _lookups(spec.path)
    if walk is None:
        return  # a loop or a vanished entry: loading the plugin reports it
    steps, target = walk
    for folder, entry in steps:
        if folder in checked:
            continue
        try:
            st = os.stat(folder)
            owner = os.lstat(entry).st_uid
        except OSError:
            continue
        if not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            checked.add(folder)
            continue
        what = _label(spec.path, folder)
        if st.st_mode & stat.S_ISVTX:
            trusted = (0, os.geteuid())
            if st.st_uid in trusted and owner in trusted:
                continue  # checked again for the next plugin: its entry may differ
            checked.add(folder)
            if st.st_uid not in trusted:
                whose = f"belongs to {_user(st.st_uid)}"
            else:
                whose = f"its entry {entry} belongs to {_user(owner)}"
            problems.add(
                spec.where,
                f"{what} is writable by {_who(st.st_mode)} (mode "
                f"{stat.S_IMODE(st.st_mode):04o}, sticky) and {whose}, who "
                "could replace the code the gateway runs: move the plugin "
                "to a folder that only root or the user running plughost "
                "can write, or set "
                "'allowInsecurePermissions: true' at the top level to "
                "accept it",
            )
            continue
        checked.add(folder)
        problems.add(spec.where, _writable(what, folder, st.st_mode))
    if target not in checked:
        checked.add(target)
        try:
            mode = os.stat(target).st_mode
        except OSError:
            return
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            what = f"plugin file {target}"
            if target != str(spec.path):
                what += f" (the target of {spec.path})"
            problems.add(spec.where, _writable(what, target, mode))


def _lookups(path: Path) -> tuple[list[tuple[str, str]], str] | None:
    """Resolves ``path`` one name at a time as the kernel does: every (folder, entry) looked
    up on the way, in order, and the file it ends at; None when an entry is missing or
    symlinks loop."""
    todo = [n for n in reversed(str(path).split("/"))]
    current, steps, links = "/", [], 0
    while todo:
        name = todo.pop()
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        entry = os.path.join(current, name)
        steps.append((current, entry))
        try:
            st = os.lstat(entry)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                return None
            try:
                link = os.readlink(entry)
            except OSError:
                return None
            if link.startswith("/"):
                current = "/"
            todo.extend(reversed(link.split("/")))
        else:
            current = entry
    return steps, current


def _label(plugin: Path, folder: str) -> str:
    """How a message names ``folder``, seen from the plugin file."""
    if folder == str(plugin.parent):
        return f"plugin folder {folder}"
    if folder == str(plugin.parent.parent):
        return f"folder holding the plugin folder {folder}"
    return f"folder {folder} (on the path to plugin {plugin})"


def _who(mode: int) -> str:
    return " and ".join(
        w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit
    )


def _writable(what: str, path: str, mode: int) -> str:
    return (
        f"{what} is writable by {_who(mode)} (mode {stat.S_IMODE(mode):04o}), so anyone "
        f"in that set could replace the code the gateway runs: run 'chmod go-w {path}', "
        "or set 'allowInsecurePermissions: true' at the top level to accept it"
    )


def _user(uid: int) -> str:
    try:
        return f"user '{pwd.getpwuid(uid).pw_name}' (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
