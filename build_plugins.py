#!/usr/bin/env python3
"""Build every native plugin (native_plugins/<name>/) with CMake and collect the .so files.

    python build_plugins.py                  # everything -> build/plugins/
    python build_plugins.py --only memory    # just these plugins
    python build_plugins.py --sanitize       # ASan + UBSan -> build/plugins-sanitize/
    python build_plugins.py --out DIR        # also copy the results to DIR
    python build_plugins.py --plugins-dir D  # more plugin folders laid out like native_plugins/

CMake is configured once per build folder and again only when the options change (the
build itself re-runs CMake when a CMakeLists.txt changes or a plugin folder appears), so a
run with nothing to do takes well under a second. A failed compile shows the compiler's own
output and ends with a one-line summary naming the plugin; exit status 1 (2: the build could
not be set up, e.g. bad options or a CMake error).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
STAMP = ".build_plugins.json"  # in the build folder: the options it was configured with
OUT_STAMP = ".build_plugins-out.json"  # in the output folder: the files this script put there
MANIFEST = "plughost-plugins.tsv"  # written by CMakeLists.txt: target, source folder, file
TRUE_WORDS = {"1", "true", "yes", "on"}


class BuildError(Exception):
    """The build could not be set up (exit status 2)."""


@dataclass(frozen=True)
class Plugin:
    name: str
    source_dir: Path
    file: Path

    @property
    def shown_dir(self) -> str:
        return _shown(self.source_dir)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        try:
            return str(path.resolve().relative_to(ROOT))
        except ValueError:
            return str(path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Build plughost's native plugins with CMake into one folder.",
        epilog="Environment: PLUGHOST_SANITIZE=1 is the same as --sanitize; CC picks the "
        "compiler (e.g. CC=musl-gcc, with its own --build-dir); CMAKE_GENERATOR overrides "
        "the generator (default Ninja when installed, else Unix Makefiles).",
    )
    p.add_argument("--build-dir", type=Path, default=None,
                   help="CMake build folder (default build/cmake, or build/cmake-sanitize)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder that receives the .so files (default build/plugins, or "
                   "build/plugins-sanitize)")
    p.add_argument("--only", nargs="+", metavar="NAME", default=None,
                   help="build only these plugins")
    p.add_argument("--plugins-dir", type=Path, action="append", default=[], metavar="DIR",
                   help="another folder holding <name>/CMakeLists.txt plugin folders "
                   "(repeatable)")
    p.add_argument("--sanitize", action="store_true",
                   help="build with -fsanitize=address,undefined in separate folders")
    p.add_argument("--build-type", default="RelWithDebInfo",
                   help="CMAKE_BUILD_TYPE (default RelWithDebInfo)")
    p.add_argument("--clean", action="store_true",
                   help="delete the build folder (and the .so files this script put in the "
                   "output folder) first")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print nothing unless something fails")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2,
                   help="parallel compile jobs (default: number of CPUs)")
    args = p.parse_args(argv)
    if os.environ.get("PLUGHOST_SANITIZE", "").strip().lower() in TRUE_WORDS:
        args.sanitize = True
    suffix = "-sanitize" if args.sanitize else ""
    if args.build_dir is None:
        args.build_dir = ROOT / "build" / f"cmake{suffix}"
    if args.out is None:
        args.out = ROOT / "build" / f"plugins{suffix}"
    args.build_dir = args.build_dir.resolve()
    args.out = args.out.resolve()
    for d in args.plugins_dir:
        if not d.is_dir():
            p.error(f"--plugins-dir {d}: no such folder")
    args.plugins_dir = [d.resolve() for d in args.plugins_dir]
    return args


def _generator() -> str:
    env = os.environ.get("CMAKE_GENERATOR")
    if env:
        return env
    return "Ninja" if shutil.which("ninja") else "Unix Makefiles"


def _settings(args: argparse.Namespace) -> dict[str, object]:
    """Everything that, when changed, needs a new configure step."""
    return {
        "source": str(ROOT),
        "generator": _generator(),
        "cc": os.environ.get("CC", ""),
        "cflags": os.environ.get("CFLAGS", ""),
        "build_type": args.build_type,
        "sanitize": bool(args.sanitize),
        "plugins_dirs": [str(d) for d in args.plugins_dir],
        "hiredis_dir": str(getattr(args, "hiredis_dir", "")),
    }


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", check=False)


def fetch_third_party(args: argparse.Namespace) -> None:
    """The C sources plugins compile in (tools/fetch_hiredis.py: hiredis for valkey)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("fetch_hiredis",
                                                  ROOT / "tools" / "fetch_hiredis.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        args.hiredis_dir = mod.ensure(quiet=args.quiet)
    except mod.FetchError as e:
        raise BuildError(f"hiredis (for native_plugins/valkey): {e}") from None


def configure(args: argparse.Namespace, force: bool = False) -> None:
    build = args.build_dir
    want = _settings(args)
    stamp = build / STAMP
    have: dict[str, object] | None = None
    if stamp.is_file() and (build / "CMakeCache.txt").is_file():
        try:
            have = json.loads(stamp.read_text())
        except (OSError, ValueError):
            have = None
    if have == want and not force:
        return
    fresh_keys = ("source", "generator", "cc", "cflags")  # CMake caches these at first run
    if have is not None and any(have.get(k) != want[k] for k in fresh_keys):
        # CMake cannot switch generator or compiler in place: start this folder afresh.
        shutil.rmtree(build)
    build.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    cmd = [
        "cmake", "-S", str(ROOT), "-B", str(build), "-G", str(want["generator"]),
        f"-DCMAKE_BUILD_TYPE={args.build_type}",
        f"-DPLUGHOST_SANITIZE={'ON' if args.sanitize else 'OFF'}",
        "-DPLUGHOST_EXTRA_PLUGIN_DIRS=" + ";".join(str(d) for d in args.plugins_dir),
        f"-DPLUGHOST_HIREDIS_DIR={want['hiredis_dir']}",
    ]
    if not args.quiet:
        print(f"  configuring {_shown(build)}", flush=True)
    res = _run(cmd)
    if res.returncode != 0:
        sys.stderr.write(res.stdout)
        raise BuildError(f"CMake could not configure {_shown(build)} (see its output above)")
    stamp.write_text(json.dumps(want, indent=1) + "\n")


def read_manifest(build: Path) -> dict[str, Plugin]:
    path = build / MANIFEST
    if not path.is_file():
        raise BuildError(f"{path} is missing: was {build} configured from {ROOT}?")
    plugins: dict[str, Plugin] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, source, file = line.split("\t")
        plugins[name] = Plugin(name, Path(source), Path(file))
    return plugins


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


_PROGRESS = re.compile(r"^(\[\d+/\d+\] |\[\s*\d+%\] )")
_TARGET_DIR = re.compile(r"CMakeFiles/([^/\s]+)\.dir/")


def build(args: argparse.Namespace, plugins: dict[str, Plugin],
          names: list[str]) -> tuple[set[str], str]:
    """Runs the build; returns the names of the plugins that failed and the tool output."""
    cmd = ["cmake", "--build", str(args.build_dir), "--parallel", str(max(1, args.jobs))]
    if args.only:
        cmd += ["--target", *names]
    gen = _settings(args)["generator"]
    if gen == "Ninja":
        cmd += ["--", "-k", "0"]  # keep going: report every broken plugin at once
    elif "Makefiles" in str(gen):
        cmd += ["--", "-k"]
    res = _run(cmd)
    if res.returncode == 0:
        return set(), res.stdout
    failed: set[str] = set()
    by_file = {str(p.file.relative_to(args.build_dir)): n for n, p in plugins.items()
               if p.file.is_relative_to(args.build_dir)}
    for line in res.stdout.splitlines():
        if line.startswith("FAILED:") or "Error" in line or "error:" in line:
            failed.update(m for m in _TARGET_DIR.findall(line) if m in plugins)
            failed.update(n for f, n in by_file.items() if f in line.split())
    if not failed:  # e.g. a link error reported without the object path
        failed = {n for n in names if not plugins[n].file.is_file()}
    return failed or {"?"}, res.stdout


def _copy_if_changed(src: Path, dst: Path) -> bool:
    if dst.is_file() and filecmp.cmp(src, dst, shallow=False):
        return False
    # Never overwrite in place: a running host may have the old file mapped.
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return True


def _out_stamp(out: Path) -> set[str]:
    try:
        return set(json.loads((out / OUT_STAMP).read_text()))
    except (OSError, ValueError, TypeError):
        return set()


def collect(args: argparse.Namespace, built: list[Plugin], full: bool) -> None:
    """Copies the built plugins into args.out (unless it is CMake's own folder)."""
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    previous = _out_stamp(out)
    names = {p.file.name for p in built}
    for p in built:
        if p.file.parent.resolve() != out:
            _copy_if_changed(p.file, out / p.file.name)
    if full:
        for stale in previous - names:  # plugins that no longer exist
            (out / stale).unlink(missing_ok=True)
        current = names
    else:
        current = previous | names
    if current != previous or not (out / OUT_STAMP).is_file():
        (out / OUT_STAMP).write_text(json.dumps(sorted(current)) + "\n")


def clean(args: argparse.Namespace) -> None:
    if args.build_dir.exists():
        shutil.rmtree(args.build_dir)
    for name in _out_stamp(args.out):
        (args.out / name).unlink(missing_ok=True)
    (args.out / OUT_STAMP).unlink(missing_ok=True)


def _sanitizer_hint(build: Path) -> str | None:
    """How to load sanitized plugins into an unsanitized python: preload the runtime."""
    try:
        cache = (build / "CMakeCache.txt").read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"^CMAKE_C_COMPILER:\w+=(.+)$", cache, re.M)
    if not m:
        return None
    res = _run([m.group(1), "-print-file-name=libasan.so"])
    lib = res.stdout.strip()
    if res.returncode != 0 or not os.path.isabs(lib):
        return None
    return f"LD_PRELOAD={lib} ASAN_OPTIONS=detect_leaks=0"


@contextlib.contextmanager
def _exclusive(build_dir: Path) -> Iterator[None]:
    """Holds a lock beside the build folder, so two builds started at once (two test runs,
    a test run and a benchmark) take turns instead of running CMake in one tree together."""
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(build_dir.parent / ".build_plugins.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with _exclusive(args.build_dir):
        return _main(args, started)


def _main(args: argparse.Namespace, started: float) -> int:
    try:
        if args.clean:
            clean(args)
        fetch_third_party(args)
        configure(args)
        plugins = read_manifest(args.build_dir)
        if args.only:
            unknown = [n for n in args.only if n not in plugins]
            if unknown:  # maybe a plugin folder that appeared since the last configure
                configure(args, force=True)
                plugins = read_manifest(args.build_dir)
                unknown = [n for n in args.only if n not in plugins]
            if unknown:
                raise BuildError(f"no plugin named {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(plugins)) or 'none'})")
        names = list(dict.fromkeys(args.only)) if args.only else sorted(plugins)
        before = {n: _mtime(plugins[n].file) for n in names}

        failed, output = build(args, plugins, names)
        # The build may have re-run CMake (a new plugin folder): read the list again.
        plugins = read_manifest(args.build_dir)
        if not args.only:
            names = sorted(plugins)
        ok = [plugins[n] for n in names
              if n in plugins and n not in failed and plugins[n].file.is_file()]
        collect(args, ok, full=not args.only and not failed)
    except BuildError as e:
        print(f"build_plugins: {e}", file=sys.stderr)
        return 2
    except (OSError, subprocess.SubprocessError) as e:
        print(f"build_plugins: {e}", file=sys.stderr)
        return 2

    if not args.quiet:
        for p in ok:
            verb = "built" if _mtime(p.file) != before.get(p.name) else "up to date"
            print(f"  {verb} {p.file.name}  ({p.shown_dir})")
    if failed:
        shown = [line for line in output.splitlines() if not _PROGRESS.match(line)]
        sys.stderr.write("\n".join(shown).rstrip() + "\n")
        known = sorted(n for n in failed if n in plugins)
        if known:
            what = ", ".join(f"{n} ({plugins[n].shown_dir})" for n in known)
            noun = "plugin" if len(known) == 1 else "plugins"
            print(f"build_plugins: FAILED to build {noun} {what}; the compiler's output is "
                  "above", file=sys.stderr)
        else:
            print("build_plugins: FAILED: the build stopped; its output is above",
                  file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"build_plugins: {len(ok)} plugin{'s' if len(ok) != 1 else ''} in "
              f"{_shown(args.out)}  ({time.monotonic() - started:.1f} s)")
        if args.sanitize:
            hint = _sanitizer_hint(args.build_dir)
            if hint:
                print(f"  load them from an unsanitized host with {hint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
