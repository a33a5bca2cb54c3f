"""Platforms a plugin can be checked against: this host, or a named target.

A :class:`Platform` says which ELF files can be loaded there: OS, architecture, word
size, byte order and C library (flavour and, for glibc, the newest version available).
"""

from __future__ import annotations

import glob
import os
import platform
import re
import struct
import sys
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "KNOWN_TARGETS",
    "Platform",
    "UnknownTargetError",
    "host_platform",
    "parse_target",
]

#: Target names accepted by :func:`parse_target`, for help texts. ``-2.NN`` may be
#: appended to a ``gnu`` target to name the oldest glibc the plugin must run on.
KNOWN_TARGETS: tuple[str, ...] = (
    "host",
    "linux-x86_64-gnu",
    "linux-x86_64-gnu-2.NN",
    "linux-x86_64-musl",
    "linux-aarch64-gnu",
    "linux-aarch64-gnu-2.NN",
    "linux-aarch64-musl",
)

# Architectures a named target can have: arch -> (bits, endian).
_TARGET_ARCHES: dict[str, tuple[int, str]] = {
    "x86_64": (64, "little"),
    "aarch64": (64, "little"),
}

# platform.machine() spellings -> the arch names used in plugin notes.
_MACHINE_ALIASES: dict[str, str] = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "armv8l": "arm",
    "armv7l": "arm",
    "armv6l": "arm",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
    "x86": "i386",
}

# 64-bit arch -> the arch a 32-bit process runs as on it.
_COMPAT_32: dict[str, str] = {"x86_64": "i386", "aarch64": "arm"}

_TARGET_RE = re.compile(
    r"linux-(?P<arch>x86_64|aarch64)-(?P<libc>gnu|musl)(?:-(?P<major>2)\.(?P<minor>\d{1,3}))?"
)


@dataclass(frozen=True)
class Platform:
    """Where a plugin is meant to be loaded.

    ``libc_version`` is the newest glibc version available there as ``(major, minor)``;
    ``None`` for musl and for a glibc target with no version named (any glibc accepted).
    ``name`` is the canonical target name, e.g. ``linux-x86_64-gnu-2.36``.
    """

    os: str
    arch: str
    bits: int
    endian: str
    libc: str
    libc_version: tuple[int, int] | None
    name: str

    @property
    def libc_label(self) -> str:
        """The C library in words: ``glibc 2.36``, ``glibc`` or ``musl``."""
        if self.libc == "gnu":
            if self.libc_version is None:
                return "glibc"
            return f"glibc {self.libc_version[0]}.{self.libc_version[1]}"
        return self.libc


class UnknownTargetError(ValueError):
    """A ``--target`` name that :func:`parse_target` does not know."""


def _normalise_machine(machine: str) -> str:
    machine = machine.strip().lower()
    return _MACHINE_ALIASES.get(machine, machine)


def _platform_name(os_name: str, arch: str, libc: str, version: tuple[int, int] | None) -> str:
    name = f"{os_name}-{arch}-{libc}"
    if version is not None:
        name += f"-{version[0]}.{version[1]}"
    return name


def _host_glibc_version() -> tuple[int, int] | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        return None
    match = re.fullmatch(r"glibc (\d+)\.(\d+)(?:\.\d+)?", (text or "").strip())
    return (int(match[1]), int(match[2])) if match else None


@lru_cache(maxsize=1)
def host_platform() -> Platform:
    """Return the platform of this Python process (the one that will load plugins).

    The architecture comes from :func:`platform.machine`, normalised to the names used in
    plugin notes (a 32-bit Python on a 64-bit kernel counts as the 32-bit architecture);
    the glibc version from ``confstr(CS_GNU_LIBC_VERSION)``; without glibc, a
    ``/lib/ld-musl-*`` loader means musl.
    """
    bits = struct.calcsize("P") * 8
    arch = _normalise_machine(platform.machine())
    if bits == 32 and arch in _COMPAT_32:
        arch = _COMPAT_32[arch]
    endian = sys.byteorder
    os_name = "linux" if sys.platform.startswith("linux") else sys.platform
    version = _host_glibc_version()
    if version is not None:
        libc = "gnu"
    elif glob.glob("/lib/ld-musl-*"):
        libc = "musl"
    else:
        libc = "gnu"  # no way to tell: assume glibc, of an unknown version
    return Platform(
        os=os_name,
        arch=arch,
        bits=bits,
        endian=endian,
        libc=libc,
        libc_version=version,
        name=_platform_name(os_name, arch, libc, version),
    )


def parse_target(name: str) -> Platform:
    """Return the :class:`Platform` a target name stands for.

    Accepted: ``host`` (this machine), ``linux-<arch>-gnu`` (any glibc version),
    ``linux-<arch>-gnu-2.NN`` (glibc 2.NN, so symbols newer than it are refused),
    ``linux-<arch>-musl`` (the official Alpine-based image), with ``<arch>`` one of
    ``x86_64`` and ``aarch64``. Raises :class:`UnknownTargetError` for anything else.
    """
    text = name.strip()
    if text == "host":
        return host_platform()
    match = _TARGET_RE.fullmatch(text)
    if match is None or (match["libc"] == "musl" and match["major"] is not None):
        raise UnknownTargetError(
            f"unknown target {name!r}: use one of {', '.join(KNOWN_TARGETS)}"
            " (2.NN is a glibc version such as 2.28)"
        )
    arch, libc = match["arch"], match["libc"]
    version = (int(match["major"]), int(match["minor"])) if match["major"] else None
    bits, endian = _TARGET_ARCHES[arch]
    return Platform(
        os="linux",
        arch=arch,
        bits=bits,
        endian=endian,
        libc=libc,
        libc_version=version,
        name=_platform_name("linux", arch, libc, version),
    )
