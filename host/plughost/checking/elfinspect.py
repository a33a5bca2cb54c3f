"""Static inspection of a plugin file: what an ELF file is, without ever running it.

:func:`inspect_elf` reads a file with pyelftools (never ``dlopen``) and returns the facts
``plughost check`` judges: word size, byte order, machine, file type, C library, newest
glibc symbol version needed, the plughost note and entry header, and the undefined
dynamic symbols. :func:`find_unresolved` and :func:`find_missing_libraries` look the
file's ``DT_NEEDED`` libraries up on this host, again without loading anything.
"""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

from elftools.elf.elffile import ELFFile

from ..abi import ENTRY_SYMBOL, HEADER_SIZE, NOTE_OWNER, NOTE_SECTION, NOTE_TYPE
from .targets import host_platform

__all__ = [
    "ElfInfo",
    "ElfInspectionError",
    "EntryHeader",
    "find_missing_libraries",
    "find_unresolved",
    "inspect_elf",
]

_ELF_MAGIC = b"\x7fELF"
_SHT_NULL = 0
_SHT_NOBITS = 8
_DF_1_PIE = 0x08000000
_GLIBC_VERSION_RE = re.compile(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)*")

# e_machine (pyelftools spelling) -> the arch names of plugin notes. Some depend on the
# word size or byte order; those are resolved in _machine_name().
_MACHINES = {
    "EM_X86_64": "x86_64",
    "EM_AARCH64": "aarch64",
    "EM_386": "i386",
    "EM_ARM": "arm",
    "EM_MIPS": "mips",
    "EM_LOONGARCH": "loongarch64",
    "EM_SPARCV9": "sparc64",
}

_ELF_TYPES = {
    "ET_DYN": "shared-object",
    "ET_EXEC": "executable",
    "ET_REL": "relocatable",
    "ET_CORE": "core",
}


class ElfInspectionError(Exception):
    """A file that cannot be inspected as an ELF file.

    ``code`` is one of ``empty``, ``not-elf``, ``truncated``, ``unreadable``; the
    message is one sentence that names the file. ``detail`` is the same sentence
    without the file name ("the file is empty ..."), for reports that already show it.
    """

    def __init__(self, message: str, code: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.detail = detail if detail is not None else message


def _error(path: Path, code: str, rest: str) -> ElfInspectionError:
    """An error whose message is ``"<path> <rest>"``, e.g. rest = "is empty ..."."""
    return ElfInspectionError(f"{path} {rest}", code, f"the file {rest}")


@dataclass(frozen=True)
class EntryHeader:
    """The ``ph_plugin_header`` at the start of the entry, as stored in the file."""

    magic: int
    abi_major: int
    abi_minor: int
    size: int
    reserved: int


@dataclass(frozen=True)
class ElfInfo:
    """What :func:`inspect_elf` found out about one file (see the module docstring)."""

    path: str
    size: int
    elf_class: int  # 32 or 64
    byte_order: str  # "little" or "big"
    machine: str  # x86_64, aarch64, i386, arm, riscv64, ppc64, ppc64le, s390x, ... or EM_*
    elf_type: str  # shared-object, executable, pie-executable, relocatable, core, or ET_*
    osabi: str  # raw EI_OSABI, e.g. ELFOSABI_SYSV
    interpreter: str | None
    needed: tuple[str, ...]
    soname: str | None
    libc: str | None  # "gnu", "musl" or None (no C library found)
    glibc_required: tuple[int, int] | None
    glibc_symbols_needing: tuple[str, ...]
    note: dict[str, str] | None
    has_entry: bool
    entry_header: EntryHeader | None
    entry_symbol_size: int | None
    undefined: tuple[str, ...]  # "name" or "name@VERSION"
    note_text: str | None = None  # the note's text as written, for messages
    runpath: tuple[str, ...] = field(default=())  # DT_RUNPATH, else DT_RPATH, split on ':'
    runpath_is_rpath: bool = False  # True when runpath came from DT_RPATH

    @property
    def glibc_required_label(self) -> str | None:
        """``"2.38"`` for ``glibc_required == (2, 38)``, else None."""
        if self.glibc_required is None:
            return None
        return f"{self.glibc_required[0]}.{self.glibc_required[1]}"


# --------------------------------------------------------------------- raw layout ---


@dataclass(frozen=True)
class _RawHeader:
    bits: int
    endian: str  # struct prefix: "<" or ">"
    phoff: int
    phentsize: int
    phnum: int
    shoff: int
    shentsize: int
    shnum: int


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise _error(
            path, "unreadable", "is a directory, not a plugin file: name the plugin's .so file"
        ) from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise _error(
            path, "unreadable", f"cannot be read ({reason}): check the path and its permissions"
        ) from None


def _truncated(path: Path, what: str, end: int, size: int) -> ElfInspectionError:
    return _error(
        path,
        "truncated",
        f"is truncated (its {what} end at byte {end} but the file has only {size} bytes):"
        " copy or build it again",
    )


def _raw_header(path: Path, data: bytes) -> _RawHeader:
    """Checks the identification bytes and reads the ELF header with struct."""
    size = len(data)
    if size == 0:
        raise _error(
            path, "empty", "is empty (0 bytes): build the plugin again or copy the real .so"
        )
    if data[: min(size, 4)] != _ELF_MAGIC[: min(size, 4)] or size < 4:
        raise _error(
            path,
            "not-elf",
            f"is not an ELF file ({_describe_non_elf(data)}): point plughost at a compiled"
            " plugin .so, not at a source, script or archive",
        )
    if size < 16:
        raise _truncated(path, "ELF identification bytes", 16, size)
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise _error(
            path,
            "not-elf",
            f"starts like an ELF file but its class byte ({ei_class}) or data byte"
            f" ({ei_data}) is invalid, so it is corrupt: build it again",
        )
    bits = 32 if ei_class == 1 else 64
    endian = "<" if ei_data == 1 else ">"
    ehsize = 52 if bits == 32 else 64
    if size < ehsize:
        raise _truncated(path, "ELF header would", ehsize, size)
    word = "I" if bits == 32 else "Q"
    fmt = f"{endian}16xHHI{word}{word}{word}IHHHHHH"
    (
        _type,
        _mach,
        _ver,
        _entry,
        phoff,
        shoff,
        _flags,
        _ehsize,
        phentsize,
        phnum,
        shentsize,
        shnum,
        _shstrndx,
    ) = struct.unpack_from(fmt, data, 0)
    return _RawHeader(bits, endian, phoff, phentsize, phnum, shoff, shentsize, shnum)


def _describe_non_elf(data: bytes) -> str:
    head = data[:512]
    if head.startswith(b"!<arch>"):
        return "a static library archive, link it into a shared object with -shared"
    if head.startswith(b"#!"):
        return "a script"
    if head.startswith((b"\xfe\xed\xfa", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe")):
        return "a Mach-O file, built for macOS"
    if head.startswith(b"MZ"):
        return "a Windows PE file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data without the ELF magic bytes"
    return "a text file"


def _check_layout(path: Path, data: bytes, hdr: _RawHeader) -> None:
    """Raises ``truncated`` when a header or section lies beyond the end of the file."""
    size = len(data)
    e = hdr.endian
    if hdr.bits == 32:
        sh_fmt, sh_min = f"{e}IIIIII", 40  # name type flags addr offset size
        ph_fmt, ph_min = f"{e}IIIII", 32  # type offset vaddr paddr filesz
    else:
        sh_fmt, sh_min = f"{e}IIQQQQ", 64
        ph_fmt, ph_min = f"{e}IIQQQQ", 56  # type flags offset vaddr paddr filesz

    if hdr.phnum:
        if hdr.phentsize < ph_min:
            raise _error(
                path,
                "unreadable",
                f"has a corrupt ELF header (program header size {hdr.phentsize}): build it again",
            )
        end = hdr.phoff + hdr.phnum * hdr.phentsize
        if end > size:
            raise _truncated(path, "program headers", end, size)
        for i in range(hdr.phnum):
            fields = struct.unpack_from(ph_fmt, data, hdr.phoff + i * hdr.phentsize)
            if hdr.bits == 32:
                p_offset, p_filesz = fields[1], fields[4]
            else:
                p_offset, p_filesz = fields[2], fields[5]
            if p_filesz and p_offset + p_filesz > size:
                raise _truncated(path, "loadable segments", p_offset + p_filesz, size)

    if hdr.shoff == 0:
        return
    if hdr.shentsize < sh_min:
        raise _error(
            path,
            "unreadable",
            f"has a corrupt ELF header (section header size {hdr.shentsize}): build it again",
        )
    if hdr.shoff + hdr.shentsize > size:
        raise _truncated(path, "section headers", hdr.shoff + hdr.shentsize, size)
    shnum = hdr.shnum
    if shnum == 0:  # extended numbering: the count is section 0's sh_size
        shnum = struct.unpack_from(sh_fmt, data, hdr.shoff)[5]
    end = hdr.shoff + shnum * hdr.shentsize
    if end > size:
        raise _truncated(path, "section headers", end, size)
    for i in range(shnum):
        _name, sh_type, _flags, _addr, sh_offset, sh_size = struct.unpack_from(
            sh_fmt, data, hdr.shoff + i * hdr.shentsize
        )
        if sh_type in (_SHT_NULL, _SHT_NOBITS) or sh_size == 0:
            continue
        if sh_offset + sh_size > size:
            raise _truncated(path, "sections", sh_offset + sh_size, size)


# --------------------------------------------------------------- pyelftools facts ---


def _machine_name(machine: str, bits: int, little: bool) -> str:
    if machine in _MACHINES:
        return _MACHINES[machine]
    if machine == "EM_RISCV":
        return "riscv64" if bits == 64 else "riscv32"
    if machine == "EM_PPC64":
        return "ppc64le" if little else "ppc64"
    if machine == "EM_PPC":
        return "ppc"
    if machine == "EM_S390":
        return "s390x" if bits == 64 else "s390"
    return str(machine)


def _dynamic_tags(elf: ELFFile) -> list:
    section = elf.get_section_by_name(".dynamic")
    if section is None:
        for sec in elf.iter_sections():
            if sec["sh_type"] == "SHT_DYNAMIC":
                section = sec
                break
    if section is None:
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_DYNAMIC":
                section = seg
                break
    if section is None:
        return []
    return [tag for tag in section.iter_tags() if tag.entry.d_tag != "DT_NULL"]


def _dynsym(elf: ELFFile):
    for sec in elf.iter_sections():
        if sec["sh_type"] == "SHT_DYNSYM":
            return sec
    return None


#: Elf32/Elf64 Verneed and Vernaux entries alike are 16 bytes.
_VERNEED_ENTRY = 16


def _version_names(elf: ELFFile, data: bytes) -> dict[int, str]:
    """Version index -> version name, for the versions the file needs.

    Walked here rather than with pyelftools' iterator, and bounded by the section's size:
    a forged entry count or a ``vn_next`` leading back to an entry already read ends the
    walk instead of looping (a 4-byte edit of ``sh_info`` once kept the checker busy for
    2**31 rounds)."""
    names: dict[int, str] = {}
    order = "<" if elf.little_endian else ">"
    for sec in elf.iter_sections():
        if sec["sh_type"] != "SHT_GNU_verneed":
            continue
        strings = elf.get_section(sec["sh_link"])
        start, size = sec["sh_offset"], sec["sh_size"]
        blob = data[start : start + size]
        budget = len(blob) // _VERNEED_ENTRY  # entries of either kind the section can hold
        seen: set[int] = set()
        offset = 0
        for _ in range(min(sec["sh_info"], budget)):
            if offset in seen or offset + _VERNEED_ENTRY > len(blob):
                break
            seen.add(offset)
            _version, count, _file, aux, following = struct.unpack_from(
                order + "HHIII", blob, offset
            )
            at = offset + aux
            for _ in range(min(count, budget)):
                if at in seen or at + _VERNEED_ENTRY > len(blob):
                    break
                seen.add(at)
                _hash, _flags, other, name, next_aux = struct.unpack_from(order + "IHHII", blob, at)
                names[other & 0x7FFF] = strings.get_string(name)
                if next_aux == 0:
                    break
                at += next_aux
            if following == 0:
                break
            offset += following
    return names


def _versym_indexes(elf: ELFFile, count: int) -> list[int]:
    for sec in elf.iter_sections():
        if sec["sh_type"] == "SHT_GNU_versym":
            out = []
            for i in range(min(count, sec.num_symbols())):
                ndx = sec.get_symbol(i)["ndx"]
                out.append(ndx & 0x7FFF if isinstance(ndx, int) else 0)
            return out + [0] * (count - len(out))
    return [0] * count


def _glibc_version(name: str) -> tuple[int, int] | None:
    match = _GLIBC_VERSION_RE.fullmatch(name)
    return (int(match[1]), int(match[2])) if match else None


def _libc_flavor(needed: Iterable[str], interpreter: str | None) -> str | None:
    names = list(needed)
    if interpreter:
        names.append(os.path.basename(interpreter))
    for name in names:
        if name == "libc.so.6" or name.startswith("ld-linux"):
            return "gnu"
        if name == "libc.so" or name.startswith(("libc.musl-", "ld-musl-")):
            return "musl"
    return None


def _parse_note(elf: ELFFile, data: bytes, order: str) -> str | None:
    """The text of the plughost note in NOTE_SECTION, or None if there is none."""
    section = elf.get_section_by_name(NOTE_SECTION)
    if section is None or section["sh_type"] == "SHT_NOBITS":
        return None
    start, end = section["sh_offset"], section["sh_offset"] + section["sh_size"]
    blob = data[start:end]
    pos = 0
    owner = NOTE_OWNER.encode()
    while pos + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from(f"{order}III", blob, pos)
        pos += 12
        name = blob[pos : pos + namesz].rstrip(b"\0")
        pos += (namesz + 3) & ~3
        desc = blob[pos : pos + descsz]
        pos += (descsz + 3) & ~3
        if name == owner and ntype == NOTE_TYPE:
            return desc.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return None


def _note_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if sep:
            fields[key] = value
    return fields


def _find_entry(elf: ELFFile, dynsym, relocatable: bool):
    tables = [dynsym] if dynsym is not None else []
    if relocatable:
        symtab = elf.get_section_by_name(".symtab")
        if symtab is not None:
            tables.append(symtab)
    for table in tables:
        for sym in table.get_symbol_by_name(ENTRY_SYMBOL) or ():
            if sym["st_shndx"] != "SHN_UNDEF":
                return sym
    return None


def _read_entry_header(
    elf: ELFFile, data: bytes, sym, order: str, relocatable: bool
) -> EntryHeader | None:
    shndx = sym["st_shndx"]
    if not isinstance(shndx, int):
        return None
    section = elf.get_section(shndx)
    if section["sh_type"] == "SHT_NOBITS":
        return None
    rel = sym["st_value"] if relocatable else sym["st_value"] - section["sh_addr"]
    if rel < 0 or rel + HEADER_SIZE > section["sh_size"]:
        return None
    offset = section["sh_offset"] + rel
    if offset + HEADER_SIZE > len(data):
        return None
    return EntryHeader(*struct.unpack_from(f"{order}IHHII", data, offset))


def _split_path_list(value: str, origin: str) -> tuple[str, ...]:
    out = []
    for item in value.split(":"):
        if item:
            out.append(item.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
    return tuple(out)


def inspect_elf(path: str | os.PathLike[str]) -> ElfInfo:
    """Inspect ``path`` statically and return an :class:`ElfInfo`.

    Nothing in the file is executed or loaded. Raises :class:`ElfInspectionError`
    (code ``empty``, ``not-elf``, ``truncated`` or ``unreadable``) when the file is not
    a complete, parseable ELF file.
    """
    p = Path(path)
    data = _read_bytes(p)
    hdr = _raw_header(p, data)
    _check_layout(p, data, hdr)
    try:
        return _inspect(p, data, hdr)
    except ElfInspectionError:
        raise
    except Exception as exc:  # pyelftools raises many kinds on corrupt input
        raise _error(
            p,
            "unreadable",
            f"is a corrupt ELF file that cannot be parsed ({type(exc).__name__}: {exc}):"
            " build it again",
        ) from exc


def _inspect(p: Path, data: bytes, hdr: _RawHeader) -> ElfInfo:
    elf = ELFFile(io.BytesIO(data))
    little = elf.little_endian
    order = "<" if little else ">"
    header = elf.header
    elf_type = _ELF_TYPES.get(header["e_type"], str(header["e_type"]))
    relocatable = elf_type == "relocatable"

    interpreter = None
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_INTERP":
            interpreter = seg.get_interp_name()
            break

    needed: list[str] = []
    soname = None
    runpath: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    flags_1 = 0
    origin = str(p.resolve().parent)
    for tag in _dynamic_tags(elf):
        kind = tag.entry.d_tag
        if kind == "DT_NEEDED":
            needed.append(tag.needed)
        elif kind == "DT_SONAME":
            soname = tag.soname
        elif kind == "DT_RUNPATH":
            runpath = _split_path_list(tag.runpath, origin)
        elif kind == "DT_RPATH":
            rpath = _split_path_list(tag.rpath, origin)
        elif kind == "DT_FLAGS_1":
            flags_1 = int(tag.entry.d_val)
    if elf_type == "shared-object" and (
        flags_1 & _DF_1_PIE or (interpreter is not None and soname is None)
    ):
        elf_type = "pie-executable"

    dynsym = _dynsym(elf)
    version_names = _version_names(elf, data)
    undefined: list[str] = []
    versioned: dict[str, list[str]] = {}  # version name -> symbols needing it
    if dynsym is not None:
        count = dynsym.num_symbols()
        indexes = _versym_indexes(elf, count)
        for i in range(1, count):
            sym = dynsym.get_symbol(i)
            if sym["st_shndx"] != "SHN_UNDEF" or not sym.name:
                continue
            version = version_names.get(indexes[i]) if indexes[i] >= 2 else None
            if version is not None:
                versioned.setdefault(version, []).append(sym.name)
            if sym["st_info"]["bind"] == "STB_WEAK":
                continue
            if sym["st_info"]["type"] in ("STT_SECTION", "STT_FILE"):
                continue
            undefined.append(f"{sym.name}@{version}" if version else sym.name)

    glibc_required = None
    glibc_names: list[str] = []
    for version, names in versioned.items():
        parsed = _glibc_version(version)
        if parsed is None:
            continue
        if glibc_required is None or parsed > glibc_required:
            glibc_required, glibc_names = parsed, list(names)
        elif parsed == glibc_required:
            glibc_names.extend(names)
    if glibc_required is None:  # versions needed without versioned undefined symbols
        for name in version_names.values():
            parsed = _glibc_version(name)
            if parsed is not None and (glibc_required is None or parsed > glibc_required):
                glibc_required = parsed

    libc = _libc_flavor(needed, interpreter)
    if libc is None and glibc_required is not None:
        libc = "gnu"

    note_text = _parse_note(elf, data, order)
    entry = _find_entry(elf, dynsym, relocatable)
    has_entry = entry is not None and entry["st_info"]["type"] == "STT_OBJECT"
    entry_header = (
        _read_entry_header(elf, data, entry, order, relocatable) if entry is not None else None
    )

    return ElfInfo(
        path=str(p),
        size=len(data),
        elf_class=hdr.bits,
        byte_order="little" if little else "big",
        machine=_machine_name(header["e_machine"], hdr.bits, little),
        elf_type=elf_type,
        osabi=str(header["e_ident"]["EI_OSABI"]),
        interpreter=interpreter,
        needed=tuple(needed),
        soname=soname,
        libc=libc,
        glibc_required=glibc_required,
        glibc_symbols_needing=tuple(sorted(set(glibc_names))),
        note=_note_fields(note_text) if note_text is not None else None,
        has_entry=has_entry,
        entry_header=entry_header,
        entry_symbol_size=int(entry["st_size"]) if entry is not None else None,
        undefined=tuple(undefined),
        note_text=note_text,
        runpath=runpath or rpath,
        runpath_is_rpath=not runpath and bool(rpath),
    )


#: Relocation types that store "load base + addend" (how a PIC plugin's entry points at its
#: name and version strings), per machine.
_RELATIVE_RELOCATIONS = {
    "EM_X86_64": 8,
    "EM_AARCH64": 1027,
    "EM_386": 8,
    "EM_ARM": 23,
    "EM_RISCV": 3,
    "EM_PPC64": 22,
    "EM_S390": 12,
}
_MAX_IDENTITY = 128  # longest name or version string read


@dataclass(frozen=True)
class PluginIdentity:
    """The ``name`` and ``version`` strings of a plugin's entry, read from the file."""

    name: str | None
    version: str | None


def read_plugin_identity(path: str | os.PathLike[str]) -> PluginIdentity:
    """The plugin's own name and version (``ph_plugin.name``/``.version``) without loading it.

    The entry's two pointers are found through the relative relocations that fill them in
    (or their in-place addends); anything unreadable gives None for that string.
    """
    p = Path(path)
    try:
        data = _read_bytes(p)
        hdr = _raw_header(p, data)
        _check_layout(p, data, hdr)
        elf = ELFFile(io.BytesIO(data))
        entry = _find_entry(elf, _dynsym(elf), relocatable=False)
        if entry is None or elf.header["e_type"] != "ET_DYN":
            return PluginIdentity(None, None)
        word = hdr.bits // 8
        order = "<" if elf.little_endian else ">"
        base = entry["st_value"] + HEADER_SIZE
        slots = {base: None, base + word: None}
        kind = _RELATIVE_RELOCATIONS.get(elf.header["e_machine"])
        for section in elf.iter_sections():
            if section["sh_type"] != "SHT_RELA":
                continue
            for reloc in section.iter_relocations():
                if reloc["r_offset"] in slots and reloc["r_info_type"] == kind:
                    slots[reloc["r_offset"]] = reloc["r_addend"]
        strings = []
        for slot, addend in slots.items():
            if addend is None:  # REL or RELR: the addend is stored in the slot itself
                at = _file_offset(elf, slot)
                addend = (
                    struct.unpack_from(order + ("Q" if word == 8 else "I"), data, at)[0]
                    if at is not None and at + word <= len(data)
                    else 0
                )
            strings.append(_c_string(elf, data, addend) if addend else None)
        return PluginIdentity(*strings)
    except Exception:  # noqa: BLE001 - a file pyelftools cannot walk has no readable identity
        return PluginIdentity(None, None)


def _file_offset(elf: ELFFile, vaddr: int) -> int | None:
    for seg in elf.iter_segments():
        if (
            seg["p_type"] == "PT_LOAD"
            and seg["p_vaddr"] <= vaddr < seg["p_vaddr"] + seg["p_filesz"]
        ):
            return seg["p_offset"] + vaddr - seg["p_vaddr"]
    return None


def _c_string(elf: ELFFile, data: bytes, vaddr: int) -> str | None:
    at = _file_offset(elf, vaddr)
    if at is None:
        return None
    raw = data[at : at + _MAX_IDENTITY + 1]
    end = raw.find(b"\0")
    if end < 0:
        return None
    text = raw[:end].decode("ascii", "replace")
    return text if text.isprintable() else None


# ------------------------------------------------------- host library resolution ---


@dataclass(frozen=True)
class _Library:
    path: str
    elf_class: int
    machine: str
    defined: frozenset[str]
    needed: tuple[str, ...]


def _multiarch_dirs() -> tuple[str, ...]:
    arch = host_platform().arch
    triplet = {"arm": "arm-linux-gnueabihf"}.get(arch, f"{arch}-linux-gnu")
    return (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib64", "/usr/lib64", "/usr/lib", "/lib")


@lru_cache(maxsize=1)
def _ldconfig_cache() -> tuple[tuple[str, str], ...]:
    """(soname, path) pairs from ``ldconfig -p``; empty when ldconfig is unavailable."""
    for exe in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            out = subprocess.run(
                [exe, "-p"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        pairs = []
        for line in out.splitlines():
            name, sep, target = line.strip().partition(" => ")
            if sep:
                pairs.append((name.split(" (", 1)[0], target.strip()))
        return tuple(pairs)
    return ()


@lru_cache(maxsize=512)
def _load_library(path: str, mtime_ns: int, size: int) -> _Library | None:
    """Parses a library's exported dynamic symbols; None if it is no usable ELF file."""
    del mtime_ns, size  # part of the cache key only
    try:
        with open(path, "rb") as stream:
            elf = ELFFile(stream)
            dynsym = _dynsym(elf)
            defined = set()
            if dynsym is not None:
                for sym in dynsym.iter_symbols():
                    if sym.name and sym["st_shndx"] != "SHN_UNDEF":
                        if sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK", "STB_GNU_UNIQUE"):
                            defined.add(sym.name)
            needed = tuple(t.needed for t in _dynamic_tags(elf) if t.entry.d_tag == "DT_NEEDED")
            bits = elf.elfclass
            machine = _machine_name(elf.header["e_machine"], bits, elf.little_endian)
    except Exception:  # not an ELF file (linker scripts), unreadable, corrupt
        return None
    return _Library(path, bits, machine, frozenset(defined), needed)


def _library(path: str) -> _Library | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _load_library(os.path.realpath(path), st.st_mtime_ns, st.st_size)


def _candidates(name: str, dirs: Iterable[str], use_ldconfig: bool) -> Iterator[str]:
    if "/" in name:
        yield name
        return
    for directory in dirs:
        yield os.path.join(directory, name)
    if use_ldconfig:
        for soname, target in _ldconfig_cache():
            if soname == name:
                yield target


def _resolve(
    name: str, bits: int, machine: str, dirs: tuple[str, ...], use_ldconfig: bool
) -> _Library | None:
    for candidate in _candidates(name, dirs, use_ldconfig):
        if not os.path.isfile(candidate):
            continue
        lib = _library(candidate)
        if lib is not None and lib.elf_class == bits and lib.machine == machine:
            return lib
    return None


def _search_dirs(info: ElfInfo, search_dirs: Iterable[str] | None) -> tuple[tuple[str, ...], bool]:
    env = tuple(d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d)
    if info.runpath_is_rpath:
        head = info.runpath + env
    else:
        head = env + info.runpath
    if search_dirs is not None:
        return head + tuple(search_dirs), False
    return head + _multiarch_dirs(), True


def _needed_closure(
    info: ElfInfo, search_dirs: Iterable[str] | None
) -> tuple[list[_Library], list[str]]:
    """The DT_NEEDED libraries found (and their own needs, one level), and those missing."""
    dirs, use_ldconfig = _search_dirs(info, search_dirs)
    found: dict[str, _Library] = {}
    missing: list[str] = []
    for name in info.needed:
        lib = _resolve(name, info.elf_class, info.machine, dirs, use_ldconfig)
        if lib is None:
            missing.append(name)
            continue
        found.setdefault(lib.path, lib)
        for sub in lib.needed:
            sublib = _resolve(sub, info.elf_class, info.machine, dirs, use_ldconfig)
            if sublib is not None:
                found.setdefault(sublib.path, sublib)
    return list(found.values()), missing


def find_missing_libraries(info: ElfInfo, search_dirs: Iterable[str] | None = None) -> list[str]:
    """Return the ``DT_NEEDED`` names of ``info`` that no library on this host provides.

    Libraries are looked up by name in the file's RPATH/RUNPATH, ``LD_LIBRARY_PATH``,
    ``search_dirs`` (default: this host's standard library directories and the
    ``ldconfig -p`` cache), skipping files of another word size or architecture.
    """
    return _needed_closure(info, search_dirs)[1]


def find_unresolved(info: ElfInfo, search_dirs: Iterable[str] | None = None) -> list[str]:
    """Return the undefined symbols of ``info`` that none of its libraries defines.

    Only meaningful for a file inspected for this host. The libraries are the file's
    ``DT_NEEDED`` entries resolved as in :func:`find_missing_libraries`, plus their own
    ``DT_NEEDED`` entries (one level). Names are returned as in ``info.undefined``
    (``name`` or ``name@VERSION``); versions are not compared, only names.
    """
    libraries, _missing = _needed_closure(info, search_dirs)
    defined: set[str] = set()
    for lib in libraries:
        defined |= lib.defined
    return [sym for sym in info.undefined if sym.split("@", 1)[0] not in defined]
