"""The out-of-tree SDK: `plughost new` scaffolds a plugin project that builds against the
*installed* package (plugin.h + the CMake package it carries), passes `plughost check`, and
answers requests through a gateway.

The same from an installed wheel in a fresh virtualenv, and a plugin shipped as a wheel of
its own, is tests/test_packaging.py.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from plughost.abi import ABI_MAJOR, ABI_MINOR
from click.testing import CliRunner

from plughost.cli import main
from plughost.sdk.scaffold import FILES, ScaffoldError, create_project, suggest_name, validate_name

from build_support import run

ROOT = Path(__file__).resolve().parent.parent
SOURCE_CMAKE_DIR = ROOT / "host" / "plughost" / "cmake"
EXPORTS = {"plughost_plugin_entry", "_init", "_fini"}


def _new(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["new", *args])
    return res.exit_code, res.output


# ---------------------------------------------------------------- plughost new itself


@pytest.mark.parametrize(
    "name, why",
    [
        ("My-Plugin", "try 'my_plugin'"),
        ("9lives", "starting with a letter"),
        ("hello world", "try 'hello_world'"),
        ("x" * 49, "longer than 48"),
        ("test", "CMake reserves"),
        ("", "is empty"),
    ],
)
def test_new_refuses_bad_names(tmp_path: Path, name: str, why: str) -> None:
    code, out = _new(name, "--dir", str(tmp_path))
    assert code == 2, out
    assert out.startswith(f"plughost new: '{name}' ") and why in out, out
    assert list(tmp_path.iterdir()) == []


def test_name_rules() -> None:
    for good in ("a", "myplugin", "rate_limit2", "x" * 48):
        validate_name(good)
    assert suggest_name("Rate-Limit 2") == "rate_limit_2"
    assert suggest_name("42") == ""
    with pytest.raises(ScaffoldError):
        validate_name("all")


def test_new_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.c").write_text("int precious;\n")
    code, out = _new("taken", "--dir", str(tmp_path))
    assert code == 2 and "already exists" in out and "never overwrites" in out, out
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["mine.c"]
    assert (tmp_path / "taken" / "mine.c").read_text() == "int precious;\n"


def test_new_writes_the_project_and_prints_next_steps(tmp_path: Path) -> None:
    code, out = _new("my_plugin", "--dir", str(tmp_path))
    assert code == 0, out
    project = tmp_path / "my_plugin"
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == sorted(out_name.format(name="my_plugin") for out_name in FILES.values())
    for name in files:
        text = (project / name).read_text()
        assert not re.search(r"@[A-Z_]+@", text), f"{name} kept a placeholder"
    pyproject = (project / "pyproject.toml").read_text()
    assert (
        '[project.entry-points."plughost.plugins"]\nmy_plugin = "plughost_my_plugin"' in pyproject
    )
    assert 'name = "plughost-my-plugin"' in pyproject
    assert (
        "install(TARGETS my_plugin LIBRARY DESTINATION plughost_my_plugin)"
        in (project / "CMakeLists.txt").read_text()
    )
    cmake = (project / "CMakeLists.txt").read_text()
    assert f"find_package(plughost {ABI_MAJOR}.{ABI_MINOR} REQUIRED" in cmake
    assert "plughost_add_plugin(my_plugin SOURCES my_plugin.c" in cmake
    source = (project / "my_plugin.c").read_text()
    for type_id in (
        "plugins.my_plugin.storages.TableStorage",
        "plugins.my_plugin.middlewares.StampMiddleware",
        "plugins.my_plugin.actions.HelloAction",
    ):
        assert f'"{type_id}"' in source and type_id in (project / "gateway.yaml").read_text()
    assert 'PH_PLUGIN_DEFINE(.name = "my_plugin"' in source
    assert '"X-My-Plugin"' in source
    # Next steps, in the order a user runs them.
    steps = [
        "cd ",
        "cmake -S . -B build",
        "cmake --build build",
        "plughost check --load",
        "plughost check --config gateway.yaml",
        "plughost serve --config gateway.yaml",
        "pip wheel . -w dist",
    ]
    positions = [out.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), out


def test_create_project_into_an_explicit_folder(tmp_path: Path) -> None:
    project = create_project("demo", directory=tmp_path / "elsewhere")
    assert project.path == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere" / "demo.c").is_file()
    with pytest.raises(ScaffoldError, match="is not a folder"):
        create_project("demo", directory=tmp_path / "missing" / "demo")


# ------------------------------------------- the scaffold builds and runs (source tree)


def _build(project: Path, build: Path, *extra: str, env: dict[str, str] | None = None) -> Path:
    cfg = run(["cmake", "-S", project, "-B", build, *extra], env=env)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    bld = run(["cmake", "--build", build], env=env)
    assert bld.returncode == 0, bld.stdout + bld.stderr
    so = build / f"{project.name}.so"
    assert so.is_file()
    return so


def test_scaffold_builds_warning_free_and_serves_in_process(tmp_path: Path) -> None:
    """The quick loop, against the source tree's SDK: -Wall -Wextra -Werror (set by
    plughost_add_plugin) with gcc, and with musl-gcc for the Alpine image."""
    from plughost import Gateway

    project = create_project("stamp", tmp_path).path
    _build(project, project / "build", f"-Dplughost_DIR={SOURCE_CMAKE_DIR}")
    if shutil.which("musl-gcc"):
        env = {k: v for k, v in os.environ.items() if k != "CC"}
        _build(
            project,
            project / "build-musl",
            f"-Dplughost_DIR={SOURCE_CMAKE_DIR}",
            "-DCMAKE_C_COMPILER=musl-gcc",
            env=env,
        )
    with Gateway.from_config(project / "gateway.yaml") as gateway:
        for visit in (1, 2):
            response = gateway.handle("GET", "/hello")
            headers = {k.lower(): v for k, v in response.headers}
            assert response.status == 200, response.body
            assert headers[b"x-stamp"] == b"stamped"
            assert headers[b"x-stamp-visits"] == str(visit).encode()
            assert response.body == f"hello from stamp\nvisits: {visit}\n".encode()
        storage = gateway.storage("Visits")
        assert storage.get(b"visits:/hello") == b"2"
        storage.set(b"k", b"v", ttl=60)
        assert storage.incr(b"n", 5) == 5 and storage.incr(b"n") == 6
        assert storage.delete(b"k") and storage.get(b"k") is None


def test_scaffold_config_errors_name_the_key(tmp_path: Path) -> None:
    from plughost.errors import ConfigError
    from plughost.loading.loader import Host

    project = create_project("stamp", tmp_path).path
    so = _build(project, project / "build", f"-Dplughost_DIR={SOURCE_CMAKE_DIR}")
    with Host() as host:
        host.load_plugin(so)
        with pytest.raises(ConfigError, match=r"maxEntries.*at least 1"):
            host.create_storage("T", "plugins.stamp.storages.TableStorage", {"maxEntries": 0})
        with pytest.raises(ConfigError, match=r"status.*between 200 and 599"):
            host.create_action("plugins.stamp.actions.HelloAction", {"status": 99})
        with pytest.raises(ConfigError, match=r"header.*not an HTTP header name"):
            host.create_middleware(
                "plugins.stamp.middlewares.StampMiddleware", {"header": "bad header"}
            )
        with pytest.raises(ConfigError, match=r"storage.*no storage named 'Nope'"):
            host.create_middleware("plugins.stamp.middlewares.StampMiddleware", {"storage": "Nope"})
