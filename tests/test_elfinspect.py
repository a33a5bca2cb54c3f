"""Static ELF inspection of real plugin files (nothing is loaded or run)."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from plughost.abi import ABI_MAJOR, ABI_MINOR, PLUGIN_MAGIC, min_entry_size
from plughost.checking.elfinspect import (
    ElfInspectionError,
    find_missing_libraries,
    find_unresolved,
    inspect_elf,
)

pytest_plugins = ("badfiles.fixtures",)


def _assert_valid_plugin_entry(info, bits: int = 64) -> None:
    assert info.has_entry
    header = info.entry_header
    assert header is not None
    assert (header.magic, header.abi_major, header.abi_minor) == (
        PLUGIN_MAGIC,
        ABI_MAJOR,
        ABI_MINOR,
    )
    # ABI 1.2's entry: 1.0's fields, then the options pointer it appended.
    assert header.size == min_entry_size(bits) + bits // 8 == info.entry_symbol_size
    assert header.reserved == 0


def test_good(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["good"])
    assert info.path == str(badfiles["good"])
    assert info.size == badfiles["good"].stat().st_size
    assert (info.elf_class, info.byte_order, info.machine) == (64, "little", "x86_64")
    assert info.elf_type == "shared-object"
    assert info.osabi == "ELFOSABI_SYSV"
    assert info.interpreter is None
    assert info.note is not None
    assert info.note["abi"] == f"{ABI_MAJOR}.{ABI_MINOR}"
    assert info.note["arch"] == "x86_64"
    assert info.note["bits"] == "64"
    assert info.note["endian"] == "little"
    assert info.note["libc"].startswith("gnu-2.")
    assert info.note["os"] == "linux"
    assert info.note_text.startswith(f"abi={ABI_MAJOR}.{ABI_MINOR} arch=x86_64")
    _assert_valid_plugin_entry(info)
    assert info.undefined == ()  # weak __cxa_finalize & co. are not counted


def test_good_musl(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["good_musl"])
    assert info.machine == "x86_64"
    assert info.needed == ("libc.so",)
    assert info.libc == "musl"
    assert info.glibc_required is None
    assert info.note["libc"] == "musl"
    _assert_valid_plugin_entry(info)


def test_aarch64(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["aarch64"])
    assert (info.elf_class, info.byte_order, info.machine) == (64, "little", "aarch64")
    assert info.note["arch"] == "aarch64"
    _assert_valid_plugin_entry(info)


def test_elf32(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["elf32"])
    assert (info.elf_class, info.byte_order, info.machine) == (32, "little", "i386")
    assert info.note["bits"] == "32"
    _assert_valid_plugin_entry(info, bits=32)


def test_bigendian(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["bigendian"])
    assert (info.elf_class, info.byte_order, info.machine) == (64, "big", "s390x")
    assert info.note["endian"] == "big"
    _assert_valid_plugin_entry(info)  # the header is read in the file's byte order


def test_executable(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["executable"])
    assert info.elf_type == "pie-executable"
    assert info.interpreter is not None and "ld-linux" in info.interpreter
    assert info.libc == "gnu"
    assert not info.has_entry


def test_musl(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["musl"])
    assert info.libc == "musl"
    _assert_valid_plugin_entry(info)


def test_newglibc(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["newglibc"])
    assert info.libc == "gnu"
    assert info.glibc_required == (2, 38)
    assert info.glibc_required_label == "2.38"
    assert info.glibc_symbols_needing == ("strlcpy",)
    assert "strlcpy@GLIBC_2.38" in info.undefined


def test_glibc_version_from_libc_calls(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["hang"])  # calls sleep()
    assert info.needed == ("libc.so.6",)
    assert info.libc == "gnu"
    assert info.glibc_required == (2, 2)  # GLIBC_2.2.5, the x86_64 baseline
    assert "sleep" in info.glibc_symbols_needing
    assert any(sym.startswith("sleep@GLIBC_") for sym in info.undefined)


def test_noentry(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["noentry"])
    assert not info.has_entry
    assert info.entry_header is None and info.entry_symbol_size is None
    assert info.note is None


def test_nonote(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["nonote"])
    assert info.note is None
    _assert_valid_plugin_entry(info)


def test_abi2_and_abiminor(badfiles: dict[str, Path]) -> None:
    abi2 = inspect_elf(badfiles["abi2"])
    assert abi2.note["abi"] == "2.0"
    assert (abi2.entry_header.abi_major, abi2.entry_header.abi_minor) == (2, 0)
    minor = inspect_elf(badfiles["abiminor"])
    assert minor.note["abi"] == f"1.{ABI_MINOR + 1}"
    assert (minor.entry_header.abi_major, minor.entry_header.abi_minor) == (1, ABI_MINOR + 1)


def test_smallsize(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["smallsize"])
    assert info.entry_header.magic == PLUGIN_MAGIC
    assert info.entry_header.size == 8
    assert info.entry_symbol_size == min_entry_size(64) + 8


def test_unresolved(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["unresolved"])
    assert info.undefined == ("plughost_test_function_nobody_defines",)
    assert find_unresolved(info) == ["plughost_test_function_nobody_defines"]


def test_resolved_libc_symbols(badfiles: dict[str, Path]) -> None:
    info = inspect_elf(badfiles["hang"])
    assert find_missing_libraries(info) == []
    assert find_unresolved(info) == []


# --- files that are not (complete) ELF files ------------------------------------------


@pytest.mark.parametrize(
    "name,code,words",
    [
        ("empty", "empty", ["empty", "0 bytes"]),
        ("text", "not-elf", ["not an ELF file", "text file"]),
        ("truncated", "truncated", ["truncated", "copy or build it again"]),
    ],
)
def test_not_inspectable(badfiles: dict[str, Path], name: str, code: str, words: list[str]) -> None:
    path = badfiles[name]
    with pytest.raises(ElfInspectionError) as info:
        inspect_elf(path)
    assert info.value.code == code
    assert info.value.message.startswith(str(path))
    assert str(path) not in info.value.detail
    for word in words:
        assert word in info.value.message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ElfInspectionError) as info:
        inspect_elf(tmp_path / "nope.so")
    assert info.value.code == "unreadable"
    assert "no such file" in info.value.message
    with pytest.raises(ElfInspectionError) as info:
        inspect_elf(tmp_path)
    assert info.value.code == "unreadable"
    assert "directory" in info.value.message


def _patched(tmp_path: Path, source: Path, name: str, patch) -> Path:
    data = bytearray(source.read_bytes())
    patch(data)
    out = tmp_path / name
    out.write_bytes(bytes(data))
    return out


def test_truncation_found_from_offsets(badfiles: dict[str, Path], tmp_path: Path) -> None:
    good = badfiles["good"]
    size = good.stat().st_size
    # only the section header table cut off
    shoff = struct.unpack_from("<Q", good.read_bytes(), 0x28)[0]
    cut = tmp_path / "cut.so"
    cut.write_bytes(good.read_bytes()[: shoff + 64])
    with pytest.raises(ElfInspectionError) as info:
        inspect_elf(cut)
    assert info.value.code == "truncated"
    assert "section headers" in info.value.message
    # e_shoff pointing far beyond the end of an otherwise complete file
    far = _patched(tmp_path, good, "far.so", lambda d: struct.pack_into("<Q", d, 0x28, size * 4))
    with pytest.raises(ElfInspectionError) as info:
        inspect_elf(far)
    assert info.value.code == "truncated"
    # only the ELF header
    with pytest.raises(ElfInspectionError) as info:
        inspect_elf(_patched(tmp_path, good, "hdr.so", lambda d: d.__delitem__(slice(40, None))))
    assert info.value.code == "truncated"


def test_bad_identification(badfiles: dict[str, Path], tmp_path: Path) -> None:
    def bad_class(d: bytearray) -> None:
        d[4] = 7

    with pytest.raises(ElfInspectionError) as info:
        inspect_elf(_patched(tmp_path, badfiles["good"], "class.so", bad_class))
    assert info.value.code == "not-elf"
    archive = tmp_path / "libx.a"
    archive.write_bytes(b"!<arch>\n" + b"\0" * 64)
    with pytest.raises(ElfInspectionError) as info:
        inspect_elf(archive)
    assert info.value.code == "not-elf"
    assert "static library archive" in info.value.message


def test_corrupt_files_only_raise_inspection_errors(
    badfiles: dict[str, Path], tmp_path: Path
) -> None:
    """Random damage to a real plugin never escapes as a pyelftools exception."""
    original = badfiles["good"].read_bytes()
    rng = random.Random(20261125)
    target = tmp_path / "damaged.so"
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.randint(1, 24)):
            pos = rng.randrange(16, len(data))
            data[pos] = rng.randrange(256)
        target.write_bytes(bytes(data))
        try:
            inspect_elf(target)
        except ElfInspectionError as exc:
            assert exc.code in {"truncated", "unreadable", "not-elf"}
            assert str(target) in exc.message


# --- library resolution ---------------------------------------------------------------


def test_missing_library_and_search_dirs(tmp_path: Path) -> None:
    """A plugin linked against a library that is not installed anywhere standard."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is not installed (Debian package build-essential)"
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (tmp_path / "dep.c").write_text("int phtest_dep_value(void) { return 7; }\n")
    (tmp_path / "user.c").write_text(
        "int phtest_dep_value(void);\nint phtest_user(void) { return phtest_dep_value(); }\n"
    )
    subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            "-Wl,-soname,libphtestdep.so.1",
            str(tmp_path / "dep.c"),
            "-o",
            str(libdir / "libphtestdep.so.1"),
        ],
        check=True,
    )
    (libdir / "libphtestdep.so").symlink_to("libphtestdep.so.1")
    user = tmp_path / "user.so"
    subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            str(tmp_path / "user.c"),
            f"-L{libdir}",
            "-lphtestdep",
            "-o",
            str(user),
        ],
        check=True,
    )
    info = inspect_elf(user)
    assert info.needed == ("libphtestdep.so.1",)
    assert find_missing_libraries(info) == ["libphtestdep.so.1"]
    assert find_missing_libraries(info, search_dirs=[str(libdir)]) == []
    assert find_unresolved(info, search_dirs=[str(libdir)]) == []
    assert find_unresolved(info) == ["phtest_dep_value"]
