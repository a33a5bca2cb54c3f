"""Cross builds: `build_plugins.py --target T` with the toolchain files in plughost/cmake/toolchains/.

Every plugin without a third-party library is built for linux-x86_64-musl (musl-gcc, the
Alpine image), linux-aarch64-musl (zig cc from PyPI) and linux-aarch64-gnu
(aarch64-linux-gnu-gcc); `plughost check --target T` accepts each file and `plughost check`
on this host refuses it with the sentence that names the difference. One build per target
per session, in the persistent build/cmake-<target> folder (incremental; zig's first build
for a target compiles its C library into zig's global cache, like tests/badfiles does).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import build_support
from build_support import BUILD_SCRIPT, CMAKE_DIR, ROOT, native_plugin_folders, plughost_note, run

from plughost.checking.targets import host_platform, parse_target

PLUGHOST = Path(sys.executable).with_name("plughost")
TARGETS = ("linux-x86_64-musl", "linux-aarch64-musl", "linux-aarch64-gnu")
#: Plugins that link nothing but libc: every target must get them.
PLAIN_PLUGINS = ("memory", "requestid", "static", "session", "limiter", "csrf")


def _build_plugins_module():
    spec = importlib.util.spec_from_file_location("build_plugins", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_plugins", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


build_plugins = _build_plugins_module()


def run_build(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return build_support.run_build(*args, timeout=900)


def run_check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run([PLUGHOST, "check", *args], cwd=ROOT, timeout=120)


def note_fields(path: Path) -> dict[str, str]:
    text = plughost_note(path)
    assert text is not None, f"{path}: no plughost note"
    return dict(item.split("=", 1) for item in text.split())


@pytest.fixture(scope="session", params=TARGETS)
def cross_build(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, str]:
    """(target, folder of its .so files, build_plugins.py's output), once per target."""
    target = request.param
    out = tmp_path_factory.mktemp(f"plugins-{target}")
    res = run_build("--target", target, "--out", out)
    assert res.returncode == 0, res.stdout + res.stderr
    return target, out, res.stdout


def test_every_plugin_without_third_party_libraries_is_built(
    cross_build: tuple[str, Path, str],
) -> None:
    target, out, stdout = cross_build
    for folder in native_plugin_folders():
        libs = build_plugins.third_party_libraries(folder)
        so = out / f"{folder.name}.so"
        if libs:
            assert not so.exists(), f"{so.name} was built for {target} though it links {libs}"
            line = re.search(
                rf"^  skipped {folder.name}  \(native_plugins/{folder.name}\): "
                r"(.*)$",
                stdout,
                re.M,
            )
            assert line, stdout
            assert f"third-party libraries ({', '.join(libs)})" in line[1], line[1]
            assert target in line[1], line[1]
        else:
            assert so.is_file(), f"native_plugins/{folder.name} gave no {so.name}\n{stdout}"
            assert re.search(
                rf"^  (built|up to date) {so.name}  \(native_plugins/"
                rf"{folder.name}\)$",
                stdout,
                re.M,
            ), stdout
    for name in PLAIN_PLUGINS:
        assert (out / f"{name}.so").is_file(), f"{name}.so must be built for {target}"
    assert "valkey" not in {p.stem for p in out.glob("*.so")}, "valkey links OpenSSL"


def test_the_note_records_the_target(cross_build: tuple[str, Path, str]) -> None:
    target, out, _ = cross_build
    want = parse_target(target)
    files = sorted(out.glob("*.so"))
    assert files
    for so in files:
        fields = note_fields(so)
        assert fields["arch"] == want.arch, (so.name, fields)
        assert fields["os"] == "linux", (so.name, fields)
        if want.libc == "musl":
            assert fields["libc"] == "musl", (so.name, fields)
        else:
            assert re.fullmatch(r"gnu-2\.\d+", fields["libc"]), (so.name, fields)


def test_check_accepts_them_for_their_target(cross_build: tuple[str, Path, str]) -> None:
    target, out, _ = cross_build
    files = sorted(out.glob("*.so"))
    res = run_check("--target", target, out)
    assert res.returncode == 0, res.stdout + res.stderr
    want = parse_target(target)
    libc = "musl" if want.libc == "musl" else "gnu-2."
    for so in files:
        assert re.search(
            rf"^ok +{re.escape(str(so))}: compatible \(ABI \d+\.\d+, "
            rf"{want.arch}, {libc}",
            res.stdout,
            re.M,
        ), res.stdout
    assert f"{len(files)} of {len(files)} plugin(s) compatible with {target}" in res.stdout


def test_check_refuses_them_on_this_host(cross_build: tuple[str, Path, str]) -> None:
    target, out, _ = cross_build
    want, host = parse_target(target), host_platform()
    assert (want.arch, want.libc) != (host.arch, host.libc), "the target is this host"
    sentences = []
    if want.arch != host.arch:
        sentences.append(
            f"built for {want.arch}, this host is {host.arch}: rebuild on an "
            f"{host.arch} machine or with the {host.arch} toolchain"
        )
    if want.libc == "musl" and host.libc == "gnu":
        sentences.append(
            f"linked against musl, this host uses {host.libc_label}: build it "
            f"with this host's toolchain, or check with --target "
            f"linux-{want.arch}-musl for the Alpine image"
        )
    res = run_check(out)
    assert res.returncode == 1, res.stdout + res.stderr
    files = sorted(out.glob("*.so"))
    for so in files:
        for sentence in sentences:
            assert f"FAIL  {so}: {sentence}" in res.stdout, res.stdout
    assert f"0 of {len(files)} plugin(s) compatible" in res.stdout


def test_a_skipped_plugin_asked_for_by_name_is_an_error() -> None:
    res = run_build("--target", "linux-aarch64-musl", "--only", "valkey")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "valkey cannot be built for linux-aarch64-musl" in res.stderr
    assert "OpenSSL" in res.stderr


def test_unknown_target_and_sanitize_are_usage_errors() -> None:
    res = run_build("--target", "linux-riscv64-musl")
    assert res.returncode == 2
    assert "linux-aarch64-musl" in res.stderr  # the choices are listed
    res = run_build("--target", "linux-aarch64-gnu", "--sanitize")
    assert res.returncode == 2
    assert "--sanitize builds for this host only" in res.stderr


def test_third_party_lookups_are_found(tmp_path: Path) -> None:
    (tmp_path / "CMakeLists.txt").write_text(
        "# find_package(NotThisOne) in a comment\n"
        "find_package(Threads)\n"
        "find_package(OpenSSL 3.0 COMPONENTS Crypto)\n"
        'find_library(FOO_LIBRARY NAMES "foo" foo2)\n'
        "find_library(BAR_LIBRARY bar)\n"
        "pkg_check_modules(Z REQUIRED IMPORTED_TARGET zlib)\n"
        "find_package(Python3 COMPONENTS Interpreter)\n"
    )
    assert build_plugins.third_party_libraries(tmp_path) == ["OpenSSL", "libfoo", "libbar", "zlib"]
    (tmp_path / "CMakeLists.txt").write_text("plughost_add_plugin(x SOURCES x.c)\n")
    assert build_plugins.third_party_libraries(tmp_path) == []


def test_extra_plugin_folders_are_cross_built_too(tmp_path: Path) -> None:
    extra = tmp_path / "more_plugins"
    for name, lookup in (("plain", ""), ("needz", "find_package(ZLIB REQUIRED)\n")):
        (extra / name).mkdir(parents=True)
        (extra / name / "CMakeLists.txt").write_text(
            f"{lookup}plughost_add_plugin({name} SOURCES {name}.c)\n"
        )
        (extra / name / f"{name}.c").write_text(
            f'#include "plugin.h"\nPH_PLUGIN_DEFINE(.name = "{name}");\n'
        )
    out = tmp_path / "out"
    res = run_build(
        "--target",
        "linux-x86_64-musl",
        "--plugins-dir",
        extra,
        "--build-dir",
        tmp_path / "build",
        "--out",
        out,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert (out / "plain.so").is_file()
    assert note_fields(out / "plain.so")["libc"] == "musl"
    assert not (out / "needz.so").exists()
    assert re.search(
        r"^  skipped needz  \(.*needz\): it links third-party libraries \(ZLIB\)", res.stdout, re.M
    ), res.stdout


def test_a_toolchain_file_builds_an_out_of_tree_plugin(tmp_path: Path) -> None:
    """The toolchain files work without build_plugins.py: zig is found through the PyPI
    package of the Python named by PLUGHOST_PYTHON."""
    src = build_support.write_hello_project(
        tmp_path / "src",
        '#include "plugin.h"\nPH_PLUGIN_DEFINE(.name = "hello");\n',
        libraries="Threads::Threads",
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ZIG", "CC")}
    env["PLUGHOST_PYTHON"] = sys.executable
    cfg = build_support.cmake_configure(
        src,
        tmp_path / "build",
        f"-DCMAKE_TOOLCHAIN_FILE={CMAKE_DIR / 'toolchains' / 'aarch64-linux-musl.cmake'}",
        f"-Dplughost_DIR={CMAKE_DIR}",
        env=env,
        timeout=600,
    )
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    bld = run(["cmake", "--build", tmp_path / "build"], env=env, timeout=600)
    assert bld.returncode == 0, bld.stdout + bld.stderr
    fields = note_fields(tmp_path / "build" / "hello.so")
    assert (fields["arch"], fields["libc"]) == ("aarch64", "musl"), fields
    res = run_check("--target", "linux-aarch64-musl", tmp_path / "build" / "hello.so")
    assert res.returncode == 0, res.stdout
