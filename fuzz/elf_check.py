"""Fuzz harness: ``plughost check`` on a plugin file nobody trusts (atheris).

Each input is written to a file and judged by the static check (ELF parsing with
pyelftools, the plughost note, the entry header, symbols and their versions, libraries)
for this host and for two other targets, as ``plughost check FILE --target ...`` does.
Nothing from the file runs. A finding is any exception (the check reports every problem
as a sentence), a message that is not one printable line, or a hang (libFuzzer's
``-timeout``). Seeds: the repository's own plugins (``fuzz/run.py`` collects them).
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["plughost", "elftools"]):
    from plughost.checking.staticcheck import static_check
    from plughost.checking.targets import host_platform, parse_target
    from plughost.errors import printable

TARGETS = (host_platform(), parse_target("linux-x86_64-musl"), parse_target("linux-aarch64-gnu"))
FOLDER = tempfile.mkdtemp(
    prefix="plughost-fuzz-elf-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
)
FILE = os.path.join(FOLDER, "plugin.so")


def test_one_input(data: bytes) -> None:
    with open(FILE, "wb") as f:
        f.write(data)
    for target in TARGETS:
        report = static_check(FILE, target)
        for problem in report.problems:
            message = problem.message
            if not message or printable(message) != message:
                raise AssertionError(f"not one printable line: {message!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
