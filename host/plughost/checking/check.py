"""``plughost check``: is each plugin loadable on this host (or a named target), and why not.

Static checks read the file only (no plugin code runs). With ``load=True`` each plugin
that passed them is also loaded and initialised in a child process, so a plugin that
crashes or hangs is reported instead of taking the checker down.
"""

from __future__ import annotations

from typing import Any

import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .elfinspect import ElfInfo
from .staticcheck import Problem, static_check
from .targets import Platform

DEFAULT_PATTERN = ".so"
DEFAULT_LOAD_TIMEOUT = 10.0


@dataclass
class Verdict:
    """The outcome for one plugin file."""

    path: str
    problems: list[Problem] = field(default_factory=list)
    info: ElfInfo | None = None
    loaded: dict[str, Any] | None = None  # what the load test learnt (name, types ...)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        note = self.info.note if self.info else None
        return {
            "path": self.path,
            "compatible": self.ok,
            "problems": [{"code": p.code, "message": p.message} for p in self.problems],
            "note": note,
            "load": self.loaded,
        }


class UsageError(Exception):
    """The command line names nothing to check, or something that does not exist."""


def expand_paths(paths: list[str], pattern: str = DEFAULT_PATTERN) -> list[str]:
    """Files as given, folders expanded KrakenD-style: files whose name ends with
    ``pattern`` (or matches it, when it holds a wildcard), sorted."""
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                str(p) for p in path.iterdir() if p.is_file() and _matches(p.name, pattern)
            )
            if not found:
                raise UsageError(
                    f"no files matching '{pattern}' in folder {raw}: pass "
                    "--pattern, or the plugin files themselves"
                )
            files.extend(found)
        elif path.exists():
            files.append(raw)
        else:
            raise UsageError(f"{raw}: no such file or folder")
    if not files:
        raise UsageError("nothing to check: name plugin files or folders")
    return files


def _matches(name: str, pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatch(name, pattern)
    return name.endswith(pattern)


def check_files(
    files: list[str],
    target: Platform,
    *,
    host_abi: tuple[int, int],
    load: bool = False,
    timeout: float = DEFAULT_LOAD_TIMEOUT,
) -> list[Verdict]:
    """Checks every file against ``target``; with ``load``, also loads each in a child."""
    verdicts = []
    for path in files:
        report = static_check(path, target, host_abi=host_abi)
        verdicts.append(Verdict(path, list(report.problems), report.info))
    if load:
        for verdict in verdicts:
            if verdict.ok:
                _load_in_child(verdict, timeout)
        _check_duplicate_types(verdicts)
    return verdicts


def _load_in_child(verdict: Verdict, timeout: float) -> None:
    cmd = [sys.executable, "-m", "plughost.checking.probe", os.path.abspath(verdict.path)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        verdict.problems.append(
            Problem(
                "load-timeout",
                f"loading and initialising it did not "
                f"finish within {timeout:g} s: its init hook hangs; "
                "run it under gdb to see where",
            )
        )
        return
    if proc.returncode < 0:
        name = _signal_name(-proc.returncode)
        verdict.problems.append(
            Problem(
                "load-crash",
                f"crashed with {name} while loading or "
                "initialising: run it under valgrind or gdb, or rebuild "
                "with PLUGHOST_SANITIZE=1 to find the bug",
            )
        )
        return
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        verdict.problems.append(
            Problem("load-failed", f"the load test exited with status {proc.returncode} ({detail})")
        )
        return
    if result.get("ok"):
        verdict.loaded = result
    else:
        verdict.problems.append(
            Problem(str(result.get("code", "load")), str(result.get("message")))
        )


_CRASH_LINE = re.compile(r"crashed with \S+ (in .+?|outside any plugin hook): the worker ends")


def _crash_sentence(path: str, signal_number: int, stderr: str) -> str:
    """What to say of a configuration check that died of a signal, from the crash report
    the child wrote: the element and plugin whose hook was running, or plughost itself."""
    name = _signal_name(signal_number)
    match = _CRASH_LINE.search(stderr)
    if match is None:
        return (
            f"{path}: building the gateway crashed with {name}: run `plughost check "
            "--load` on each plugin to find whether one of them is the cause"
        )
    if match[1] == "outside any plugin hook":
        return (
            f"{path}: plughost itself crashed with {name} while building the gateway (no "
            "plugin hook was running): this is a defect in plughost, please report it "
            "with the configuration"
        )
    return (
        f"{path}: a plugin crashed with {name} while the gateway was built, {match[1]}: "
        "fix or remove that plugin, or check it with `plughost check --load`"
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _check_duplicate_types(verdicts: list[Verdict]) -> None:
    owners: dict[str, str] = {}
    for verdict in verdicts:
        if not verdict.loaded:
            continue
        for type_id in verdict.loaded.get("types", {}):
            if type_id in owners:
                verdict.problems.append(
                    Problem(
                        "duplicate-type",
                        f"declares type id "
                        f"'{type_id}', already declared by "
                        f"{owners[type_id]}: load only one of the two "
                        "plugins, or rename the type",
                    )
                )
            else:
                owners[type_id] = verdict.path


def check_config(path: str, *, timeout: float = 60.0) -> list[str]:
    """Every problem of a configuration (files, lines, keys), found by building the gateway
    in a child process: a plugin that crashes in init is reported, not fatal."""
    cmd = [sys.executable, "-m", "plughost.checking.probe", "--config", os.path.abspath(path)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return [
            f"{path}: building the gateway did not finish within {timeout:g} s: a plugin's "
            "init or create hook hangs"
        ]
    if proc.returncode < 0:
        return [_crash_sentence(path, -proc.returncode, proc.stderr)]
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return [f"{path}: the configuration check exited with status {proc.returncode} ({detail})"]
    return [str(p) for p in result.get("problems", [])]
