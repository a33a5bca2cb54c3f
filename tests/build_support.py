"""Helpers for the tests that build and run C: a command run with its output captured,
build_plugins.py, the .note.plughost of a built plugin, a minimal out-of-tree plugin project
and a plugin compiled by hand with cc against a given plugin.h."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "build_plugins.py"
#: The CMake package in the source tree (what ``-Dplughost_DIR=`` names).
CMAKE_DIR = ROOT / "host" / "plughost" / "cmake"
#: The type of the plughost note in .note.plughost (PH_NOTE_TYPE in plugin.h).
NOTE_TYPE = 0x50480001


def run(
    cmd: list[str | Path], timeout: float = 300, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """``cmd`` run to its end with its output captured as text; a failure is returned (look
    at ``returncode``), not raised."""
    return subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )  # type: ignore[call-overload]


def run_build(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """build_plugins.py with ``args``, run from the checkout with this Python."""
    return run([sys.executable, BUILD_SCRIPT, *args], cwd=ROOT, timeout=timeout)


def native_plugin_folders() -> list[Path]:
    """Every plugin folder of native_plugins/ (those with a CMakeLists.txt)."""
    return sorted(p.parent for p in (ROOT / "native_plugins").glob("*/CMakeLists.txt"))


def plughost_note(path: Path) -> str | None:
    """The text of the plughost note in ``path``'s .note.plughost, or None without one."""
    with path.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".note.plughost")
        if not isinstance(section, NoteSection):
            return None
        for note in section.iter_notes():
            n_type: object = note["n_type"]  # an int for types pyelftools does not know
            if note["n_name"] == "plughost" and n_type == NOTE_TYPE:
                desc = note["n_desc"]
                raw = desc if isinstance(desc, bytes) else bytes.fromhex(desc)
                return raw.split(b"\0", 1)[0].decode()
    return None


def write_hello_project(src: Path, hello_c: str, libraries: str = "") -> Path:
    """An out-of-tree plugin project in ``src``: a CMakeLists.txt that finds the plughost
    CMake package (ABI 1.0 or later) and builds hello.so from ``hello_c``, linking
    ``libraries`` when given."""
    src.mkdir()
    link = f" LIBRARIES {libraries}" if libraries else ""
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        "project(hello C)\n"
        "find_package(plughost 1.0 REQUIRED)\n"
        f"plughost_add_plugin(hello SOURCES hello.c{link})\n"
    )
    (src / "hello.c").write_text(hello_c)
    return src


def cmake_configure(
    src: Path, build: Path, *options: str, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """``cmake -S src -B build *options`` (``kwargs`` as for run)."""
    return run(["cmake", "-S", src, "-B", build, *options], **kwargs)  # type: ignore[arg-type]


def compile_plugin(source: str, include: Path, folder: Path, *flags: str) -> Path:
    """``source`` written to ``folder``/old.c and compiled by cc, with every warning an
    error (less those ``flags`` turn off), against the plugin.h in ``include``; the
    plugin, ``folder``/old.so."""
    (folder / "old.c").write_text(source)
    target = folder / "old.so"
    res = run(
        [
            "cc",
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            *flags,
            "-fPIC",
            "-shared",
            "-Wl,--no-undefined",
            f"-I{include}",
            folder / "old.c",
            "-o",
            target,
        ]
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return target
