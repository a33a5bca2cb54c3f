"""The ``plughost`` command line: ``check`` and ``info``."""

from __future__ import annotations

import json
import platform as pyplatform
import sys
from pathlib import Path

import click

from . import __version__

PACKAGE_DIR = Path(__file__).resolve().parent

# Exit statuses of `plughost check`.
EXIT_OK, EXIT_INCOMPATIBLE, EXIT_USAGE = 0, 1, 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plughost")
def main() -> None:
    """plughost: a native-plugin API gateway host."""


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--pattern", default=".so", show_default=True,
              help="In folders, check files whose name ends with this (or matches it, with * ?).")
@click.option("--target", default="host", show_default=True,
              help="Platform to check against: host, linux-x86_64-gnu[-2.NN], linux-x86_64-musl "
                   "(the Alpine image), linux-aarch64-gnu[-2.NN], linux-aarch64-musl.")
@click.option("--load", is_flag=True,
              help="Also load and initialise each plugin, in a child process.")
@click.option("--timeout", default=10.0, show_default=True, type=float,
              help="Seconds the --load test may take per plugin.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for tools.")
def check(paths: tuple[str, ...], pattern: str, target: str, load: bool, timeout: float,
          as_json: bool) -> None:
    """Tells whether each plugin file is loadable on this host (or --target), and why not.

    PATHS are plugin files or folders (KrakenD style, with --pattern). Exit status: 0 all
    compatible, 1 some incompatible, 2 usage error.
    """
    from .check import UsageError, check_files, expand_paths
    from .targets import UnknownTargetError, parse_target

    try:
        platform = parse_target(target)
        if load and target != "host":
            raise UsageError(f"--load runs plugins on this host, so it cannot be combined with "
                             f"--target {target}")
        files = expand_paths(list(paths), pattern)
    except (UsageError, UnknownTargetError) as exc:
        click.echo(f"plughost check: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    verdicts = check_files(files, platform, host_abi=_host_abi(), load=load, timeout=timeout)
    if as_json:
        click.echo(json.dumps({"target": platform.name, "abi": "%d.%d" % _host_abi(),
                               "compatible": all(v.ok for v in verdicts),
                               "plugins": [v.to_json() for v in verdicts]}, indent=2))
    else:
        for verdict in verdicts:
            if verdict.ok:
                click.echo(f"ok    {verdict.path}: {_describe(verdict)}")
            else:
                for problem in verdict.problems:
                    click.echo(f"FAIL  {verdict.path}: {problem.message}")
        good = sum(v.ok for v in verdicts)
        what = "loadable" if load else "compatible"
        click.echo(f"{good} of {len(verdicts)} plugin(s) {what} with {platform.name}")
    sys.exit(EXIT_OK if all(v.ok for v in verdicts) else EXIT_INCOMPATIBLE)


def _describe(verdict: "object") -> str:
    note = getattr(verdict, "info").note or {}
    parts = [f"ABI {note.get('abi', '?')}", note.get("arch", "?"), note.get("libc", "?")]
    loaded = getattr(verdict, "loaded")
    if loaded:
        parts.insert(0, f"plugin {loaded['name']} {loaded.get('version') or ''}".rstrip())
        parts.append(f"{len(loaded['types'])} type(s) loaded and initialised")
    return "compatible (" + ", ".join(parts) + ")"


def _host_abi() -> tuple[int, int]:
    from .runtime import default_runtime

    return default_runtime().abi


@main.command()
@click.option("--cmake-dir", is_flag=True,
              help="Print only the directory to add to CMAKE_PREFIX_PATH for find_package(plughost).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for tools.")
def info(cmake_dir: bool, as_json: bool) -> None:
    """Prints the host's ABI version, platform, C library, and where the SDK lives."""
    import cffi

    from .targets import host_platform

    if cmake_dir:
        click.echo(PACKAGE_DIR / "cmake")
        return
    here = host_platform()
    major, minor = _host_abi()
    libc = here.libc + (f" {here.libc_version[0]}.{here.libc_version[1]}"
                        if here.libc_version else "")
    facts = {
        "plughost": __version__,
        "abi": f"{major}.{minor}",
        "platform": here.name,
        "arch": here.arch,
        "bits": here.bits,
        "endian": here.endian,
        "libc": libc,
        "python": pyplatform.python_version(),
        "cffi": cffi.__version__,
        "header": str(PACKAGE_DIR / "include" / "plugin.h"),
        "cmake_dir": str(PACKAGE_DIR / "cmake"),
    }
    if as_json:
        click.echo(json.dumps(facts, indent=2))
    else:
        width = max(map(len, facts))
        for key, value in facts.items():
            click.echo(f"{key + ':':<{width + 1}} {value}")
