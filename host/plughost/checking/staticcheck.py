"""The static verdict of ``plughost check``: can this file be loaded on that platform?

:func:`static_check` inspects a plugin file without running any of its code and lists
every problem it finds, each with a one-sentence message that says what is wrong and
what to do. An empty list means the file is compatible as far as a static look can tell.

Problem codes, in the order they are reported:

``empty``, ``not-elf``, ``truncated``, ``unreadable`` (the file cannot be inspected; the
only problem reported), ``elf-class``, ``byte-order``, ``arch``, ``not-shared-object``,
``os-abi``, ``libc-flavor``, ``glibc-too-new``, ``no-entry``, ``no-note``,
``note-mismatch``, ``abi-major``, ``abi-minor-newer``, ``entry-size``, ``entry-magic``,
``missing-library``, ``unresolved-symbol`` (the last two only when the target is this
host, and only when nothing above already says the file cannot load here).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..abi import ABI_MAJOR, ABI_MINOR, ENTRY_SYMBOL, HEADER_SIZE, PLUGIN_MAGIC, min_entry_size
from ..errors import printable
from .elfinspect import (
    ElfInfo,
    ElfInspectionError,
    find_missing_libraries,
    find_unresolved,
    inspect_elf,
)
from .targets import Platform, host_platform

__all__ = ["PROBLEM_CODES", "Problem", "StaticReport", "static_check"]

#: Every code :func:`static_check` can report, in report order.
PROBLEM_CODES: tuple[str, ...] = (
    "empty",
    "not-elf",
    "truncated",
    "unreadable",
    "elf-class",
    "byte-order",
    "arch",
    "not-shared-object",
    "os-abi",
    "libc-flavor",
    "glibc-too-new",
    "no-entry",
    "no-note",
    "note-mismatch",
    "abi-major",
    "abi-minor-newer",
    "entry-size",
    "entry-magic",
    "missing-library",
    "unresolved-symbol",
)

_LINUX_OSABIS = ("ELFOSABI_SYSV", "ELFOSABI_LINUX", "ELFOSABI_GNU")
_OSABI_NAMES = {
    "ELFOSABI_FREEBSD": "FreeBSD",
    "ELFOSABI_NETBSD": "NetBSD",
    "ELFOSABI_OPENBSD": "OpenBSD",
    "ELFOSABI_SOLARIS": "Solaris",
    "ELFOSABI_HPUX": "HP-UX",
    "ELFOSABI_ARM": "bare-metal ARM",
    "ELFOSABI_STANDALONE": "a standalone (embedded) system",
}
# Architectures that differ only in word size or byte order share a family.
_FAMILIES = {
    "x86_64": "x86",
    "i386": "x86",
    "aarch64": "arm",
    "arm": "arm",
    "ppc64": "ppc",
    "ppc64le": "ppc",
    "ppc": "ppc",
    "s390x": "s390",
    "s390": "s390",
    "riscv64": "riscv",
    "riscv32": "riscv",
}
_TARGET_ARCHES = ("x86_64", "aarch64")  # arches parse_target() knows
_LINK_SHARED = "link it with -shared (CMake: add_library(... MODULE))"
_USE_DEFINE = "define the entry with PH_PLUGIN_DEFINE from abi/plugin.h"
_MAX_SYMBOLS = 5


@dataclass
class Problem:
    """One reason a file cannot be loaded: a stable ``code`` and a one-sentence message.
    Names the message quotes from the file arrive escaped (plughost.errors.printable)."""

    code: str
    message: str

    def __post_init__(self) -> None:
        self.message = printable(self.message)


@dataclass
class StaticReport:
    """The static verdict on one file for one target platform."""

    path: str
    target: Platform
    info: ElfInfo | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    @property
    def codes(self) -> list[str]:
        """The problem codes, in report order."""
        return [p.code for p in self.problems]


def static_check(
    path: str | os.PathLike[str],
    target: Platform,
    host_abi: tuple[int, int] = (ABI_MAJOR, ABI_MINOR),
) -> StaticReport:
    """Check statically whether the plugin at ``path`` can be loaded on ``target``.

    No code from the file runs. ``host_abi`` is the ABI (major, minor) of the host that
    would load it. Returns a :class:`StaticReport` whose ``problems`` list is empty when
    the file is compatible. Unresolved symbols and missing libraries are looked for only
    when ``target`` is this host (``target == host_platform()``).
    """
    try:
        info = inspect_elf(path)
    except ElfInspectionError as exc:
        return StaticReport(str(path), target, None, [Problem(exc.code, exc.detail)])
    return StaticReport(str(path), target, info, _Checker(info, target, host_abi).run())


# ------------------------------------------------------------------------ helpers ---


def _version(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def _names(names: list[str] | tuple[str, ...], limit: int = _MAX_SYMBOLS) -> str:
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f" and {len(names) - limit} more"
    return shown


def _parse_abi(text: str | None) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)", text or "")
    return (int(match[1]), int(match[2])) if match else None


def _note_libc(note: dict[str, str] | None) -> tuple[str | None, str | None]:
    """(flavour, version text) from the note's libc= value, e.g. ("gnu", "2.36")."""
    value = (note or {}).get("libc", "")
    if value == "gnu" or value.startswith("gnu-"):
        return "gnu", value[4:] or None
    if value == "musl":
        return "musl", None
    return None, None


def _toolchain_hint(target: Platform) -> str:
    """ " (zig cc -target ...)" naming a cross compiler for target, or "" for x86_64 glibc."""
    if target.libc == "musl":
        return f" (musl-gcc, or zig cc -target {target.arch}-linux-musl)"
    if target.arch == "aarch64":
        return " (aarch64-linux-gnu-gcc)"
    return ""


def _them(count: int) -> str:
    return "it" if count == 1 else "them"


class _Checker:
    """Runs the checks for one file and target, in report order."""

    def __init__(self, info: ElfInfo, target: Platform, host_abi: tuple[int, int]) -> None:
        self.info = info
        self.target = target
        self.host_abi = host_abi
        self.is_host = target == host_platform()
        self.where = "this host" if self.is_host else f"the target {target.name}"
        self.problems: list[Problem] = []
        note_flavor, note_libc_version = _note_libc(info.note)
        self.note_libc = note_flavor
        self.note_libc_version = note_libc_version
        self.libc = info.libc or note_flavor  # the ELF file wins, the note fills gaps
        header = info.entry_header if info.has_entry else None
        self.entry = header if header is not None and header.magic == PLUGIN_MAGIC else None
        self.note_abi = _parse_abi(info.note.get("abi")) if info.note is not None else None

    def add(self, code: str, message: str) -> None:
        self.problems.append(Problem(code, message))

    def codes(self) -> set[str]:
        return {p.code for p in self.problems}

    def run(self) -> list[Problem]:
        self.check_platform()
        if self.info.elf_type == "core":
            return self.problems  # nothing else about a core dump is meaningful
        self.check_os_abi()
        self.check_libc()
        self.check_entry_and_note()
        self.check_abi()
        self.check_entry_header()
        self.check_host_symbols()
        return self.problems

    # --- platform ---------------------------------------------------------------------

    def check_platform(self) -> None:
        info, target = self.info, self.target
        if info.elf_class != target.bits:
            self.add(
                "elf-class",
                f"a {info.elf_class}-bit ELF file ({info.machine}), {self.where} is"
                f" {target.bits}-bit ({target.arch}): rebuild it as a {target.bits}-bit"
                f" plugin with the {target.arch} toolchain (no -m32 or 32-bit -target)",
            )
        if info.byte_order != target.endian:
            self.add(
                "byte-order",
                f"a {info.byte_order}-endian ELF file ({info.machine}), {self.where} is"
                f" {target.endian}-endian ({target.arch}): rebuild it with the"
                f" {target.arch} toolchain",
            )
        if info.machine != target.arch:
            same_family = _FAMILIES.get(info.machine, info.machine) == _FAMILIES.get(
                target.arch, target.arch
            )
            explained = {"elf-class", "byte-order"} & self.codes()
            if not (same_family and explained):
                self.add(
                    "arch",
                    f"built for {info.machine}, {self.where} is {target.arch}: rebuild on an"
                    f" {target.arch} machine or with the {target.arch} toolchain"
                    f"{_toolchain_hint(target)}",
                )
        if info.elf_type != "shared-object":
            what = {
                "executable": "an executable program, not a shared object",
                "pie-executable": "a position-independent executable (a program with a"
                " main and a program interpreter), not a shared object",
                "relocatable": "an object file (.o), not a shared object",
                "core": "a core dump, not a shared object",
            }.get(info.elf_type, f"an ELF file of type {info.elf_type}, not a shared object")
            advice = (
                "point plughost at the plugin's .so file"
                if info.elf_type == "core"
                else _LINK_SHARED
            )
            self.add("not-shared-object", f"{what}: {advice}")

    def check_os_abi(self) -> None:
        osabi = self.info.osabi
        if osabi in _LINUX_OSABIS:
            return
        system = _OSABI_NAMES.get(osabi, f"another operating system ({osabi})")
        self.add(
            "os-abi",
            f"built for {system}, {self.where} runs Linux: rebuild it with a Linux toolchain",
        )

    def check_libc(self) -> None:
        info, target = self.info, self.target
        if self.libc is not None and self.libc != target.libc:
            linked = "linked against" if info.libc is not None else "built against"
            if self.libc == "musl":
                alt = ""
                if info.machine in _TARGET_ARCHES:
                    alt = f", or check with --target linux-{info.machine}-musl for the Alpine image"
                toolchain = "this host's toolchain" if self.is_host else "a glibc toolchain"
                self.add(
                    "libc-flavor",
                    f"{linked} musl, {self.where} uses {target.libc_label}: build it with"
                    f" {toolchain}{alt}",
                )
            else:
                version = info.glibc_required_label or self.note_libc_version
                glibc = f"glibc {version}" if version and info.libc is None else "glibc"
                image = " (the Alpine image)" if target.arch in _TARGET_ARCHES else ""
                self.add(
                    "libc-flavor",
                    f"{linked} {glibc}, {self.where}{image} uses musl: build it with"
                    f" musl-gcc or zig cc -target {target.arch}-linux-musl, or on Alpine",
                )
        if (
            self.libc == "gnu"
            and target.libc == "gnu"
            and target.libc_version is not None
            and info.glibc_required is not None
            and info.glibc_required > target.libc_version
        ):
            need = _version(info.glibc_required)
            have = _version(target.libc_version)
            symbols = _names(list(info.glibc_symbols_needing), 3)
            has = "this host has" if self.is_host else f"the target {target.name} has glibc"
            self.add(
                "glibc-too-new",
                f"needs glibc {need} (GLIBC_{need} symbols: {symbols}), {has} {have}: build it"
                f" on a system with glibc <= {have} or with zig cc -target"
                f" {info.machine}-linux-gnu.{have}",
            )

    # --- entry and note ---------------------------------------------------------------

    def check_entry_and_note(self) -> None:
        info = self.info
        if not info.has_entry:
            if info.entry_symbol_size is not None:
                detail = f"{ENTRY_SYMBOL} is not an exported data object"
            elif info.note is not None:
                detail = f"it has a .note.plughost but does not export {ENTRY_SYMBOL}"
            else:
                detail = f"no exported {ENTRY_SYMBOL}"
            self.add(
                "no-entry",
                f"no plughost entry ({detail}): define one with PH_PLUGIN_DEFINE from abi/plugin.h",
            )
        elif info.note is None:
            self.add(
                "no-note",
                "has a plughost entry but no .note.plughost, so its ABI and platform cannot"
                f" be checked without loading it: {_USE_DEFINE}, not by hand",
            )
        if info.note is not None:
            self.check_note()

    def check_note(self) -> None:
        info, note = self.info, self.info.note or {}
        diffs: list[str] = []
        if self.note_abi is None:
            diffs.append(f"it has no valid abi=MAJOR.MINOR (it reads {info.note_text!r})")
        elif self.entry is not None:
            entry_abi = (self.entry.abi_major, self.entry.abi_minor)
            if entry_abi != self.note_abi:
                diffs.append(
                    f"the note says abi={_version(self.note_abi)} but the entry header says"
                    f" {_version(entry_abi)}"
                )
        facts = (
            ("arch", info.machine, "the ELF header"),
            ("bits", str(info.elf_class), "the ELF header"),
            ("endian", info.byte_order, "the ELF header"),
        )
        for key, actual, source in facts:
            if key in note and note[key] != actual:
                diffs.append(f"the note says {key}={note[key]} but {source} says {actual}")
        if self.note_libc is not None and info.libc is not None and self.note_libc != info.libc:
            diffs.append(
                f"the note says libc={note['libc']} but the file links"
                f" {'glibc' if info.libc == 'gnu' else 'musl'}"
            )
        if diffs:
            self.add(
                "note-mismatch",
                f"its .note.plughost disagrees with the file ({'; '.join(diffs)}): rebuild it"
                " with PH_PLUGIN_DEFINE from an unmodified abi/plugin.h",
            )

    # --- ABI version ------------------------------------------------------------------

    def check_abi(self) -> None:
        claims: list[tuple[int, int]] = []
        entry_abi = (self.entry.abi_major, self.entry.abi_minor) if self.entry else None
        for abi in (self.note_abi, entry_abi):
            if abi is not None and abi not in claims:
                claims.append(abi)
        host = self.host_abi
        for abi in claims:
            if abi[0] != host[0]:
                upgrade = (
                    f" or upgrade plughost to one that implements ABI {abi[0]}.x"
                    if abi[0] > host[0]
                    else ""
                )
                self.add(
                    "abi-major",
                    f"built for ABI {_version(abi)}, this plughost implements {_version(host)}:"
                    f" rebuild it against this plughost's abi/plugin.h (ABI {host[0]}.x){upgrade}",
                )
                break
        for abi in claims:
            if abi[0] == host[0] and abi[1] > host[1]:
                self.add(
                    "abi-minor-newer",
                    f"built for ABI {_version(abi)}, this plughost implements {_version(host)}:"
                    f" upgrade plughost or rebuild against the {_version(host)} header",
                )
                break

    def check_entry_header(self) -> None:
        info = self.info
        if not info.has_entry:
            return
        header = info.entry_header
        symbol_size = info.entry_symbol_size or 0
        if header is None:
            if symbol_size < HEADER_SIZE:
                self.add(
                    "entry-size",
                    f"its {ENTRY_SYMBOL} is only {symbol_size} bytes, smaller than the"
                    f" {HEADER_SIZE}-byte ph_plugin_header: {_USE_DEFINE}",
                )
            else:
                self.add(
                    "entry-magic",
                    f"its {ENTRY_SYMBOL} has no initialised header in the file (it is in"
                    f" .bss): {_USE_DEFINE}",
                )
            return
        if header.magic == PLUGIN_MAGIC:
            minimum = min_entry_size(info.elf_class) if info.elf_class in (32, 64) else 0
            if header.size < minimum:
                self.add(
                    "entry-size",
                    f"its entry header says the entry is {header.size} bytes but a"
                    f" {info.elf_class}-bit ABI {self.host_abi[0]}.x entry has at least"
                    f" {minimum}: {_USE_DEFINE}, which sets the size, instead of by hand",
                )
            elif symbol_size and symbol_size < header.size:
                self.add(
                    "entry-size",
                    f"its entry header says the entry is {header.size} bytes but the"
                    f" {ENTRY_SYMBOL} symbol is only {symbol_size}: {_USE_DEFINE}",
                )
        else:
            self.add(
                "entry-magic",
                f"its entry header starts with 0x{header.magic:08X} instead of the plughost"
                f' magic 0x{PLUGIN_MAGIC:08X} ("PLGH"): {_USE_DEFINE}',
            )

    # --- host symbols -----------------------------------------------------------------

    def check_host_symbols(self) -> None:
        """Missing libraries and unresolved symbols, only on this host and only when
        nothing above already prevents loading it here."""
        blocking = {"elf-class", "byte-order", "arch", "os-abi", "libc-flavor"}
        if not self.is_host or blocking & self.codes():
            return
        info = self.info
        missing = find_missing_libraries(info)
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            self.add(
                "missing-library",
                f"needs {_names(missing)}, which {verb} not installed on this host: install"
                f" the package that provides {_them(len(missing))} or link"
                f" {_them(len(missing))} statically",
            )
            return  # its symbols would all be reported as unresolved
        unresolved = find_unresolved(info)
        if "glibc-too-new" in self.codes() and self.target.libc_version is not None:
            unresolved = [s for s in unresolved if not self._needs_newer_glibc(s)]
        if unresolved:
            count = len(unresolved)
            self.add(
                "unresolved-symbol",
                f"uses {count} symbol{'s' if count != 1 else ''} that no library it links"
                f" defines ({_names(unresolved)}): link the library that defines"
                f" {_them(count)} or remove the calls",
            )

    def _needs_newer_glibc(self, symbol: str) -> bool:
        _name, _sep, version = symbol.partition("@")
        match = re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)*", version)
        if match is None or self.target.libc_version is None:
            return False
        return (int(match[1]), int(match[2])) > self.target.libc_version
