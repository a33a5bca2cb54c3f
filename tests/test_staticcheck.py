"""The static verdict of plughost check on real bad (and good) plugin files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from plughost.abi import ABI_MAJOR, ABI_MINOR
from plughost.checking.staticcheck import PROBLEM_CODES, Problem, StaticReport, static_check
from plughost.checking.targets import host_platform, parse_target

pytest_plugins = ("badfiles.fixtures",)

ROOT = Path(__file__).resolve().parents[1]
HOST = host_platform()
HOST_GLIBC = f"{HOST.libc_version[0]}.{HOST.libc_version[1]}" if HOST.libc_version else None


def check(path: Path, target: str = "host", **kwargs) -> StaticReport:
    report = static_check(path, parse_target(target), **kwargs)
    # every report keeps the documented order and one-sentence messages
    codes = report.codes
    assert codes == sorted(codes, key=PROBLEM_CODES.index)
    for problem in report.problems:
        assert isinstance(problem, Problem)
        assert problem.message and "\n" not in problem.message
        assert not problem.message.endswith(".")
        assert ": " in problem.message  # what is wrong: what to do
    return report


def message(report: StaticReport, code: str) -> str:
    return next(p.message for p in report.problems if p.code == code)


@pytest.fixture(scope="module", autouse=True)
def _host_is_x86_64_glibc() -> None:
    assert (HOST.arch, HOST.bits, HOST.libc) == ("x86_64", 64, "gnu"), (
        "the bad files are made for an x86_64 glibc host"
    )


# --- good files ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["good", "dup_a", "dup_b", "initfail", "segv", "hang"])
def test_valid_plugins_have_no_problems_on_the_host(badfiles: dict[str, Path], name: str) -> None:
    report = check(badfiles[name])
    assert report.problems == []
    assert report.ok
    assert report.info is not None and report.info.has_entry


def test_musl_target_rejects_glibc_plugin(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["good"], "linux-x86_64-musl")
    assert report.codes == ["libc-flavor"]
    text = message(report, "libc-flavor")
    for word in ("glibc", "linux-x86_64-musl", "musl-gcc", "Alpine"):
        assert word in text


def test_musl_target_accepts_musl_plugin(badfiles: dict[str, Path]) -> None:
    assert check(badfiles["good_musl"], "linux-x86_64-musl").ok
    assert check(badfiles["musl"], "linux-x86_64-musl").ok


def test_aarch64_target_accepts_aarch64_plugin(badfiles: dict[str, Path]) -> None:
    assert check(badfiles["aarch64"], "linux-aarch64-gnu").ok
    assert check(badfiles["aarch64"], "linux-aarch64-gnu-2.17").ok


def test_any_glibc_target(badfiles: dict[str, Path]) -> None:
    """A gnu target without a version accepts any glibc version."""
    assert check(badfiles["newglibc"], "linux-x86_64-gnu").ok
    assert check(badfiles["good"], "linux-x86_64-gnu").ok


# --- files that are not (complete) ELF files ----------------------------------------------


def test_empty(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["empty"])
    assert report.info is None
    assert report.codes == ["empty"]
    assert "0 bytes" in message(report, "empty")


def test_text(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["text"])
    assert report.codes == ["not-elf"]
    assert "not an ELF file" in message(report, "not-elf")


def test_truncated(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["truncated"])
    assert report.codes == ["truncated"]
    text = message(report, "truncated")
    assert "truncated" in text
    assert str(badfiles["truncated"].stat().st_size) in text


# --- wrong platform -----------------------------------------------------------------------


def test_elf32(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["elf32"])
    assert "elf-class" in report.codes
    assert "arch" not in report.codes  # i386 vs x86_64 is the word size, said once
    assert "unresolved-symbol" not in report.codes
    text = message(report, "elf-class")
    for word in ("32-bit", "64-bit", "i386", "x86_64", "this host"):
        assert word in text


def test_aarch64(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["aarch64"])
    assert report.codes == ["arch"]
    assert message(report, "arch") == (
        "built for aarch64, this host is x86_64: rebuild on an x86_64 machine or with the"
        " x86_64 toolchain"
    )


def test_x86_64_plugin_on_aarch64_target(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["good"], "linux-aarch64-gnu")
    assert report.codes == ["arch"]
    text = message(report, "arch")
    for word in ("x86_64", "linux-aarch64-gnu", "aarch64-linux-gnu-gcc"):
        assert word in text


def test_bigendian(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["bigendian"])
    assert report.codes[:2] == ["byte-order", "arch"]
    assert "unresolved-symbol" not in report.codes
    text = message(report, "byte-order")
    for word in ("big-endian", "little-endian", "s390x"):
        assert word in text
    assert "s390x" in message(report, "arch")


def test_executable(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["executable"])
    assert report.codes == ["not-shared-object", "no-entry"]
    text = message(report, "not-shared-object")
    for word in ("executable", "-shared", "add_library(... MODULE)"):
        assert word in text


def test_object_file(badfiles: dict[str, Path], tmp_path: Path) -> None:
    obj = tmp_path / "good.o"
    subprocess.run(
        [
            "gcc",
            "-std=c11",
            "-fPIC",
            f"-I{ROOT / 'abi'}",
            "-c",
            str(ROOT / "tests" / "badfiles" / "good.c"),
            "-o",
            str(obj),
        ],
        check=True,
    )
    report = check(obj)
    assert report.codes == ["not-shared-object"]  # the entry is found in .symtab
    assert "object file (.o)" in message(report, "not-shared-object")


def test_musl_on_glibc_host(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["musl"])
    assert report.codes == ["libc-flavor"]
    text = message(report, "libc-flavor")
    assert text.startswith(f"linked against musl, this host uses glibc {HOST_GLIBC}:")
    assert "--target linux-x86_64-musl" in text


def test_newglibc(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["newglibc"])
    assert report.codes == ["glibc-too-new"]  # strlcpy is not also "unresolved"
    text = message(report, "glibc-too-new")
    assert text.startswith(
        f"needs glibc 2.38 (GLIBC_2.38 symbols: strlcpy), this host has {HOST_GLIBC}:"
    )
    assert f"glibc <= {HOST_GLIBC}" in text


def test_glibc_target_version(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["newglibc"], "linux-x86_64-gnu-2.28")
    assert report.codes == ["glibc-too-new"]
    text = message(report, "glibc-too-new")
    for word in ("2.38", "linux-x86_64-gnu-2.28", "2.28", "x86_64-linux-gnu.2.28"):
        assert word in text
    assert check(badfiles["newglibc"], "linux-x86_64-gnu-2.39").ok


# --- entry, note and ABI ------------------------------------------------------------------


def test_noentry(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["noentry"])
    assert report.codes == ["no-entry"]
    text = message(report, "no-entry")
    assert "PH_PLUGIN_DEFINE" in text and "abi/plugin.h" in text


def test_nonote(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["nonote"])
    assert report.codes == ["no-note"]
    text = message(report, "no-note")
    assert ".note.plughost" in text and "PH_PLUGIN_DEFINE" in text and "not by hand" in text


def test_abi2(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["abi2"])
    assert report.codes == ["abi-major"]
    text = message(report, "abi-major")
    assert f"built for ABI 2.0, this plughost implements {ABI_MAJOR}.{ABI_MINOR}" in text


def test_abiminor(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["abiminor"])
    assert report.codes == ["abi-minor-newer"]
    host = f"{ABI_MAJOR}.{ABI_MINOR}"
    assert message(report, "abi-minor-newer") == (
        f"built for ABI {ABI_MAJOR}.{ABI_MINOR + 1}, this plughost implements {host}:"
        f" upgrade plughost or rebuild against the {host} header"
    )
    # a newer host accepts it
    assert check(badfiles["abiminor"], host_abi=(ABI_MAJOR, ABI_MINOR + 1)).ok


def test_smallsize(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["smallsize"])
    assert report.codes == ["entry-size"]
    text = message(report, "entry-size")
    assert "8 bytes" in text and "80" in text and "PH_PLUGIN_DEFINE" in text


def _patched(tmp_path: Path, source: Path, name: str, old: bytes, new: bytes) -> Path:
    data = source.read_bytes()
    assert data.count(old) == 1
    out = tmp_path / name
    out.write_bytes(data.replace(old, new))
    return out


def test_note_mismatch(badfiles: dict[str, Path], tmp_path: Path) -> None:
    """A note that says something else than the entry header and the ELF header."""
    edited = _patched(tmp_path, badfiles["good"], "edited.so", b"arch=x86_64 ", b"arch=i386   ")
    report = check(edited)
    assert report.codes == ["note-mismatch"]
    text = message(report, "note-mismatch")
    assert "the note says arch=i386 but the ELF header says x86_64" in text

    built = f"abi={ABI_MAJOR}.{ABI_MINOR} ".encode()
    newer = _patched(tmp_path, badfiles["good"], "newer.so", built, b"abi=1.7 ")
    report = check(newer)
    assert report.codes == ["note-mismatch", "abi-minor-newer"]
    text = message(report, "note-mismatch")
    assert "abi=1.7" in text and f"entry header says {ABI_MAJOR}.{ABI_MINOR}" in text


def test_entry_magic(badfiles: dict[str, Path], tmp_path: Path) -> None:
    broken = _patched(tmp_path, badfiles["good"], "magic.so", b"PLGH", b"XLGH")
    report = check(broken)
    assert report.codes == ["entry-magic"]
    assert "0x48474C50" in message(report, "entry-magic")


# --- symbols ------------------------------------------------------------------------------


def test_unresolved(badfiles: dict[str, Path]) -> None:
    report = check(badfiles["unresolved"])
    assert report.codes == ["unresolved-symbol"]
    text = message(report, "unresolved-symbol")
    assert "plughost_test_function_nobody_defines" in text
    assert "link the library that defines it or remove the calls" in text


def test_unresolved_only_checked_on_the_host(badfiles: dict[str, Path]) -> None:
    assert check(badfiles["unresolved"], "linux-x86_64-gnu").ok


def test_missing_library(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    assert gcc
    (tmp_path / "dep.c").write_text("int phtest_dep(void) { return 1; }\n")
    (tmp_path / "plugin.c").write_text(
        '#include "plugin.h"\nint phtest_dep(void);\n'
        "static ph_status init(const ph_config *c, void **s) { (void)c; (void)s;"
        " return phtest_dep() ? PH_OK : PH_ERROR; }\n"
        'PH_PLUGIN_DEFINE(.name = "needsdep", .init = init);\n'
    )
    subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            str(tmp_path / "dep.c"),
            "-o",
            str(tmp_path / "libphtestdep2.so"),
        ],
        check=True,
    )
    plugin = tmp_path / "needsdep.so"
    subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            f"-I{ROOT / 'abi'}",
            str(tmp_path / "plugin.c"),
            f"-L{tmp_path}",
            "-lphtestdep2",
            "-o",
            str(plugin),
        ],
        check=True,
    )
    report = check(plugin)
    assert report.codes == ["missing-library"]
    assert "libphtestdep2.so" in message(report, "missing-library")
