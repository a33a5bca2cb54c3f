"""Runs plughost's fuzz harnesses: ``./dev fuzz [--minutes N | --seconds N] [HARNESS ...]``.

Every harness runs for the time given (per harness; default 1 minute) with libFuzzer's
engine: atheris for the Python ones, clang's ``-fsanitize=fuzzer,address,undefined`` for the
C runtime's. Seeds are made fresh from the repository (its plugins, its configurations, a
few request heads); what each run learns is kept in ``build/fuzz/<harness>/corpus`` and
grows from run to run. A finding is written to ``build/fuzz/<harness>/`` (``crash-…``,
``timeout-…``, ``oom-…``) with the command that replays it, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from plughost._build_runtime import RUNTIME_DIR, RUNTIME_SOURCES

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "fuzz"
BUILD = ROOT / "build" / "fuzz"
RUNTIME = RUNTIME_DIR  # the runtime's sources, as plughost's build compiles them for cffi
CLANG = "clang-14"

#: Request heads the request_heads harness starts from.
HEADS = {
    "get": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "pipelined": b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /users/7?a=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    "post": b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "chunked": b"POST /submit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    "http10": b"GET /files/a/b HTTP/1.0\r\n\r\n",
    "upgrade": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    "expect": b"PUT /submit HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
    b"\r\nok",
    "headers": b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n"
    b"X_B: 2\r\nAuthorization: a\r\n\r\n",
}

#: The largest plugin file the ELF harness starts from (bigger ones slow every mutation).
ELF_SEED_LIMIT = 128 * 1024


def seeds_elf(folder: Path) -> None:
    for plugin in sorted((ROOT / "build" / "plugins").glob("*.so")):
        if plugin.stat().st_size <= ELF_SEED_LIMIT:
            shutil.copy(plugin, folder / plugin.name)


def seeds_config(folder: Path) -> None:
    (folder / "default.yaml").write_bytes(
        (ROOT / "host" / "plughost" / "default.yaml").read_bytes()
    )
    for sample in ("configs", "compose-configs"):  # a folder's files, as one document
        parts = sorted((ROOT / "docker" / sample).glob("*.yaml"))
        (folder / f"{sample}.yaml").write_bytes(b"\n".join(p.read_bytes() for p in parts))


def seeds_heads(folder: Path) -> None:
    for name, head in HEADS.items():
        (folder / name).write_bytes(head)


def seeds_runtime(folder: Path) -> None:
    # a configuration step and an exchange step, to start from both halves of the harness
    (folder / "config").write_bytes(b"\x00\x00\x03key\x01\x03key\x05value\x00\x03\x03key\x01d")
    (folder / "exchange").write_bytes(
        b"\x01\x03GET\x01/\x00\x09127.0.0.1\x08x-a\x001\x00\x00\x00\x00\x03x-b\x011\xff\x00"
    )


def build_runtime() -> list[str]:
    """The C runtime's harness, built with libFuzzer and the sanitizers; its command."""
    binary = BUILD / "runtime" / "runtime_fuzz"
    sources = [FUZZ / "runtime_fuzz.c", *(RUNTIME / s for s in RUNTIME_SOURCES)]
    headers = [*RUNTIME.glob("*.h"), ROOT / "abi" / "plugin.h"]
    newest = max(p.stat().st_mtime for p in (*sources, *headers))
    if not binary.exists() or binary.stat().st_mtime < newest:
        if shutil.which(CLANG) is None:
            raise SystemExit(f"fuzz: {CLANG} is not installed: run ./dev setup")
        subprocess.run(
            [
                CLANG,
                "-std=c11",
                "-g",
                "-O1",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-D_GNU_SOURCE",
                "-fsanitize=fuzzer,address,undefined",
                "-fno-sanitize-recover=undefined",
                "-I",
                str(ROOT / "abi"),
                "-I",
                str(RUNTIME),
                *map(str, sources),
                "-lpthread",
                "-o",
                str(binary),
            ],
            check=True,
        )
    return [str(binary)]


def python_harness(name: str) -> list[str]:
    return [sys.executable, str(FUZZ / f"{name}.py")]


HARNESSES = {
    "elf_check": (seeds_elf, lambda: python_harness("elf_check")),
    "config_build": (seeds_config, lambda: python_harness("config_build")),
    "request_heads": (seeds_heads, lambda: python_harness("request_heads")),
    "runtime": (seeds_runtime, build_runtime),
}

#: The files libFuzzer writes for a finding.
ARTIFACTS = ("crash-*", "timeout-*", "oom-*", "leak-*", "slow-unit-*")

_DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+).*exec/s: (\d+)")


def _artifacts(home: Path) -> set[Path]:
    return {path for pattern in ARTIFACTS for path in home.glob(pattern)}


def run(name: str, seconds: int) -> bool:
    """Runs one harness for ``seconds``; True when it found nothing."""
    make_seeds, command = HARNESSES[name]
    home = BUILD / name
    seeds, corpus = home / "seeds", home / "corpus"
    shutil.rmtree(seeds, ignore_errors=True)
    for folder in (seeds, corpus):
        folder.mkdir(parents=True, exist_ok=True)
    make_seeds(seeds)
    before = _artifacts(home)
    argv = [
        *command(),
        f"-max_total_time={seconds}",
        "-timeout=25",
        "-rss_limit_mb=3072",
        f"-artifact_prefix={home}/",
        "-print_final_stats=1",
        str(corpus),
        str(seeds),
    ]
    log = home / "last-run.log"
    started = time.monotonic()
    with log.open("wb") as out:
        done = subprocess.run(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "host")},
            timeout=seconds + 300,
        )
    text = log.read_text(errors="replace")
    found = sorted(_artifacts(home) - before)
    stats = _DONE.search(text)
    summary = (
        f"{stats[1]} inputs, {stats[3]}/s, coverage {stats[2]}"
        if stats
        else f"exit status {done.returncode}"
    )
    took = time.monotonic() - started
    if done.returncode == 0 and not found:
        print(f"fuzz: {name}: nothing found in {took:.0f} s ({summary})", flush=True)
        return True
    print(f"fuzz: {name}: FOUND something (exit status {done.returncode}); log: {log}", flush=True)
    for artifact in found:
        replay = " ".join([*command(), str(artifact)])
        print(f"fuzz: {name}: {artifact}\n      replay: {replay}", flush=True)
    tail = [line for line in text.splitlines() if line.strip()][-25:]
    print("\n".join("      " + line for line in tail), flush=True)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--minutes", type=float, help="per harness (default 1)")
    when.add_argument("--seconds", type=int, help="per harness")
    parser.add_argument(
        "harness",
        nargs="*",
        choices=[[], *HARNESSES],
        help=f"which ones (default: all of {', '.join(HARNESSES)})",
    )
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else round((args.minutes or 1) * 60)
    names = args.harness or list(HARNESSES)
    results = [run(name, max(1, seconds)) for name in names]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
