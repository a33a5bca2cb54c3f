"""Plugins named in a configuration (``- name: session``) and ``plughost plugins``.

Names resolve to real files: the bundle (build/plugins/ of this checkout, which an editable
install uses), ``$PLUGHOST_PLUGIN_DIR`` folders, and installed plugin wheels, found through
real ``*.dist-info`` folders with an ``entry_points.txt`` in the ``plughost.plugins`` group on
a subprocess's ``PYTHONPATH`` (what pip leaves behind; tests/test_packaging.py installs real
wheels with pip). Bad names get one sentence with file, line and key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plughost.config import ConfigErrors, load_config
from plughost.installed import PluginNameError, bundled_plugin_dir, find_plugin, plugin_index

BIN = Path(sys.executable).parent
PLUGHOST = str(BIN / "plughost")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def fake_install(
    site: Path, dist: str, version: str, package: str, plugins: dict[str, Path]
) -> None:
    """What pip leaves for a plugin wheel: ``<package>/<name>.so`` and a dist-info folder
    whose entry points name each plugin (name = package)."""
    (site / package).mkdir(parents=True)
    for name, source in plugins.items():
        shutil.copy2(source, site / package / f"{name}.so")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    write(info / "METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    write(
        info / "entry_points.txt",
        "[plughost.plugins]\n" + "".join(f"{name} = {package}\n" for name in plugins),
    )


def run_plughost(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PLUGHOST, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def one_file_config(folder: Path, plugins: str) -> Path:
    """A one-file configuration whose ``plugins:`` list is ``plugins`` (entries from line 2)."""
    entries = textwrap.indent(textwrap.dedent(plugins).strip("\n"), "  ")
    return write(
        folder / "gateway.yaml",
        "plugins:\n"
        + entries
        + "\n"
        + textwrap.dedent("""
        storages:
          Memory:
            use: plugins.memory.storages.MemoryStorage
        actions:
          Hello:
            use: plugins.static.actions.StaticAction
            config:
              body: hello
        routes:
          Hello:
            gatewayPath: /
            methods: [GET]
            action: Hello
        """),
    )


# --- resolution -----------------------------------------------------------------------------


def test_a_checkout_bundles_build_plugins(plugin_dir: Path) -> None:
    assert bundled_plugin_dir() == plugin_dir
    session = find_plugin("session", environ={})
    assert (session.file, session.source) == (plugin_dir / "session.so", "bundled")
    assert session.origin.startswith("plughost ") and session.origin.endswith("(bundled)")
    names = {p.name for p in plugin_index(environ={}).plugins}
    assert names == {
        p.stem
        for p in (plugin_dir.parent.parent / "native_plugins").iterdir()
        if (p / "CMakeLists.txt").is_file()
    }


def test_plugin_dir_folders_come_first(plugin_dir: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy2(plugin_dir / "static.so", mine / "static.so")
    found = find_plugin("static", environ={"PLUGHOST_PLUGIN_DIR": f"/nonexistent:{mine}"})
    assert (found.file, found.source) == (mine / "static.so", "folder")
    assert find_plugin("memory", environ={"PLUGHOST_PLUGIN_DIR": str(mine)}).source == "bundled"


def test_unknown_name_lists_what_is_installed(plugin_dir: Path) -> None:
    with pytest.raises(PluginNameError) as exc:
        find_plugin("sesion", environ={})
    message = str(exc.value)
    assert "no installed plugin is named 'sesion'" in message
    assert "session" in message and "plughost plugins" in message and "path:" in message


# --- configurations ---------------------------------------------------------------------------


def test_named_plugins_build_a_gateway_that_answers(plugin_dir: Path, tmp_path: Path) -> None:
    from plughost import Gateway

    path = one_file_config(
        tmp_path,
        """
        - name: memory
        - name: static
        """,
    )
    config = load_config(path, environ={})
    assert [p.path for p in config.plugins] == [plugin_dir / "memory.so", plugin_dir / "static.so"]
    assert [(p.where.line, p.where.key) for p in config.plugins] == [
        (2, "plugins[0].name"),
        (3, "plugins[1].name"),
    ]
    with Gateway.from_config(path) as gateway:
        response = gateway.handle("GET", "/")
        assert (response.status, response.body) == (200, b"hello")


@pytest.mark.parametrize(
    "entries, line, key, words",
    [
        (
            "- name: memroy\n- name: static",
            2,
            "plugins[0].name",
            ["no installed plugin is named 'memroy'", "memory"],
        ),
        (
            "- name: memory\n- name: Static.so",
            3,
            "plugins[1].name",
            ["'Static.so', is not a plugin name", "path:"],
        ),
        (
            "- name: memory\n  path: /x/memory.so\n- name: static",
            2,
            "plugins[0].name",
            ["both 'path' and 'name'", "keep one"],
        ),
        ("- name: [memory]\n- name: static", 2, "plugins[0].name", ["must be"]),
        ("- config: {}\n- name: static", 2, "plugins[0]", ["has no 'path' or 'name'"]),
    ],
    ids=["misspelt", "file-name", "both", "list", "neither"],
)
def test_bad_names_get_one_sentence_with_file_line_key(
    plugin_dir: Path, tmp_path: Path, entries: str, line: int, key: str, words: list[str]
) -> None:
    path = one_file_config(tmp_path, entries)
    with pytest.raises(ConfigErrors) as exc:
        load_config(path, environ={})
    problems = [p for p in exc.value.problems if p.where.key.startswith("plugins")]
    assert len(problems) == 1, "\n".join(map(str, exc.value.problems))
    (problem,) = problems
    assert (problem.where.file, problem.where.line, problem.where.key) == (str(path), line, key)
    for word in words:
        assert word in problem.message, problem.message


def test_check_config_reports_a_misspelt_name(plugin_dir: Path, tmp_path: Path) -> None:
    path = one_file_config(tmp_path, "- name: memory\n- name: statik")
    res = run_plughost("check", "--config", str(path))
    assert res.returncode == 1
    assert f"{path}:3: plugins[1].name: no installed plugin is named 'statik'" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


# --- installed plugin wheels (entry points) -------------------------------------------------


def test_entry_point_plugins_are_named_and_listed(
    plugin_dir: Path, test_plugin_dir: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    fake_install(site, "acme-trace", "2.3.0", "acme_trace", {"trace": test_plugin_dir / "trace.so"})
    env = {"PYTHONPATH": str(site)}
    res = run_plughost("plugins", "--json", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {row["name"]: row for row in json.loads(res.stdout)["plugins"]}
    trace = rows["trace"]
    assert trace["file"] == str(site / "acme_trace" / "trace.so")
    assert (trace["source"], trace["package_version"], trace["origin"]) == (
        "wheel",
        "2.3.0",
        "acme-trace 2.3.0",
    )
    assert trace["abi"] == "1.2" and trace["version"] and trace["resolves"]
    assert rows["session"]["source"] == "bundled" and rows["session"]["version"] == "1.0.0"

    table = run_plughost("plugins", env=env).stdout.splitlines()
    assert table[0].split() == ["NAME", "VERSION", "ABI", "FROM", "FILE"]
    (line,) = [t for t in table if t.startswith("trace ")]
    assert "acme-trace 2.3.0" in line and line.endswith(str(site / "acme_trace" / "trace.so"))

    # A configuration names it, and check --config builds the gateway with it.
    path = one_file_config(
        tmp_path / "cfg",
        """
        - name: memory
        - name: trace
          config:
            storage: Memory
        - name: static
        """,
    )
    res = run_plughost("check", "--config", str(path), env=env)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_name_two_wheels_provide_is_ambiguous(plugin_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    fake_install(site, "acme-memory", "1.0", "acme_memory", {"memory": plugin_dir / "memory.so"})
    env = {"PYTHONPATH": str(site)}
    res = run_plughost("plugins", env=env)
    assert res.returncode == 1
    assert "plugin name 'memory' is provided by acme-memory 1.0 and plughost" in res.stderr
    assert "(hidden)" in res.stdout
    path = one_file_config(tmp_path / "cfg", "- name: memory\n- name: static")
    res = run_plughost("check", "--config", str(path), env=env)
    assert res.returncode == 1
    assert f"{path}:2: plugins[0].name: plugin name 'memory' is provided by" in res.stdout


def test_broken_entry_points_are_reported_not_fatal(plugin_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    fake_install(site, "acme-gone", "1.0", "acme_gone", {"gone": plugin_dir / "static.so"})
    (site / "acme_gone" / "gone.so").unlink()
    fake_install(site, "acme-misnamed", "1.0", "acme_misnamed", {"other": plugin_dir / "cors.so"})
    write(
        site / "acme_bad-1.0.dist-info" / "METADATA",
        "Metadata-Version: 2.1\nName: acme-bad\nVersion: 1.0\n",
    )
    write(
        site / "acme_bad-1.0.dist-info" / "entry_points.txt",
        "[plughost.plugins]\nBad-Name = acme_bad\nnopkg = acme_nowhere\n",
    )
    res = run_plughost("plugins", env={"PYTHONPATH": str(site)})
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert f"{site / 'acme_gone' / 'gone.so'} does not exist: reinstall acme-gone 1.0" in res.stderr
    assert "'Bad-Name' is not a plugin name" in res.stderr
    assert "there is no Python package 'acme_nowhere'" in res.stderr
    assert "is installed as 'other' but the plugin in it is named 'cors'" in res.stderr
    assert any(line.startswith("session ") for line in res.stdout.splitlines())
