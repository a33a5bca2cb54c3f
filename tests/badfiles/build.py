"""Builds the real bad (and good) plugin files the tests check and load.

Every file is produced by a real toolchain from the small C sources next to this file:
gcc for the host, musl-gcc (Debian ``musl-tools``), aarch64-linux-gnu-gcc (Debian
``gcc-aarch64-linux-gnu``) and zig (PyPI ``ziglang``, run as ``sys.executable -m
ziglang``) for 32-bit, big-endian and new-glibc targets. Nothing is skipped: a missing
toolchain raises :class:`ToolchainMissing` naming the package to install.

    python tests/badfiles/build.py OUTDIR
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ABI_DIR = ROOT / "abi"

#: Flags every plugin is compiled with.
CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-fvisibility=hidden")
#: Plugins link against no host symbol.
NO_UNDEFINED = ("-Wl,--no-undefined",)

# Toolchain -> (command, Debian or PyPI package that provides it).
_GCC = "gcc"
_MUSL = "musl-gcc"
_AARCH64 = "aarch64-linux-gnu-gcc"
_ZIG = "zig"
_PACKAGES = {
    _GCC: "Debian package build-essential (gcc)",
    _MUSL: "Debian package musl-tools (musl-gcc)",
    _AARCH64: "Debian packages gcc-aarch64-linux-gnu and libc6-dev-arm64-cross",
    _ZIG: "PyPI package ziglang (pip install ziglang)",
}


class ToolchainMissing(RuntimeError):
    """A compiler the bad files need is not installed."""


class BuildFailed(RuntimeError):
    """A compiler or a verification step failed."""


@dataclass(frozen=True)
class _Job:
    name: str  # output file stem
    source: str  # file in this folder
    toolchain: str
    target: str | None = None  # zig -target
    shared: bool = True
    no_undefined: bool = True
    defines: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()


def _abi_minor() -> int:
    text = (ABI_DIR / "plugin.h").read_text()
    match = re.search(r"^#define PH_ABI_MINOR (\d+)", text, re.M)
    if match is None:
        raise BuildFailed(f"cannot find PH_ABI_MINOR in {ABI_DIR / 'plugin.h'}")
    return int(match[1])


def _jobs() -> list[_Job]:
    return [
        _Job("good", "good.c", _GCC),
        _Job("good_musl", "good.c", _MUSL),
        _Job("musl", "musl.c", _MUSL),
        _Job("aarch64", "good.c", _AARCH64),
        _Job("elf32", "good.c", _ZIG, target="x86-linux-musl"),
        _Job("bigendian", "good.c", _ZIG, target="s390x-linux-musl"),
        _Job(
            "newglibc",
            "newglibc.c",
            _ZIG,
            target="x86_64-linux-gnu.2.39",
            extra=("-fno-builtin",),  # else clang inlines strlcpy and needs no GLIBC_2.38
        ),
        _Job("executable", "executable.c", _GCC, shared=False),
        _Job("noentry", "noentry.c", _GCC),
        _Job("nonote", "nonote.c", _GCC),
        _Job("abi2", "abi2.c", _GCC),
        _Job("abiminor", "abiminor.c", _GCC, defines=(f"BAD_ABI_MINOR={_abi_minor() + 1}",)),
        _Job("smallsize", "smallsize.c", _GCC),
        _Job("unresolved", "unresolved.c", _GCC, no_undefined=False),
        _Job("dup_a", "dup.c", _GCC, defines=('DUP_NAME="dup_a"',)),
        _Job("dup_b", "dup.c", _GCC, defines=('DUP_NAME="dup_b"',)),
        _Job("initfail", "initfail.c", _GCC),
        _Job("segv", "segv.c", _GCC),
        _Job("hang", "hang.c", _GCC),
    ]


def _compiler(toolchain: str) -> list[str]:
    if toolchain == _ZIG:
        if importlib.util.find_spec("ziglang") is None:
            raise ToolchainMissing(f"zig is not installed: install the {_PACKAGES[_ZIG]}")
        return [sys.executable, "-m", "ziglang", "cc"]
    exe = shutil.which(toolchain)
    if exe is None:
        raise ToolchainMissing(f"{toolchain} is not installed: install the {_PACKAGES[toolchain]}")
    return [exe]


def _command(job: _Job, out: Path) -> list[str]:
    cmd = _compiler(job.toolchain)
    if job.target:
        cmd += ["-target", job.target]
    cmd += [*CFLAGS, f"-I{ABI_DIR}"]
    cmd += [f"-D{d}" for d in job.defines]
    cmd += job.extra
    if job.shared:
        cmd.append("-shared")
        if job.no_undefined:
            cmd += NO_UNDEFINED
    cmd += [str(HERE / job.source), "-o", str(out)]
    return cmd


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildFailed(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}"
        )
    return proc.stdout


def _build(job: _Job, outdir: Path) -> Path:
    out = outdir / f"{job.name}.so"
    _run(_command(job, out), f"building {out.name}")
    return out


def _verify_newglibc(path: Path) -> None:
    """newglibc.so must really need GLIBC_2.38 (strlcpy), or its test means nothing."""
    readelf = shutil.which("readelf")
    if readelf is None:
        raise ToolchainMissing("readelf is not installed: install the Debian package binutils")
    versions = _run([readelf, "-V", "--wide", str(path)], f"readelf -V {path.name}")
    if "GLIBC_2.38" not in versions:
        raise BuildFailed(f"{path} does not need GLIBC_2.38; readelf -V says:\n{versions}")


def build_badfiles(outdir: Path) -> dict[str, Path]:
    """Build every bad and good test plugin into ``outdir``.

    Returns file stem -> path, e.g. ``{"good": outdir / "good.so", "empty": ...}``:
    ``empty``, ``text``, ``truncated``, ``elf32``, ``aarch64``, ``bigendian``,
    ``executable``, ``musl``, ``newglibc``, ``noentry``, ``nonote``, ``abi2``,
    ``abiminor``, ``smallsize``, ``unresolved``, ``dup_a``, ``dup_b``, ``initfail``,
    ``segv``, ``hang``, ``good`` and ``good_musl``.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    jobs = _jobs()
    for toolchain in {job.toolchain for job in jobs}:
        _compiler(toolchain)  # fail early, naming the missing package

    files: dict[str, Path] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {job.name: pool.submit(_build, job, outdir) for job in jobs}
        for name, future in futures.items():
            files[name] = future.result()

    _verify_newglibc(files["newglibc"])

    empty = outdir / "empty.so"
    empty.write_bytes(b"")
    files["empty"] = empty

    text = outdir / "text.so"
    text.write_text("This is not a plugin, just a text file someone named .so.\n")
    files["text"] = text

    good = files["good"].read_bytes()
    truncated = outdir / "truncated.so"
    truncated.write_bytes(good[: len(good) // 2])
    files["truncated"] = truncated
    return dict(sorted(files.items()))


def main(argv: list[str]) -> int:
    """``python tests/badfiles/build.py OUTDIR``: build everything, print the paths."""
    if len(argv) != 1:
        print("usage: python tests/badfiles/build.py OUTDIR", file=sys.stderr)
        return 2
    try:
        files = build_badfiles(Path(argv[0]))
    except (ToolchainMissing, BuildFailed) as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    for path in files.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
