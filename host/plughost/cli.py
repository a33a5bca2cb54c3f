"""The ``plughost`` command line: ``check``, ``serve``, ``reload``, ``plugins``, ``describe``,
``schema``, ``new`` and ``info``."""

from __future__ import annotations

import json
import os
import platform as pyplatform
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import printable

PACKAGE_DIR = Path(__file__).resolve().parent

# Exit statuses of `plughost check`.
EXIT_OK, EXIT_INCOMPATIBLE, EXIT_USAGE = 0, 1, 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plughost")
def main() -> None:
    """plughost: a native-plugin API gateway host."""


@main.command()
@click.argument("paths", nargs=-1)
@click.option(
    "--pattern",
    default=".so",
    show_default=True,
    help="In folders, check files whose name ends with this (or matches it, with * ?).",
)
@click.option(
    "--target",
    default="host",
    show_default=True,
    help="Platform to check against: host, linux-x86_64-gnu[-2.NN], linux-x86_64-musl "
    "(the Alpine image), linux-aarch64-gnu[-2.NN], linux-aarch64-musl.",
)
@click.option(
    "--load", is_flag=True, help="Also load and initialise each plugin, in a child process."
)
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=float,
    help="Seconds the --load test may take per plugin.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for tools.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(),
    help="Check a whole Seam configuration (folder or file) instead: plugins, names, "
    "routes and every instance's config; all problems at once.",
)
def check(
    paths: tuple[str, ...],
    pattern: str,
    target: str,
    load: bool,
    timeout: float,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Tells whether each plugin file is loadable on this host (or --target), and why not.

    PATHS are plugin files or folders (KrakenD style, with --pattern). With --config, checks
    a configuration instead. Exit status: 0 all compatible, 1 some incompatible, 2 usage
    error.
    """
    from .checking.check import UsageError, check_config, check_files, expand_paths
    from .checking.targets import UnknownTargetError, parse_target

    if config_path is not None:
        if paths:
            click.echo("plughost check: give either plugin paths or --config, not both", err=True)
            sys.exit(EXIT_USAGE)
        if not os.path.exists(config_path):
            click.echo(f"plughost check: {config_path}: no such file or folder", err=True)
            sys.exit(EXIT_USAGE)
        problems = check_config(config_path, timeout=max(timeout, 60.0))
        if as_json:
            click.echo(
                json.dumps(
                    {"config": config_path, "ok": not problems, "problems": problems}, indent=2
                )
            )
        else:
            for line in problems:
                click.echo(printable(line))
            click.echo(
                printable(
                    f"{len(problems)} problem(s) in {config_path}"
                    if problems
                    else f"ok    {config_path}: the gateway builds with this configuration"
                )
            )
        sys.exit(EXIT_INCOMPATIBLE if problems else EXIT_OK)

    try:
        platform = parse_target(target)
        if load and target != "host":
            raise UsageError(
                f"--load runs plugins on this host, so it cannot be combined with --target {target}"
            )
        files = expand_paths(list(paths), pattern)
    except (UsageError, UnknownTargetError) as exc:
        click.echo(f"plughost check: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    verdicts = check_files(files, platform, host_abi=_host_abi(), load=load, timeout=timeout)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "target": platform.name,
                    "abi": "%d.%d" % _host_abi(),
                    "compatible": all(v.ok for v in verdicts),
                    "plugins": [v.to_json() for v in verdicts],
                },
                indent=2,
            )
        )
    else:
        for verdict in verdicts:
            if verdict.ok:
                click.echo(printable(f"ok    {verdict.path}: {_describe(verdict)}"))
            else:
                for problem in verdict.problems:
                    click.echo(printable(f"FAIL  {verdict.path}: {problem.message}"))
        good = sum(v.ok for v in verdicts)
        what = "loadable" if load else "compatible"
        click.echo(f"{good} of {len(verdicts)} plugin(s) {what} with {platform.name}")
    sys.exit(EXIT_OK if all(v.ok for v in verdicts) else EXIT_INCOMPATIBLE)


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True),
    help="A Seam configuration folder or file (default: the embedded configuration).",
)
@click.option("--address", help="HOST:PORT to listen on (default: server.address of the config).")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Worker processes; each loads the plugins itself (default: one per core "
    "when server.prefork is true, as in Seam, else 1).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option(
    "--metrics-address",
    help="HOST:PORT of the admin listener that serves Prometheus metrics at /metrics "
    "(default: server.metricsAddress of the config; neither: no metrics).",
)
@click.option(
    "--pid-file",
    type=click.Path(dir_okay=False),
    help="Write the supervisor's process id here while it serves (for plughost reload).",
)
@click.option(
    "--no-direct-path",
    is_flag=True,
    help="Serve every request through the ASGI app, also the plain requests "
    "plughost's HTTP protocol answers directly (same answers, slower).",
)
def serve(
    config_path: str | None,
    address: str | None,
    workers: int | None,
    log_level: str,
    metrics_address: str | None,
    pid_file: str | None,
    no_direct_path: bool,
) -> None:
    """Runs the gateway (uvicorn with uvloop and httptools).

    The configuration is validated first; every problem is printed with its file, line and
    key, and nothing starts until there are none.
    """
    from .serving.server import ServeError, serve as run_server

    try:
        run_server(
            config_path,
            address=address,
            workers=workers,
            log_level=log_level,
            metrics_address=metrics_address,
            pid_file=pid_file,
            direct_path=not no_direct_path,
        )
    except ServeError as exc:
        for line in exc.lines:
            click.echo(line, err=True)
        sys.exit(EXIT_INCOMPATIBLE)


@main.command()
@click.option("--pid", type=int, help="The process id of plughost serve (its supervisor).")
@click.option(
    "--pid-file",
    type=click.Path(dir_okay=False),
    help="The file plughost serve --pid-file wrote.",
)
def reload(pid: int | None, pid_file: str | None) -> None:
    """Reloads a running gateway without dropping a request (as SIGHUP does).

    plughost serve checks the configuration again; when it has problems, each is logged and
    the running configuration stays. Otherwise every worker builds the new configuration
    beside the running one — plugins loaded anew, a plugin file replaced on disk as its new
    version —, serves new requests with it and destroys the old one once its requests and
    WebSocket sessions are done. Name the server with --pid or --pid-file.
    """
    from .serving.server import ServeError, signal_reload

    try:
        target = signal_reload(pid, pid_file)
    except ServeError as exc:
        for line in exc.lines:
            click.echo(line, err=True)
        sys.exit(EXIT_INCOMPATIBLE)
    click.echo(
        f"plughost: asked plughost serve [{target}] to reload; its log says whether the new "
        "configuration was taken"
    )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for tools.")
def plugins(as_json: bool) -> None:
    """Lists the plugins a configuration can name (``- name: NAME``): bundled ones,
    installed plugin wheels and $PLUGHOST_PLUGIN_DIR folders.

    Shows each plugin's name, its own version and ABI (read from the file: no plugin code
    runs), where it came from and its file; a plugin another one hides is marked. Exit
    status: 0, or 1 when an entry point is broken, a name is ambiguous, or a file's plugin
    calls itself by another name.
    """
    from .checking.elfinspect import ElfInspectionError, inspect_elf, read_plugin_identity
    from .installed import PluginNameError, plugin_index

    index = plugin_index()
    rows: list[dict[str, Any]] = []
    problems = list(index.problems)
    for plugin in index.plugins:
        try:
            abi = (inspect_elf(plugin.file).note or {}).get("abi", "?")
        except ElfInspectionError:
            abi = "?"
        identity = read_plugin_identity(plugin.file)
        if identity.name is not None and identity.name != plugin.name:
            problems.append(
                f"{plugin.file} ({plugin.origin}) is installed as '{plugin.name}' "
                f"but the plugin in it is named '{identity.name}': its types are "
                f"plugins.{identity.name}.*; rename the file or fix the plugin"
            )
        try:
            resolves = index.find(plugin.name) == plugin
        except PluginNameError as exc:
            resolves = False
            if str(exc) not in problems:
                problems.append(str(exc))
        rows.append(
            {
                **plugin.to_json(),
                "version": identity.version or "",
                "abi": abi,
                "resolves": resolves,
            }
        )
    if as_json:
        click.echo(json.dumps({"plugins": rows, "problems": problems}, indent=2))
    else:
        table = [("NAME", "VERSION", "ABI", "FROM", "FILE")] + [
            (
                r["name"] + ("" if r["resolves"] else " (hidden)"),
                r["version"] or "-",
                r["abi"],
                r["origin"],
                r["file"],
            )
            for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(4)]
        for row in table:
            click.echo(
                printable("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + "  " + row[4])
            )
        if not rows:
            click.echo("no plugin is installed")
        for problem in problems:
            click.echo(printable(f"problem: {problem}"), err=True)
    sys.exit(EXIT_INCOMPATIBLE if problems else EXIT_OK)


@main.command()
@click.argument("plugins", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for tools.")
def describe(plugins: tuple[str, ...], as_json: bool) -> None:
    """Prints each plugin's types and the options every type takes: kind, default (or
    required, with bounds) and description, from the schemas plugins declare.

    PLUGINS are plugin files, names of installed plugins (as `plughost plugins` lists
    them), or Python modules declaring types, written module:pkg.mod. A plugin is checked and
    opened but not initialised. Exit status: 0, 1 when a plugin cannot be described (the
    reason is printed), 2 usage error.
    """
    from .describe import describe_text, plugin_to_json
    from .errors import PlughostError
    from .installed import PluginNameError, find_plugin
    from .loading.loader import Host
    from .sdk.pymodules import ModuleError, load_module

    described: list[Any] = []
    failed = False
    with Host() as host:
        for given in plugins:
            if given.startswith("module:"):
                try:
                    described.append(load_module(given.removeprefix("module:"), Path.cwd()))
                except ModuleError as exc:
                    click.echo(printable(f"plughost describe: {exc}"), err=True)
                    failed = True
                continue
            path = given
            if "/" not in given and not given.endswith(".so"):
                try:
                    path = str(find_plugin(given).file)
                except PluginNameError as exc:
                    click.echo(printable(f"plughost describe: {exc}"), err=True)
                    failed = True
                    continue
            try:
                described.append(host.describe_plugin(path))
            except PlughostError as exc:
                click.echo(
                    printable(f"plughost describe: {path}: {getattr(exc, 'reason', exc)}"), err=True
                )
                failed = True
        if as_json:
            click.echo(json.dumps({"plugins": [plugin_to_json(p) for p in described]}, indent=2))
        else:
            text = "\n\n".join(describe_text(p) for p in described)
            for line in text.splitlines():
                click.echo(printable(line))
    sys.exit(EXIT_INCOMPATIBLE if failed else EXIT_OK)


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True),
    help="Also describe the plugins this configuration lists by path.",
)
def schema(config_path: str | None) -> None:
    """Prints a JSON Schema of plughost's configuration files, for editors.

    It covers Seam's folder layout and the one-file layout, and the options of every type
    of every installed plugin (`plughost plugins`) and, with --config, of the plugins that
    configuration lists. Point your editor's YAML language server at it (see the README).
    Exit status: 0, 1 when a plugin could not be described (the schema leaves it out).
    """
    from .config import ConfigErrors, load_config
    from .configschema import configuration_schema
    from .errors import PlughostError
    from .installed import plugin_index
    from .loading.loader import Host
    from .sdk.pymodules import ModuleError, load_module

    paths: dict[str, str] = {}
    modules: list[Any] = []
    index = plugin_index()
    for plugin in index.plugins:
        try:
            if index.find(plugin.name) == plugin:
                paths.setdefault(str(plugin.file), plugin.name)
        except LookupError:
            pass
    failed = False
    if config_path is not None:
        try:
            loaded = load_config(config_path)
            for spec in loaded.plugins:
                paths.setdefault(str(spec.path), spec.path.name)
            folder = loaded.source if loaded.source.is_dir() else loaded.source.parent
            for module in loaded.modules:
                try:
                    modules.append(load_module(module.module, folder))
                except ModuleError as exc:
                    click.echo(printable(f"plughost schema: {exc}"), err=True)
                    failed = True
        except ConfigErrors as exc:
            click.echo(
                printable(
                    f"plughost schema: {config_path} has {len(exc.problems)} "
                    "problem(s) (plughost check --config shows them): its "
                    "plugins are left out"
                ),
                err=True,
            )
            failed = True
    described: list[Any] = []
    with Host() as host:
        for path in paths:
            try:
                described.append(host.describe_plugin(path))
            except PlughostError as exc:
                click.echo(
                    printable(f"plughost schema: {path}: {getattr(exc, 'reason', exc)}"), err=True
                )
                failed = True
        click.echo(json.dumps(configuration_schema(described + modules), indent=2))
    sys.exit(EXIT_INCOMPATIBLE if failed else EXIT_OK)


@main.command()
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    default=".",
    show_default=True,
    type=click.Path(),
    help="Folder in which to create the project folder NAME.",
)
def new(name: str, parent: str) -> None:
    """Scaffolds a plugin project NAME/ that builds against the installed SDK.

    It holds CMakeLists.txt (find_package(plughost) + plughost_add_plugin), NAME.c with a
    storage, a middleware and an action, gateway.yaml using them, pyproject.toml that makes
    `pip wheel .` build a plugin wheel (named '- name: NAME' once installed), and a README. NAME is
    made of lowercase letters, digits and '_', starting with a letter. An existing folder
    is never overwritten. Exit status: 0 created, 2 refused.
    """
    from .sdk.scaffold import ScaffoldError, create_project, next_steps

    try:
        project = create_project(name, parent)
    except ScaffoldError as exc:
        click.echo(f"plughost new: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(next_steps(project))


def _describe(verdict: Any) -> str:
    note = verdict.info.note or {}
    parts = [f"ABI {note.get('abi', '?')}", note.get("arch", "?"), note.get("libc", "?")]
    loaded = verdict.loaded
    if loaded:
        parts.insert(0, f"plugin {loaded['name']} {loaded.get('version') or ''}".rstrip())
        parts.append(f"{len(loaded['types'])} type(s) loaded and initialised")
    return "compatible (" + ", ".join(parts) + ")"


def _host_abi() -> tuple[int, int]:
    from .loading.runtime import default_runtime

    return default_runtime().abi


@main.command()
@click.option(
    "--cmake-dir",
    is_flag=True,
    help="Print only the directory to add to CMAKE_PREFIX_PATH for find_package(plughost).",
)
@click.option(
    "--plugins-dir",
    is_flag=True,
    help="Print only the folder of the plugins bundled with plughost.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for tools.")
def info(cmake_dir: bool, plugins_dir: bool, as_json: bool) -> None:
    """Prints the host's ABI version, platform, C library, and where the SDK and the bundled
    plugins live."""
    import cffi

    from .checking.targets import host_platform
    from .installed import bundled_plugin_dir

    if cmake_dir:
        click.echo(PACKAGE_DIR / "cmake")
        return
    if plugins_dir:
        click.echo(bundled_plugin_dir())
        return
    here = host_platform()
    major, minor = _host_abi()
    libc = here.libc + (
        f" {here.libc_version[0]}.{here.libc_version[1]}" if here.libc_version else ""
    )
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
        "toolchains": str(PACKAGE_DIR / "cmake" / "toolchains"),
        "plugins_dir": str(bundled_plugin_dir()),
    }
    if as_json:
        click.echo(json.dumps(facts, indent=2))
    else:
        width = max(map(len, facts))
        for key, value in facts.items():
            click.echo(f"{key + ':':<{width + 1}} {value}")
