"""Inputs fuzzing found to break plughost, each as a test with its minimal input.

Plugin files: one edit to a real plugin built by CMake, checked with the real CLI.
Configurations: one edit to a valid configuration, checked with ``plughost check --config``
and built in-process: one sentence with file, line and key, never an exception.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from gateway_support import PLUGHOST, both_paths, write_config


def check(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PLUGHOST, "check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        errors="surrogateescape",
    )


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
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """sh_info of .gnu.version_r set to 2**31: the walk once followed vn_next == 0 back to
    the same entry 2**31 times; it is bounded by the section's size now."""
    plugin = tmp_path / "static.so"
    shutil.copy(test_plugin_dir / "static.so", plugin)
    for count in (0x80000000, 0xFFFFFFFF, 0):
        section_header_field(plugin, ".gnu.version_r", SH_INFO, count)
        done = check(str(plugin), timeout=30)
        assert done.returncode in (0, 1), done
        assert done.stdout.splitlines()[-1].endswith(
            "compatible with " + done.stdout.split("compatible with ")[-1].strip()
        ), done.stdout
        assert "Traceback" not in done.stdout + done.stderr


def test_names_from_the_file_are_printed_escaped(tmp_path: Path, test_plugin_dir: Path) -> None:
    """A library name holding ESC and a symbol name holding a newline: the FAIL sentences
    show them escaped, one line each, and nothing from the file reaches the terminal raw."""
    original = (test_plugin_dir / "static.so").read_bytes()
    for old, new, shown in (
        (b"\x00libc.so.6\x00", b"\x00lib\x1b.so.6\x00", "lib\\x1b.so.6"),
        (b"\x00strlen\x00", b"\x00str\nen\x00", "str\\x0aen"),
    ):
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


# ------------------------------------------------------------------------ configurations


def _middleware_config(text: str):
    def mutate(folder: Path) -> None:
        path = folder / "middlewares.yaml"
        path.write_text(path.read_text().replace("    config: {name: A}", "    config:\n" + text))

    return mutate


def _file(name: str, text: str):
    return lambda folder: (folder / name).write_text(text)


BOMB = "".join(
    f"      {n}: &{n} [{', '.join([f'*{p}'] * 10) if p else ', '.join('x' * 10)}]\n"
    for p, n in zip(["", "a", "b", "c", "d"], "abcde")
)

CONFIG_CASES = {
    # name: (how the valid configuration is edited, file:line, key, words of the sentence)
    "nesting": (
        _file("server.yaml", "server:\n  x: " + "[" * 1000 + "]" * 1000 + "\n"),
        "server.yaml:2",
        "server.x[0][0][0][0][0][0]…: ",
        "nested more than 64 levels",
    ),
    "nesting-in-config": (
        _middleware_config("      deep: " + "{a: " * 500 + "1" + "}" * 500 + "\n"),
        "middlewares.yaml:7",
        "middlewares.A.config.deep.a.a.a.a…: ",
        "nested more than",
    ),
    "tagged-int": (
        _file("server.yaml", "server:\n  concurrency: !!int abc\n"),
        "server.yaml:2",
        "server.concurrency",
        "'abc' is tagged !!int but is not a whole number",
    ),
    "tagged-int-list": (
        _file("server.yaml", "server:\n  concurrency: !!int '[1]'\n"),
        "server.yaml:2",
        "server.concurrency",
        "is tagged !!int",
    ),
    "tagged-bool": (
        _file("server.yaml", "server:\n  tls: !!bool maybe\n"),
        "server.yaml:2",
        "server.tls",
        "'maybe' is tagged !!bool but is not true or false",
    ),
    "huge-int": (
        _file("server.yaml", "server:\n  concurrency: " + "9" * 5000 + "\n"),
        "server.yaml:2",
        "server.concurrency",
        "at most 2^62",
    ),
    "huge-int-in-config": (
        _middleware_config("      n: " + "9" * 5000 + "\n"),
        "middlewares.yaml:7",
        "middlewares.A.config.n",
        "4300 digits",
    ),
    "infinite-size": (
        _file("server.yaml", "server:\n  bodyLimit: .inf\n"),
        "server.yaml:2",
        "server.bodyLimit",
        "is not a size",
    ),
    "huge-size": (
        _file("server.yaml", "server:\n  bodyLimit: " + "9" * 400 + "\n"),
        "server.yaml:2",
        "server.bodyLimit",
        "out of range",
    ),
    "nul-in-path": (
        _file("plugins.yaml", 'plugins:\n  - path: "/tmp/a\\0b.so"\n'),
        "plugins.yaml:2",
        "plugins[0].path",
        "holds a NUL character",
    ),
    "long-name-in-path": (
        _file("plugins.yaml", f"plugins:\n  - path: /tmp/{'a' * 300}.so\n"),
        "plugins.yaml:2",
        "plugins[0].path",
        "name of 303 bytes",
    ),
    "nul-in-folder": (
        _file("plugins.yaml", 'plugin: {folder: "/tmp/a\\0b"}\n'),
        "plugins.yaml:1",
        "plugin.folder",
        "holds a NUL character",
    ),
    "recursive-alias": (
        _middleware_config("      rec: &r [*r]\n"),
        "middlewares.yaml:7",
        "middlewares.A.config.rec[0]",
        "the alias *r stands inside",
    ),
    "alias-bomb": (
        _middleware_config(BOMB),
        "middlewares.yaml:11",
        "middlewares.A.config.e",
        "more than 100000 values through aliases",
    ),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_a_hostile_configuration_is_one_sentence_with_file_line_and_key(
    case: str, tmp_path: Path, test_plugin_dir: Path
) -> None:
    mutate, place, key, words = CONFIG_CASES[case]
    folder = write_config(tmp_path / "config", test_plugin_dir)
    mutate(folder)
    started = time.monotonic()
    done = check("--config", str(folder))
    assert time.monotonic() - started < 30
    assert done.returncode == 1, done
    lines = done.stdout.splitlines()
    assert lines[-1] == f"1 problem(s) in {folder}", lines
    assert lines[0].startswith(f"{folder}/{place}: {key}") and words in lines[0], lines
    assert "Traceback" not in done.stdout + done.stderr and "exited with" not in done.stdout
    from plughost import Gateway
    from plughost.config import ConfigErrors

    with pytest.raises(ConfigErrors) as info:  # the same in-process, no other exception
        Gateway.from_config(folder)
    assert words in str(info.value)


# ------------------------------------------------------------------------ request heads


def exchange_raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Sends ``data`` at once and reads until the server closes (or goes quiet)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except socket.timeout:
            pass
    return got


def statuses(answer: bytes) -> list[int]:
    """The status of every response in ``answer``, in order (bodies here never hold one)."""
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


def test_both_paths_answer_every_pipelined_request_in_order(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """A request followed by garbage: its 200, then 400 (the ASGI path once lost the 200).
    Two requests followed by a WebSocket upgrade: two 200s, then the handshake's answer
    (the ASGI path once switched to WebSocket before answering the second)."""
    folder = write_config(tmp_path / "config", test_plugin_dir)
    with both_paths(folder) as servers:
        for server in servers:
            answer = exchange_raw(server.port, GET + b"xyz\r\n\r\n")
            assert statuses(answer) == [200, 400], (server.proc.args, answer)
            answer = exchange_raw(server.port, GET + GET + GET + b"\x00\r\n\r\n")
            assert statuses(answer) == [200, 200, 200, 400], (server.proc.args, answer)
            answer = exchange_raw(server.port, GET + GET + UPGRADE, timeout=3)
            found = statuses(answer)
            assert found[:2] == [200, 200] and len(found) == 3, (server.proc.args, answer)
        assert statuses(exchange_raw(servers[0].port, GET + GET + UPGRADE, timeout=3)) == statuses(
            exchange_raw(servers[1].port, GET + GET + UPGRADE, timeout=3)
        )


def test_a_client_that_half_closes_still_gets_every_answer(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """Requests, then the client shuts its sending side (as HTTP/1.0 clients and scripts
    do): every request is answered before the connection closes, on both paths (the ASGI
    path once dropped the second of two)."""
    folder = write_config(tmp_path / "config", test_plugin_dir)
    traced = b"GET /traced HTTP/1.1\r\nHost: x\r\n\r\n"
    with both_paths(folder) as servers:
        for server in servers:
            for data, expected in (
                (GET, [200]),
                (GET + traced, [200, 200]),
                (traced + GET + traced, [200, 200, 200]),
                (b"GET / HTTP/1.0\r\n\r\n", [200]),
            ):
                with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                    sock.sendall(data)
                    sock.shutdown(socket.SHUT_WR)
                    answer = b""
                    while chunk := sock.recv(65536):
                        answer += chunk
                assert statuses(answer) == expected, (server.proc.args, data, answer)
