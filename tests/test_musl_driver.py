"""Plugins really run on musl: the host's C runtime and the native plugins, built with
musl-gcc, run together in a small C driver (tests/musl_driver/driver.c).

The Python half of plughost cannot run on musl here without an Alpine userland; the C half
can. The driver dlopens each musl-built plugin through the same ABI and runtime the Python
host uses and exercises its types: create, requests through middlewares and an action, a
storage round trip, destroy and shutdown. It also runs under valgrind.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
from pathlib import Path

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from build_support import run

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "musl_driver"
BUILD = ROOT / "build" / "musl-driver"  # private to this test: not build_plugins.py's folders
PLUGINS = (
    "memory",
    "requestid",
    "static",
    "session",
    "limiter",
    "csrf",
    "cors",
    "helmet",
    "logger",
    "httpfw",
)  # every plugin without a third-party library
MUSL_LOADER = f"/lib/ld-musl-{platform.machine()}.so.1"

# One line per check the driver must pass, by name.
EXPECTED_CHECKS = [
    "runtime",
    *(f"load {name}.so" for name in PLUGINS),
    "create storage 'Store'",
    "storage set/get",
    "storage incr with TTL",
    "storage set with TTL",
    "storage del",
    "storage reset",
    "storage config error",
    "static action",
    "requestid middleware",
    "python element stand-in",
    "packed response",
    "requestid keeps a sane id",
    "failing element",
    "session middleware",
    "limiter middleware",
    "csrf middleware",
    "cors middleware",
    "helmet middleware",
    "logger middleware",
    "httpfw action",
    "shutdown",
]


@pytest.fixture(scope="module")
def driver() -> Path:
    """Builds the driver and the plugins with musl-gcc (incrementally, in build/musl-driver)."""
    if shutil.which("musl-gcc") is None:
        pytest.fail("musl-gcc not found: `./dev setup` installs Debian's musl-tools")
    generator = (
        ["-G", "Ninja"] if shutil.which("ninja") and not (BUILD / "Makefile").exists() else []
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CFLAGS", "LDFLAGS")}
    cfg = run(
        [
            "cmake",
            "-S",
            SOURCE,
            "-B",
            BUILD,
            *generator,
            "-DCMAKE_C_COMPILER=musl-gcc",
            "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
        ],
        env=env,
    )
    assert cfg.returncode == 0, f"configuring the musl driver failed:\n{cfg.stdout}{cfg.stderr}"
    bld = run(["cmake", "--build", BUILD, "-j", "2"], env=env)
    assert bld.returncode == 0, f"building the musl driver failed:\n{bld.stdout}{bld.stderr}"
    exe = BUILD / "plughost_musl_driver"
    assert exe.is_file()
    return exe


def _interpreter_and_needed(path: Path) -> tuple[str | None, list[str]]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        interp = None
        for segment in elf.iter_segments():
            if segment["p_type"] == "PT_INTERP":
                interp = segment.get_interp_name()
        needed: list[str] = []
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                needed += [t.needed for t in section.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
        return interp, needed


def test_driver_and_plugins_are_musl_builds(driver: Path) -> None:
    interp, needed = _interpreter_and_needed(driver)
    assert interp == MUSL_LOADER, f"{driver} is not a musl program (interpreter {interp})"
    assert not any(n.startswith("libc.so.6") for n in needed), needed
    assert Path(MUSL_LOADER).exists(), f"{MUSL_LOADER} (musl-tools) is missing: cannot run it"
    for name in PLUGINS:
        so = BUILD / "plugins" / f"{name}.so"
        _, needed = _interpreter_and_needed(so)
        assert "libc.so" in needed and "libc.so.6" not in needed, f"{so.name}: {needed}"


def test_plughost_check_agrees_they_are_for_alpine(driver: Path) -> None:
    """The Python checker, from their ELF files alone: fit for the Alpine image, not here."""
    files = [BUILD / "plugins" / f"{name}.so" for name in PLUGINS]
    cli = [sys.executable, "-c", "from plughost.cli import main; main()", "check"]
    alpine = run([*cli, "--target", f"linux-{platform.machine()}-musl", *files], timeout=120)
    assert alpine.returncode == 0, alpine.stdout + alpine.stderr
    assert f"{len(files)} of {len(files)} plugin(s) compatible" in alpine.stdout, alpine.stdout
    here = run([*cli, files[0]], timeout=120)
    assert here.returncode == 1, here.stdout + here.stderr
    assert "musl" in here.stdout, here.stdout


def _check_lines(stdout: str) -> dict[str, str]:
    """{check name: "ok" or "FAIL"} from the driver's output."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^(ok|FAIL)  +([^:]+): ", stdout, re.M)}


def test_driver_runs_every_check_on_musl(driver: Path) -> None:
    res = run([driver, BUILD / "plugins"], timeout=60)
    print(res.stdout)
    assert res.returncode == 0, f"the musl driver failed:\n{res.stdout}\n{res.stderr}"
    checks = _check_lines(res.stdout)
    missing = [name for name in EXPECTED_CHECKS if checks.get(name) != "ok"]
    assert not missing, f"checks missing or failed: {missing}\n{res.stdout}"
    assert "libc=musl" in res.stdout
    assert re.search(r"generated X-Request-ID [0-9a-f-]{36} \(36 chars\)", res.stdout)
    assert (
        res.stdout.rstrip()
        .splitlines()[-1]
        .startswith(f"musl driver: all {len(checks)} checks passed")
    )


def test_driver_is_clean_under_valgrind(driver: Path) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.fail("valgrind is not installed: `./dev setup` installs it (Debian valgrind)")
    # Debian's valgrind replaces malloc in objects whose soname is libc.so.*; musl's libc
    # (/lib/ld-musl-*.so.1) has no soname at all, so tell valgrind that the allocator lives
    # in the object without one. Without this, musl's malloc runs unseen while free is
    # replaced, and every free is reported as invalid.
    res = run(
        [
            valgrind,
            "--soname-synonyms=somalloc=NONE",
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect,possible",
            driver,
            BUILD / "plugins",
        ],
        timeout=300,
    )
    assert res.returncode == 0, f"valgrind found errors:\n{res.stdout}\n{res.stderr}"
    assert "ERROR SUMMARY: 0 errors" in res.stderr, res.stderr
    usage = re.search(r"total heap usage: ([\d,]+) allocs, ([\d,]+) frees", res.stderr)
    assert usage, res.stderr
    allocs, frees = (int(g.replace(",", "")) for g in usage.groups())
    # Proof that valgrind really saw musl's allocator, and that every block was freed.
    assert allocs > 100 and frees == allocs, usage.group(0)


def test_driver_says_clearly_what_went_wrong(driver: Path, tmp_path: Path) -> None:
    res = run([driver, tmp_path], timeout=60)
    assert res.returncode == 1
    assert re.search(
        r"^FAIL  load memory\.so: the dynamic loader refused it: .*memory\.so", res.stdout, re.M
    ), res.stdout
    assert "musl driver: stopped after 1 of 2 check(s) failed" in res.stdout
    usage = run([driver], timeout=60)
    assert usage.returncode == 2 and "usage:" in usage.stderr
