"""Inputs fuzzing found to break plughost, each as a test with its minimal input.

Plugin files: one edit to a real plugin built by CMake, checked with the real CLI.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

from elftools.elf.elffile import ELFFile

from gateway_support import PLUGHOST


def check(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PLUGHOST, "check", *args], capture_output=True, text=True,
                          timeout=timeout, errors="surrogateescape")


def section_header_field(path: Path, section: str, offset: int, value: int) -> None:
    """Sets the 4-byte field at ``offset`` of ``section``'s header (ELF64, little-endian)."""
    data = bytearray(path.read_bytes())
    with path.open("rb") as f:
        elf = ELFFile(f)
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == section)
        at = elf.header["e_shoff"] + index * elf.header["e_shentsize"] + offset
    struct.pack_into("<I", data, at, value)
    path.write_bytes(bytes(data))


SH_INFO = 44  # Elf64_Shdr: name 4, type 4, flags 8, addr 8, offset 8, size 8, link 4, info 4


def test_a_forged_count_of_version_needs_does_not_hang_the_checker(
        tmp_path: Path, test_plugin_dir: Path) -> None:
    """sh_info of .gnu.version_r set to 2**31: the walk once followed vn_next == 0 back to
    the same entry 2**31 times; it is bounded by the section's size now."""
    plugin = tmp_path / "static.so"
    shutil.copy(test_plugin_dir / "static.so", plugin)
    for count in (0x80000000, 0xFFFFFFFF, 0):
        section_header_field(plugin, ".gnu.version_r", SH_INFO, count)
        done = check(str(plugin), timeout=30)
        assert done.returncode in (0, 1), done
        assert done.stdout.splitlines()[-1].endswith("compatible with " + done.stdout.split(
            "compatible with ")[-1].strip()), done.stdout
        assert "Traceback" not in done.stdout + done.stderr


def test_names_from_the_file_are_printed_escaped(tmp_path: Path, test_plugin_dir: Path) -> None:
    """A library name holding ESC and a symbol name holding a newline: the FAIL sentences
    show them escaped, one line each, and nothing from the file reaches the terminal raw."""
    original = (test_plugin_dir / "static.so").read_bytes()
    for old, new, shown in ((b"\x00libc.so.6\x00", b"\x00lib\x1b.so.6\x00", "lib\\x1b.so.6"),
                            (b"\x00strlen\x00", b"\x00str\nen\x00", "str\\x0aen")):
        assert old in original
        plugin = tmp_path / "named.so"
        plugin.write_bytes(original.replace(old, new))  # .dynstr, and .strtab too
        done = check(str(plugin))
        assert done.returncode == 1, done
        lines = done.stdout.splitlines()
        assert all(line.startswith(("FAIL  ", "0 of 1")) for line in lines), lines
        assert "\x1b" not in done.stdout and shown in done.stdout, done.stdout
    # a file whose own name holds an ESC byte, found by scanning a folder
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(plugin, folder / "evil\x1b[31m.so")
    done = check(str(folder))
    assert "\x1b" not in done.stdout and "evil\\x1b[31m.so" in done.stdout, done.stdout
