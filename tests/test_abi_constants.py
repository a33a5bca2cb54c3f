"""plughost.abi must say what abi/plugin.h says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plughost import abi

HEADER = Path(__file__).resolve().parents[1] / "abi" / "plugin.h"


@pytest.fixture(scope="module")
def header_text() -> str:
    return HEADER.read_text()


def _define(text: str, name: str) -> str:
    match = re.search(rf"^#define {name}\s+(.+?)\s*(?:/\*.*)?$", text, re.M)
    assert match is not None, f"#define {name} not found in {HEADER}"
    return match[1]


def test_abi_version(header_text: str) -> None:
    assert abi.ABI_MAJOR == int(_define(header_text, "PH_ABI_MAJOR"))
    assert abi.ABI_MINOR == int(_define(header_text, "PH_ABI_MINOR"))


def test_magic_and_note_type(header_text: str) -> None:
    assert abi.PLUGIN_MAGIC == int(_define(header_text, "PH_PLUGIN_MAGIC").rstrip("uU"), 16)
    assert abi.NOTE_TYPE == int(_define(header_text, "PH_NOTE_TYPE").rstrip("uU"), 16)
    # "the bytes PLGH read as a little-endian word"
    assert abi.PLUGIN_MAGIC.to_bytes(4, "little") == b"PLGH"


def test_entry_symbol(header_text: str) -> None:
    assert _define(header_text, "PH_ENTRY_SYMBOL") == f'"{abi.ENTRY_SYMBOL}"'
    assert f"const ph_plugin {abi.ENTRY_SYMBOL} =" in header_text


def test_note_section_and_owner(header_text: str) -> None:
    assert f'section("{abi.NOTE_SECTION}")' in header_text
    # namesz counts the terminating NUL
    assert re.search(
        rf'\{{{len(abi.NOTE_OWNER) + 1}, sizeof\(PH__NOTE_TEXT\), PH_NOTE_TYPE,[\s\\]*"{abi.NOTE_OWNER}"',
        header_text,
    )


def test_header_layout(header_text: str) -> None:
    body = re.search(
        r"typedef struct ph_plugin_header \{(.*?)\} ph_plugin_header;", header_text, re.S
    )
    assert body is not None
    fields = re.findall(r"^\s*(uint\d+_t) (\w+);", body[1], re.M)
    assert fields == [
        ("uint32_t", "magic"),
        ("uint16_t", "abi_major"),
        ("uint16_t", "abi_minor"),
        ("uint32_t", "size"),
        ("uint32_t", "reserved"),
    ]
    assert abi.HEADER_SIZE == sum(int(t[4:-2]) // 8 for t, _ in fields)


def test_min_entry_size_values() -> None:
    assert abi.min_entry_size(64) == 80
    assert abi.min_entry_size(32) == 48
    with pytest.raises(ValueError):
        abi.min_entry_size(16)


_SIZE_PROBE = """
#include <stddef.h>
#include "plugin.h"
_Static_assert(sizeof(ph_plugin_header) == {header}, "ph_plugin_header size");
/* ABI 1.0's entry ends where 1.2's options begin; 1.2 appended that one pointer. */
_Static_assert(offsetof(ph_plugin, options) == {entry}, "ph_plugin size of ABI 1.0");
_Static_assert(sizeof(ph_plugin) == {entry} + sizeof(void *), "ph_plugin size");
"""


def _compilers() -> list[tuple[str, list[str], int]]:
    zig = [sys.executable, "-m", "ziglang", "cc"]
    return [
        ("gcc", ["gcc"], 64),
        ("aarch64", ["aarch64-linux-gnu-gcc"], 64),
        ("zig-i386", [*zig, "-target", "x86-linux-musl"], 32),
    ]


@pytest.mark.parametrize("label,compiler,bits", _compilers(), ids=[c[0] for c in _compilers()])
def test_min_entry_size_matches_compiler(
    tmp_path: Path, label: str, compiler: list[str], bits: int
) -> None:
    """sizeof(ph_plugin) of ABI 1.0 (the least the checker accepts) as a real compiler for a
    32/64-bit target sees it: where 1.2's appended options field begins."""
    if compiler[0] != sys.executable:
        assert shutil.which(compiler[0]), f"{compiler[0]} is not installed"
    probe = tmp_path / "probe.c"
    probe.write_text(_SIZE_PROBE.format(header=abi.HEADER_SIZE, entry=abi.min_entry_size(bits)))
    proc = subprocess.run(
        [
            *compiler,
            "-std=c11",
            "-c",
            f"-I{HEADER.parent}",
            str(probe),
            "-o",
            str(tmp_path / "probe.o"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
