"""Shared helpers for the benchmark scripts: finding (or building) the test plugins, writing
a plughost configuration folder, reading RSS, checking optional imports, free ports.

Not a benchmark itself; the scripts next to it import it (``python bench/<script>.py``
puts ``bench/`` on ``sys.path``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import socket
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PLUGIN_DIR = REPO / "build" / "bench-plugins"
PLUGINS = ("memory", "requestid", "static", "trace", "noop")
TRACE = "plugins.trace.middlewares.TraceMiddleware"
NOOP = "plugins.noop.middlewares.NoopMiddleware"
HEADER = "plugins.noop.middlewares.HeaderMiddleware"
#: The body every benchmarked endpoint answers with (same bytes for every server).
HELLO_BODY = "hello, world"


def require(*modules: str, install: str | None = None) -> None:
    """Exits with a clear 'pip install ...' line when an optional module is missing."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        what = install or " ".join(missing)
        sys.exit(
            f"{Path(sys.argv[0]).name}: missing Python module(s) {', '.join(missing)}: "
            f"run `{sys.executable} -m pip install {what}`"
        )


def plugin_dir(path: str | None) -> Path:
    """The folder holding the plugins the benchmarks load (memory, requestid, static from
    native_plugins/, trace from tests/native_plugins/, noop from bench/plugins/).

    Without ``path``, runs build_plugins.py into build/bench-plugins first (a no-op when
    up to date)."""
    if path:
        folder = Path(path)
        missing = [f"{n}.so" for n in PLUGINS if not (folder / f"{n}.so").is_file()]
        if missing:
            sys.exit(f"plugin folder {folder} lacks {', '.join(missing)}")
        return folder
    folder = DEFAULT_PLUGIN_DIR
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "build_plugins.py"),
            "--plugins-dir",
            str(REPO / "tests" / "native_plugins"),
            "--plugins-dir",
            str(REPO / "bench" / "plugins"),
            "--build-dir",
            str(REPO / "build" / "cmake-bench"),
            "--out",
            str(folder),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"building the plugins failed:\n{done.stdout}{done.stderr}")
    return folder


def write_config(
    folder: Path,
    plugins: Path,
    *,
    chains: dict[str, list[str]],
    middlewares: dict[str, tuple[str, str]],
    action: str = "Hello",
) -> Path:
    """A Seam configuration folder loading the five plugins, with a Memory storage, the
    given middlewares (name -> (type id, inline YAML config or "")), the static Hello action
    (200 text/plain HELLO_BODY), the Echo action, and one GET/POST route per ``chains``
    entry (path -> middleware names) ending in ``action``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugins.yaml").write_text(
        "plugins:\n" + "".join(f"  - path: {plugins / name}.so\n" for name in PLUGINS)
    )
    (folder / "storages.yaml").write_text(
        "storages:\n  Memory:\n    use: plugins.memory.storages.MemoryStorage\n"
    )
    lines = ["middlewares:"]
    for name, (use, config) in middlewares.items():
        lines += [f"  {name}:", f"    use: {use}"] + ([f"    config: {config}"] if config else [])
    (folder / "middlewares.yaml").write_text("\n".join(lines) + "\n")
    (folder / "actions.yaml").write_text(f"""\
actions:
  Hello:
    use: plugins.static.actions.StaticAction
    config:
      status: 200
      contentType: text/plain
      body: "{HELLO_BODY}"
  Echo:
    use: plugins.trace.actions.EchoAction
""")
    routes = ["routes:"]
    for i, (path, names) in enumerate(chains.items()):
        routes += [
            f"  R{i}:",
            f"    gatewayPath: {path}",
            "    methods: [GET, POST]",
            f"    middlewares: [{', '.join(names)}]",
            f"    action: {action}",
        ]
    (folder / "routes.yaml").write_text("\n".join(routes) + "\n")
    return folder


def wrk_timing(args: argparse.Namespace) -> tuple[str, str, int]:
    """(wrk -d of each measured run, wrk -d of the warm-up, the measured rounds) from the
    options --duration, --warmup (where a script has it) and --rounds, else their defaults:
    10s, 3s and 5, or 2s, 1s and 1 with --quick."""
    duration = args.duration or ("2s" if args.quick else "10s")
    warmup = getattr(args, "warmup", None) or ("1s" if args.quick else "3s")
    rounds = args.rounds or (1 if args.quick else 5)
    return duration, warmup, rounds


def requestid() -> dict[str, tuple[str, str]]:
    return {"RequestID": ("plugins.requestid.middlewares.RequestIdMiddleware", "")}


def traces(names: list[str]) -> dict[str, tuple[str, str]]:
    return {name: (TRACE, f"{{name: {name}}}") for name in names}


def noops(names: list[str]) -> dict[str, tuple[str, str]]:
    return {name: (NOOP, "") for name in names}


def header_ops(names: list[str], op: str) -> dict[str, tuple[str, str]]:
    """bench/plugins/noop HeaderMiddleware instances: one header get or set per phase."""
    return {name: (HEADER, f"{{op: {op}}}") for name in names}


def rss_kib() -> int:
    """VmRSS of this process in KiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> str:
    """One line describing where the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPU(s), Python {platform.python_version()} "
        f"({sys.implementation.name}), {platform.system()} {platform.release()}"
    )


#: Metrics may cost at most this much of plughost's req/s (issue "Operating it").
GOAL_METRICS = 0.95


def metrics_argv(port: int) -> list[str]:
    """What turns plughost's metrics on for a benchmark run: an admin listener on ``port``."""
    return ["--metrics-address", f"127.0.0.1:{port}"]


def metrics_cost(plain: list[Any], with_metrics: list[Any]) -> str:
    """The line comparing req/s with metrics on to without (WrkResult-like rounds)."""
    med = statistics.median
    ratio = med(r.rps for r in with_metrics) / med(r.rps for r in plain)
    rounds = ", ".join(f"{a.rps / b.rps:.2f}" for a, b in zip(with_metrics, plain))
    verdict = "meets" if ratio >= GOAL_METRICS else "MISSES"
    return (
        f"with metrics / without = {ratio:5.2f} of the medians' req/s (goal >= {GOAL_METRICS}: "
        f"{verdict}; per round: {rounds})"
    )
