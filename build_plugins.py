#!/usr/bin/env python3
"""Build every native plugin (native_plugins/<name>/) with CMake and collect the .so files.

    python build_plugins.py                  # everything -> build/plugins/
    python build_plugins.py --only memory    # just these plugins
    python build_plugins.py --sanitize       # ASan + UBSan -> build/plugins-sanitize/
    python build_plugins.py --out DIR        # also copy the results to DIR
    python build_plugins.py --plugins-dir D  # more plugin folders laid out like native_plugins/
    python build_plugins.py --target linux-aarch64-musl   # cross build -> build/plugins-<target>/

--target builds for another platform with a toolchain file from host/plughost/cmake/toolchains/
(musl-gcc, aarch64-linux-gnu-gcc or zig from PyPI), each target in its own folders. A plugin whose
CMakeLists.txt looks up a third-party library (find_package, find_library, pkg-config) is
skipped for a target, with the reason printed: this machine has those libraries only for
itself. (CMake configures a view of the source tree without those folders, so their lookups
cannot fail the whole configure step.)

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
STAMP = ".build_plugins.json"  # in the build folder: the options it was configured with
OUT_STAMP = ".build_plugins-out.json"  # in the output folder: the files this script put there
MANIFEST = "plughost-plugins.tsv"  # written by CMakeLists.txt: target, source folder, file
TRUE_WORDS = {"1", "true", "yes", "on"}
TOOLCHAINS = ROOT / "host" / "plughost" / "cmake" / "toolchains"

#: --target names (as `plughost check --target` spells them) -> CMake toolchain file.
CROSS_TARGETS = {
    "linux-x86_64-musl": "x86_64-linux-musl.cmake",
    "linux-aarch64-musl": "aarch64-linux-musl.cmake",
    "linux-aarch64-gnu": "aarch64-linux-gnu.cmake",
}

# How a plugin's CMakeLists.txt asks for a third-party library; packages that are build tools
# or plughost's own are not libraries a plugin links.
_LOOKUP = re.compile(
    r"\b(find_package|find_library|pkg_check_modules|pkg_search_module)"
    r"\s*\(([^)]*)\)",
    re.I,
)
_NOT_LIBRARIES = {"plughost", "threads", "python", "python3", "pythoninterp", "pkgconfig"}
_PKG_KEYWORDS = {
    "REQUIRED",
    "QUIET",
    "NO_CMAKE_PATH",
    "NO_CMAKE_ENVIRONMENT_PATH",
    "IMPORTED_TARGET",
    "GLOBAL",
}


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
    p.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="CMake build folder (default build/cmake, or build/cmake-sanitize)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder that receives the .so files (default build/plugins, or "
        "build/plugins-sanitize)",
    )
    p.add_argument(
        "--only", nargs="+", metavar="NAME", default=None, help="build only these plugins"
    )
    p.add_argument(
        "--plugins-dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="another folder holding <name>/CMakeLists.txt plugin folders (repeatable)",
    )
    p.add_argument(
        "--sanitize",
        action="store_true",
        help="build with -fsanitize=address,undefined in separate folders",
    )
    p.add_argument(
        "--target",
        choices=sorted(CROSS_TARGETS),
        default=None,
        help="build for another platform with plughost/cmake/toolchains/ (default folders "
        "build/cmake-<target> and build/plugins-<target>); plugins that link a "
        "third-party library are skipped, with the reason",
    )
    p.add_argument(
        "--build-type", default="RelWithDebInfo", help="CMAKE_BUILD_TYPE (default RelWithDebInfo)"
    )
    p.add_argument(
        "--clean",
        action="store_true",
        help="delete the build folder (and the .so files this script put in the "
        "output folder) first",
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", help="print nothing unless something fails"
    )
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=os.cpu_count() or 2,
        help="parallel compile jobs (default: number of CPUs)",
    )
    args = p.parse_args(argv)
    if os.environ.get("PLUGHOST_SANITIZE", "").strip().lower() in TRUE_WORDS:
        args.sanitize = True
    if args.target and args.sanitize:
        p.error("--sanitize builds for this host only: leave out --target (or PLUGHOST_SANITIZE)")
    suffix = f"-{args.target}" if args.target else "-sanitize" if args.sanitize else ""
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
    settings: dict[str, object] = {
        "source": str(ROOT),
        "generator": _generator(),
        "cc": os.environ.get("CC", ""),
        "cflags": os.environ.get("CFLAGS", ""),
        "build_type": args.build_type,
        "sanitize": bool(args.sanitize),
        "plugins_dirs": [str(d) for d in args.plugins_dir],
        "hiredis_dir": str(getattr(args, "hiredis_dir", "")),
    }
    if getattr(args, "target", None):  # (absent for host builds: their stamps stay valid)
        settings["target"] = args.target
        settings["source"] = str(args.source)
        settings["skipped"] = sorted(args.skipped)
        settings["toolchain"] = str(TOOLCHAINS / CROSS_TARGETS[args.target])
        settings["zig"] = _pypi_zig() or ""
    return settings


def third_party_libraries(folder: Path) -> list[str]:
    """The third-party libraries a plugin folder's CMakeLists.txt looks up, e.g. ["OpenSSL",
    "libcrypt"]: what a --target build cannot link here (this machine has them for itself)."""
    try:
        text = (folder / "CMakeLists.txt").read_text(errors="replace")
    except OSError:
        return []
    text = re.sub(r"#.*", "", text)
    found: list[str] = []
    for m in _LOOKUP.finditer(text):
        kind, words = m.group(1).lower(), m.group(2).replace('"', " ").split()
        if not words:
            continue
        if kind == "find_package":
            names = words[:1]
        elif kind == "find_library":
            rest = words[1:]
            if rest[:1] == ["NAMES"]:
                rest = rest[1:]
            names = [f"lib{rest[0]}"] if rest and not rest[0].startswith("$") else []
        else:  # pkg_check_modules(PREFIX [options] modules...)
            names = [w for w in words[1:] if w not in _PKG_KEYWORDS]
        found += [n for n in names if n.lower() not in _NOT_LIBRARIES and n not in found]
    return found


def plugin_folders(args: argparse.Namespace) -> list[Path]:
    """Every plugin folder CMake will configure: native_plugins/* and --plugins-dir */."""
    roots = [ROOT / "native_plugins", *args.plugins_dir]
    return [f.parent for root in roots for f in sorted(root.glob("*/CMakeLists.txt"))]


def find_skipped(args: argparse.Namespace) -> dict[str, tuple[Path, str]]:
    """For a --target build: plugin folder name -> (folder, why it is left out)."""
    if not args.target:
        return {}
    skipped: dict[str, tuple[Path, str]] = {}
    for folder in plugin_folders(args):
        libs = third_party_libraries(folder)
        if libs:
            skipped[folder.name] = (
                folder,
                f"it links third-party libraries ({', '.join(libs)}) that this machine has "
                f"only for itself, not for {args.target}: build it natively (e.g. in the "
                "Dockerfile's builder stage)",
            )
    return skipped


def _link_tree(
    view: Path, source: Path, leave_out: set[str], own: frozenset[str] = frozenset()
) -> None:
    """Makes view/ hold a symlink to every entry of source/ but leave_out (and own: real
    folders the caller fills), removing anything else, so a plugin folder that appears or
    goes away in source/ does the same in view/."""
    view.mkdir(parents=True, exist_ok=True)
    want = {e.name: e for e in source.iterdir() if e.name not in leave_out | own}
    for entry in view.iterdir():
        if entry.name in own:
            continue
        target = want.get(entry.name)
        if target is not None and entry.is_symlink() and os.readlink(entry) == str(target):
            continue
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink()
        else:
            shutil.rmtree(entry)
    for name, target in want.items():
        if not (view / name).is_symlink():
            (view / name).symlink_to(target)


def source_view(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """For a --target build: the source tree CMake configures (a folder of symlinks to this
    one whose native_plugins/ leaves the skipped plugins out) and the --plugins-dir views."""
    view = args.build_dir.parent / f"{args.build_dir.name}-source"
    leave_out = {folder.name for folder, _ in args.skipped.values()}
    _link_tree(view, ROOT, set(), own=frozenset({"native_plugins", "extra"}))
    _link_tree(view / "native_plugins", ROOT / "native_plugins", leave_out)
    extras = []
    for i, d in enumerate(args.plugins_dir):
        extras.append(view / "extra" / str(i))
        _link_tree(extras[-1], d, leave_out)
    return view, extras


def _pypi_zig() -> str | None:
    """The zig program of this Python's ziglang package (PyPI), for the zig toolchains."""
    import importlib.util

    spec = importlib.util.find_spec("ziglang")
    if spec is None or not spec.origin:
        return None
    zig = Path(spec.origin).parent / "zig"
    return str(zig) if zig.is_file() else None


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )


def fetch_third_party(args: argparse.Namespace) -> None:
    """The C sources plugins compile in (tools/fetch_hiredis.py: hiredis for valkey)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "fetch_hiredis", ROOT / "tools" / "fetch_hiredis.py"
    )
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
    # CMake caches these at first run (the toolchain file chooses the compiler).
    fresh_keys = ("source", "generator", "cc", "cflags", "target", "toolchain", "zig")
    if have is not None and any(have.get(k) != want.get(k) for k in fresh_keys):
        # CMake cannot switch generator or compiler in place: start this folder afresh.
        shutil.rmtree(build)
    build.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    extra_dirs = args.extra_dirs if args.target else args.plugins_dir
    cmd = [
        "cmake",
        "-S",
        str(want["source"]),
        "-B",
        str(build),
        "-G",
        str(want["generator"]),
        f"-DCMAKE_BUILD_TYPE={args.build_type}",
        f"-DPLUGHOST_SANITIZE={'ON' if args.sanitize else 'OFF'}",
        "-DPLUGHOST_EXTRA_PLUGIN_DIRS=" + ";".join(str(d) for d in extra_dirs),
        f"-DPLUGHOST_HIREDIS_DIR={want['hiredis_dir']}",
    ]
    if args.target:
        cmd.append(f"-DCMAKE_TOOLCHAIN_FILE={want['toolchain']}")
        # The toolchain files search packages only under the target's root (never this
        # machine's /usr): name the plughost package's folder, which is not a target library.
        cmd.append(f"-Dplughost_DIR={ROOT / 'host' / 'plughost' / 'cmake'}")
        if want["zig"]:
            cmd.append(f"-DPLUGHOST_ZIG={want['zig']}")
    if not args.quiet:
        what = f" for {args.target}" if args.target else ""
        print(f"  configuring {_shown(build)}{what}", flush=True)
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
        name, source, file = line.split("\t")[:3]
        plugins[name] = Plugin(name, Path(source), Path(file))
    return plugins


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


_PROGRESS = re.compile(r"^(\[\d+/\d+\] |\[\s*\d+%\] )")
_TARGET_DIR = re.compile(r"CMakeFiles/([^/\s]+)\.dir/")


def build(
    args: argparse.Namespace, plugins: dict[str, Plugin], names: list[str]
) -> tuple[set[str], str]:
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
    by_file = {
        str(p.file.relative_to(args.build_dir)): n
        for n, p in plugins.items()
        if p.file.is_relative_to(args.build_dir)
    }
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
        args.skipped = find_skipped(args)
        if "valkey" not in args.skipped:  # (a --target build leaves valkey out: no fetch)
            fetch_third_party(args)
        if args.only and any(n in args.skipped for n in args.only):
            raise BuildError(
                "; ".join(
                    f"{n} cannot be built for {args.target}: {args.skipped[n][1]}"
                    for n in dict.fromkeys(args.only)
                    if n in args.skipped
                )
            )
        if args.target:
            args.source, args.extra_dirs = source_view(args)
        configure(args)
        plugins = read_manifest(args.build_dir)
        if args.only:
            unknown = [n for n in args.only if n not in plugins]
            if unknown:  # maybe a plugin folder that appeared since the last configure
                configure(args, force=True)
                plugins = read_manifest(args.build_dir)
                unknown = [n for n in args.only if n not in plugins]
            if unknown:
                raise BuildError(
                    f"no plugin named {', '.join(unknown)} "
                    f"(known: {', '.join(sorted(plugins)) or 'none'})"
                )
        names = list(dict.fromkeys(args.only)) if args.only else sorted(plugins)
        before = {n: _mtime(plugins[n].file) for n in names}

        failed, output = build(args, plugins, names)
        # The build may have re-run CMake (a new plugin folder): read the list again.
        plugins = read_manifest(args.build_dir)
        if not args.only:
            names = sorted(plugins)
        ok = [
            plugins[n]
            for n in names
            if n in plugins and n not in failed and plugins[n].file.is_file()
        ]
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
        for name, (folder, why) in sorted(args.skipped.items()):
            if not args.only:
                print(f"  skipped {name}  ({_shown(folder)}): {why}")
    if failed:
        shown = [line for line in output.splitlines() if not _PROGRESS.match(line)]
        sys.stderr.write("\n".join(shown).rstrip() + "\n")
        known = sorted(n for n in failed if n in plugins)
        if known:
            what = ", ".join(f"{n} ({plugins[n].shown_dir})" for n in known)
            noun = "plugin" if len(known) == 1 else "plugins"
            print(
                f"build_plugins: FAILED to build {noun} {what}; the compiler's output is above",
                file=sys.stderr,
            )
        else:
            print("build_plugins: FAILED: the build stopped; its output is above", file=sys.stderr)
        return 1
    if not args.quiet:
        target = f" for {args.target}" if args.target else ""
        print(
            f"build_plugins: {len(ok)} plugin{'s' if len(ok) != 1 else ''}{target} in "
            f"{_shown(args.out)}  ({time.monotonic() - started:.1f} s)"
        )
        if args.sanitize:
            hint = _sanitizer_hint(args.build_dir)
            if hint:
                print(f"  load them from an unsanitized host with {hint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
