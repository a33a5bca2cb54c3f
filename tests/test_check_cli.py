"""`plughost check` and `plughost info` as a user runs them: the installed console script,
real plugin files, exit statuses and one clear sentence per problem."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plughost.abi import ABI_MAJOR, ABI_MINOR

PLUGHOST = str(Path(sys.executable).with_name("plughost"))


def plughost(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [PLUGHOST, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def test_every_native_plugin_passes_check_and_load(plugin_dir: Path) -> None:
    plugins = sorted(p.name for p in plugin_dir.glob("*.so"))
    native = sorted(
        p.name + ".so"
        for p in (plugin_dir.parent.parent / "native_plugins").iterdir()
        if (p / "CMakeLists.txt").exists()
    )
    assert plugins == native
    static = plughost("check", plugin_dir)
    assert static.returncode == 0, static.stdout
    loaded = plughost("check", "--load", plugin_dir)
    assert loaded.returncode == 0, loaded.stdout
    for name in plugins:
        assert f"ok    {plugin_dir / name}" in loaded.stdout
    assert "type(s) loaded and initialised" in loaded.stdout
    assert f"{len(plugins)} of {len(plugins)} plugin(s) loadable" in loaded.stdout


# (bad file, words its one sentence must contain)
BAD_FILES = [
    ("empty", ["empty"]),
    ("text", ["not an ELF"]),
    ("truncated", ["truncated"]),
    ("elf32", ["32-bit", "64-bit"]),
    ("aarch64", ["aarch64", "x86_64", "rebuild"]),
    ("bigendian", ["big-endian", "little-endian"]),
    ("executable", ["executable", "-shared"]),
    ("musl", ["musl", "glibc", "linux-x86_64-musl"]),
    ("newglibc", ["glibc 2.38", "2.36", "strlcpy"]),
    ("noentry", ["PH_PLUGIN_DEFINE"]),
    ("nonote", [".note.plughost", "PH_PLUGIN_DEFINE"]),
    ("abi2", ["ABI 2.0", f"{ABI_MAJOR}.{ABI_MINOR}"]),
    ("abiminor", [f"ABI 1.{ABI_MINOR + 1}", f"{ABI_MAJOR}.{ABI_MINOR}", "upgrade plughost"]),
    ("smallsize", ["size", "8"]),
    ("unresolved", ["plughost_test_function_nobody_defines"]),
]


@pytest.mark.parametrize("name, words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_gets_exit_1_and_one_clear_sentence(
    badfiles: dict[str, Path], name: str, words: list[str]
) -> None:
    proc = plughost("check", badfiles[name])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fail_lines = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert fail_lines, proc.stdout
    first = fail_lines[0]
    assert str(badfiles[name]) in first
    for word in words:
        assert word in first, (word, first)
    assert "0 of 1 plugin(s) compatible" in proc.stdout


def test_init_failure_message_is_shown_verbatim(badfiles: dict[str, Path]) -> None:
    assert plughost("check", badfiles["initfail"]).returncode == 0  # statically fine
    proc = plughost("check", "--load", badfiles["initfail"])
    assert proc.returncode == 1
    assert "cannot open /nonexistent/key.pem: No such file or directory" in proc.stdout


def test_segfault_in_init_is_reported_not_fatal(badfiles: dict[str, Path]) -> None:
    proc = plughost("check", "--load", badfiles["segv"], badfiles["good"])
    assert proc.returncode == 1
    assert "crashed with SIGSEGV" in proc.stdout
    assert f"ok    {badfiles['good']}" in proc.stdout  # the checker carried on


def test_hanging_init_is_reported_after_the_timeout(badfiles: dict[str, Path]) -> None:
    proc = plughost("check", "--load", "--timeout", "2", badfiles["hang"])
    assert proc.returncode == 1
    assert "did not finish within 2 s" in proc.stdout


def test_duplicate_type_ids_across_plugins(badfiles: dict[str, Path]) -> None:
    proc = plughost("check", "--load", badfiles["dup_a"], badfiles["dup_b"])
    assert proc.returncode == 1
    assert "plugins.dup.middlewares.Same" in proc.stdout
    assert f"already declared by {badfiles['dup_a']}" in proc.stdout


def test_musl_target_rejects_glibc_build_and_accepts_musl_build(
    badfiles: dict[str, Path], plugin_dir: Path
) -> None:
    glibc = plughost("check", "--target", "linux-x86_64-musl", plugin_dir / "memory.so")
    assert glibc.returncode == 1
    assert "glibc" in glibc.stdout and "musl" in glibc.stdout
    musl = plughost("check", "--target", "linux-x86_64-musl", badfiles["good_musl"])
    assert musl.returncode == 0, musl.stdout


def test_aarch64_target_accepts_the_aarch64_build(badfiles: dict[str, Path]) -> None:
    assert plughost("check", "--target", "linux-aarch64-gnu", badfiles["aarch64"]).returncode == 0


def test_folder_with_pattern_krakend_style(badfiles: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(badfiles["good"], folder / "good.so")
    shutil.copy(badfiles["aarch64"], folder / "arm.plugin")
    (folder / "README.txt").write_text("not a plugin")
    assert plughost("check", folder).returncode == 0  # default pattern .so: only good.so
    proc = plughost("check", "--pattern", ".plugin", folder)
    assert proc.returncode == 1 and "arm.plugin" in proc.stdout
    assert plughost("check", "--pattern", "*", folder).returncode == 1


def test_json_output_for_tools(badfiles: dict[str, Path]) -> None:
    proc = plughost("check", "--json", badfiles["good"], badfiles["aarch64"])
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["compatible"] is False and doc["abi"] == f"{ABI_MAJOR}.{ABI_MINOR}"
    good, arm = doc["plugins"]
    assert good["compatible"] and good["problems"] == [] and good["note"]["arch"] == "x86_64"
    assert not arm["compatible"] and arm["problems"][0]["code"] == "arch"


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "nothing to check"),
        (("/nonexistent/plugin.so",), "no such file or folder"),
        (("--target", "windows-x86", "x.so"), "linux-x86_64-musl"),
        (("--load", "--target", "linux-aarch64-gnu", "x.so"), "cannot be combined"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    (tmp_path / "x.so").write_bytes(b"")
    proc = subprocess.run([PLUGHOST, "check", *args], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    proc = plughost("check", tmp_path)
    assert proc.returncode == 2 and "no files matching '.so'" in proc.stderr


def test_info_reports_abi_platform_and_sdk() -> None:
    doc = json.loads(plughost("info", "--json").stdout)
    assert doc["abi"] == f"{ABI_MAJOR}.{ABI_MINOR}"
    assert doc["platform"].startswith("linux-x86_64-gnu-2.")
    assert doc["libc"].startswith("gnu 2.")
    assert doc["cffi"]
    cmake_dir = Path(plughost("info", "--cmake-dir").stdout.strip())
    assert (cmake_dir / "plughostConfig.cmake").is_file()
    assert (cmake_dir.parent / "include" / "plugin.h").is_file()
