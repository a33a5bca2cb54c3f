"""Target platforms: this host and the named --target values."""

from __future__ import annotations

import os
import platform
import struct

import pytest

from plughost.checking.targets import (
    KNOWN_TARGETS,
    Platform,
    UnknownTargetError,
    host_platform,
    parse_target,
)


def test_host_platform_describes_this_machine() -> None:
    host = host_platform()
    assert host.os == "linux"
    assert host.bits == struct.calcsize("P") * 8
    assert host.endian == "little"
    machine = platform.machine()
    assert host.arch == {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)
    glibc = os.confstr("CS_GNU_LIBC_VERSION")  # this test machine runs glibc
    assert glibc and glibc.startswith("glibc ")
    major, minor = glibc.split()[1].split(".")[:2]
    assert host.libc == "gnu"
    assert host.libc_version == (int(major), int(minor))
    assert host.name == f"linux-{host.arch}-gnu-{major}.{minor}"
    assert host.libc_label == f"glibc {major}.{minor}"


def test_host_target_is_host_platform() -> None:
    assert parse_target("host") == host_platform()


@pytest.mark.parametrize(
    "name,arch,libc,version",
    [
        ("linux-x86_64-gnu", "x86_64", "gnu", None),
        ("linux-x86_64-gnu-2.28", "x86_64", "gnu", (2, 28)),
        ("linux-x86_64-gnu-2.17", "x86_64", "gnu", (2, 17)),
        ("linux-x86_64-musl", "x86_64", "musl", None),
        ("linux-aarch64-gnu", "aarch64", "gnu", None),
        ("linux-aarch64-gnu-2.39", "aarch64", "gnu", (2, 39)),
        ("linux-aarch64-musl", "aarch64", "musl", None),
    ],
)
def test_named_targets(name: str, arch: str, libc: str, version: tuple[int, int] | None) -> None:
    target = parse_target(name)
    assert target == Platform(
        os="linux", arch=arch, bits=64, endian="little", libc=libc, libc_version=version, name=name
    )


def test_libc_labels() -> None:
    assert parse_target("linux-x86_64-gnu").libc_label == "glibc"
    assert parse_target("linux-x86_64-gnu-2.28").libc_label == "glibc 2.28"
    assert parse_target("linux-x86_64-musl").libc_label == "musl"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "alpine",
        "linux-riscv64-gnu",
        "linux-x86_64",
        "linux-x86_64-gnu-3.1",
        "linux-x86_64-gnu-2",
        "linux-x86_64-musl-1.2",
        "Linux-x86_64-gnu",
        "linux-x86_64-gnu-2.28 extra",
    ],
)
def test_unknown_targets_are_refused_with_the_valid_names(name: str) -> None:
    with pytest.raises(UnknownTargetError) as info:
        parse_target(name)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert repr(name) in message
    for known in ("host", "linux-x86_64-gnu", "linux-x86_64-musl", "linux-aarch64-gnu"):
        assert known in message


def test_known_targets_all_parse() -> None:
    for name in KNOWN_TARGETS:
        parse_target(name.replace("2.NN", "2.28"))
