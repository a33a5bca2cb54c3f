"""The plugin build: build_plugins.py, the top-level CMakeLists.txt and the CMake package.

Every native plugin must come out as a .so that exports only the entry symbol and carries
the .note.plughost note; a broken plugin must fail loudly with the compiler's own words;
out-of-tree plugins must build with find_package(plughost).
"""

from __future__ import annotations

import platform
import re
import tomllib
from pathlib import Path

import pytest

from plughost.abi import ABI_MAJOR, ABI_MINOR
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from build_support import (
    CMAKE_DIR,
    ROOT,
    cmake_configure,
    native_plugin_folders,
    plughost_note,
    run,
    run_build,
    write_hello_project,
)

ALLOWED_EXPORTS = {"plughost_plugin_entry", "_init", "_fini"}


def exported_symbols(path: Path) -> set[str]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        dynsym = elf.get_section_by_name(".dynsym")
        assert isinstance(dynsym, SymbolTableSection), f"{path} has no .dynsym"
        return {
            s.name
            for s in dynsym.iter_symbols()
            if s.name
            and s["st_shndx"] != "SHN_UNDEF"
            and s["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK")
        }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("plugins")
    res = run_build("--out", out)
    assert res.returncode == 0, res.stdout + res.stderr
    return out, res.stdout


def test_every_native_plugin_is_built(built: tuple[Path, str]) -> None:
    out, stdout = built
    folders = native_plugin_folders()
    assert folders, "native_plugins/ has no plugin"
    for folder in folders:
        so = out / f"{folder.name}.so"
        assert so.is_file(), f"{folder} produced no {so.name}"
        assert re.search(
            rf"^  (built|up to date) {so.name}  \(native_plugins/{folder.name}\)$", stdout, re.M
        ), stdout


def test_plugins_export_only_the_entry(built: tuple[Path, str]) -> None:
    out, _ = built
    for folder in native_plugin_folders():
        so = out / f"{folder.name}.so"
        exports = exported_symbols(so)
        assert "plughost_plugin_entry" in exports, so
        assert exports <= ALLOWED_EXPORTS, f"{so.name} exports {sorted(exports - ALLOWED_EXPORTS)}"


def test_plugins_carry_the_note(built: tuple[Path, str]) -> None:
    out, _ = built
    header = (ROOT / "abi" / "plugin.h").read_text()
    major = re.search(r"#define PH_ABI_MAJOR (\d+)", header).group(1)  # type: ignore[union-attr]
    minor = re.search(r"#define PH_ABI_MINOR (\d+)", header).group(1)  # type: ignore[union-attr]
    for folder in native_plugin_folders():
        so = out / f"{folder.name}.so"
        note = plughost_note(so)
        assert note is not None, f"{so.name} has no .note.plughost"
        fields = dict(item.split("=", 1) for item in note.split())
        assert fields["abi"] == f"{major}.{minor}", note
        assert fields["arch"] == platform.machine(), note
        assert fields["os"] == "linux", note


def test_nothing_to_do_does_not_reconfigure(built: tuple[Path, str]) -> None:
    out, _ = built
    res = run_build("--out", out)
    assert res.returncode == 0, res.stderr
    assert "configuring" not in res.stdout
    assert "  up to date memory.so  (native_plugins/memory)" in res.stdout


def test_broken_plugin_fails_with_the_compiler_message(tmp_path: Path) -> None:
    extra = tmp_path / "more_plugins"
    (extra / "broken").mkdir(parents=True)
    (extra / "broken" / "CMakeLists.txt").write_text(
        "plughost_add_plugin(broken SOURCES broken.c)\n"
    )
    (extra / "broken" / "broken.c").write_text(
        '#include "plugin.h"\n'
        "int broken_value(void) { return no_such_identifier_42; }\n"
        'PH_PLUGIN_DEFINE(.name = "broken");\n'
    )
    res = run_build(
        "--plugins-dir",
        extra,
        "--only",
        "broken",
        "--build-dir",
        tmp_path / "build",
        "--out",
        tmp_path / "out",
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "no_such_identifier_42" in res.stderr  # the compiler's own output is shown
    last = res.stderr.strip().splitlines()[-1]
    assert "FAILED" in last and "broken" in last, last
    assert not (tmp_path / "out" / "broken.so").exists()


def test_unresolved_symbol_fails_at_link_time(tmp_path: Path) -> None:
    """-Wl,--no-undefined: a plugin may not depend on a host symbol."""
    extra = tmp_path / "more_plugins"
    (extra / "needy").mkdir(parents=True)
    (extra / "needy" / "CMakeLists.txt").write_text("plughost_add_plugin(needy SOURCES needy.c)\n")
    (extra / "needy" / "needy.c").write_text(
        '#include "plugin.h"\n'
        "extern int some_host_function(void);\n"
        "static ph_status init(const ph_config *c, void **s) {\n"
        "  (void)c; (void)s; return some_host_function() ? PH_OK : PH_ERROR;\n}\n"
        'PH_PLUGIN_DEFINE(.name = "needy", .init = init);\n'
    )
    res = run_build(
        "--plugins-dir",
        extra,
        "--only",
        "needy",
        "--build-dir",
        tmp_path / "build",
        "--out",
        tmp_path / "out",
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "some_host_function" in res.stderr
    assert "needy" in res.stderr.strip().splitlines()[-1]


def test_out_of_tree_plugin_uses_the_cmake_package(tmp_path: Path) -> None:
    src = write_hello_project(
        tmp_path / "src",
        '#include "plugin.h"\nPH_PLUGIN_DEFINE(.name = "hello", .version = "0.0.1");\n',
    )
    build = tmp_path / "build"
    # <prefix>/plughost/cmake/ is on find_package's search path for prefix = host/.
    cfg = cmake_configure(src, build, f"-DCMAKE_PREFIX_PATH={ROOT / 'host'}")
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    bld = run(["cmake", "--build", build])
    assert bld.returncode == 0, bld.stdout + bld.stderr
    so = build / "hello.so"
    assert so.is_file()
    assert exported_symbols(so) <= ALLOWED_EXPORTS
    assert plughost_note(so) is not None


def test_cmake_package_refuses_another_abi_major(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        "project(future C)\n"
        "find_package(plughost 2.0 REQUIRED)\n"
    )
    cfg = cmake_configure(src, tmp_path / "build", f"-Dplughost_DIR={CMAKE_DIR}")
    assert cfg.returncode != 0
    assert "plughost" in cfg.stderr and f"{ABI_MAJOR}.{ABI_MINOR}" in cfg.stderr, cfg.stderr


def test_cmake_package_version_matches_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    config = (ROOT / "host" / "plughost" / "cmake" / "plughostConfig.cmake").read_text()
    m = re.search(r'set\(PLUGHOST_PACKAGE_VERSION "([^"]+)"\)', config)
    assert m and m.group(1) == project
    assert (ROOT / "host" / "plughost" / "include" / "plugin.h").resolve() == (
        ROOT / "abi" / "plugin.h"
    ).resolve()
