"""Shared pieces of the HTTP benchmarks: a server child process pinned to a core (started,
waited for, measured and stopped by PID) and one ``wrk`` run parsed into figures.

Not a benchmark itself; bench/http_throughput.py and bench/stateful_storage.py import it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


@dataclass
class Server:
    """One server child process; ``url`` is what wait_ready() polls for a 200."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    ready_path: str = "/"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.ready_path}"

    def start(self, logdir: Path, core: str) -> None:
        self.log = logdir / f"{self.name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["taskset", "-c", core, *self.argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=BENCH,
                env={**os.environ, **self.env},
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.proc.returncode}:\n"
                    f"{self.log.read_text() if self.log else ''}"
                )
            try:
                with urllib.request.urlopen(self.ready_url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {self.ready_url} within {timeout:.0f} s")

    def cpu_seconds(self) -> float:
        """utime + stime so far of the server's process tree (plughost's supervisor and
        workers, nginx's master and worker)."""
        assert self.proc is not None
        total = 0
        for pid in (self.proc.pid, *_descendants(self.proc.pid)):
            try:  # a process's stat sums all its threads
                fields = _stat(pid)
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        children = _descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)  # graceful shutdown (uvicorn, nginx's fast one)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid, start in children.items():  # workers orphaned by a killed master
            try:
                if _stat(pid)[19] == start:
                    os.kill(pid, signal.SIGKILL)
            except (OSError, IndexError):
                pass


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _descendants(root: int) -> dict[int, str]:
    """Live descendant processes of ``root``: pid -> start time (to spot a reused pid)."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat(int(entry.name))
            except (OSError, IndexError):
                continue
            parents[int(entry.name)] = (int(fields[1]), fields[19])
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, start) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


@dataclass
class WrkResult:
    """One wrk run: req/s, latency percentiles, total requests, non-2xx/socket errors."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: str
    cpu: float = 0.0  # server CPU seconds per wall second while measured
    cpu_us: float = 0.0  # server CPU microseconds per request answered


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(
    wrk: str,
    url: str,
    *,
    threads: int,
    connections: int,
    duration: str,
    core: str,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """``wrk --latency`` pinned to ``core`` (taskset), with extra request ``headers``."""
    cmd = [
        "taskset",
        "-c",
        core,
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}",
        "--latency",
    ]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = []
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors.append(f"{m.group(1)} non-2xx")
    if m := re.search(r"Socket errors: (.*)", out):
        errors.append(f"socket errors: {m.group(1)}")
    return WrkResult(rps, _ms(pct["50"]), _ms(pct["99"]), total, "; ".join(errors))


def measure(server: Server, wrk: str, url: str, **options: Any) -> WrkResult:
    """``run_wrk(wrk, url, **options)`` with the CPU ``server``'s process tree spent
    meanwhile: per wall second (``cpu``) and per request answered (``cpu_us``)."""
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    r = run_wrk(wrk, url, **options)
    used = server.cpu_seconds() - cpu0
    r.cpu = used / (time.monotonic() - t0)
    r.cpu_us = used * 1e6 / max(r.requests, 1)
    return r


def measure_rounds(
    wrk: str,
    targets: dict[str, tuple[Server, str]],
    results: dict[str, list[WrkResult]],
    *,
    rounds: int,
    warmup: str,
    duration: str,
    connections: int,
    headers: dict[str, str] | None = None,
) -> None:
    """wrk with one thread on core 1 over ``targets`` (name -> (the server whose CPU
    counts, the URL)): a ``warmup``-long run on each, then ``rounds`` rounds of
    :func:`measure`, each result appended to ``results[name]`` and printed as it comes."""
    options: dict[str, Any] = dict(threads=1, connections=connections, core="1", headers=headers)
    for _server, url in targets.values():
        run_wrk(wrk, url, duration=warmup, **options)
    width = max(map(len, targets), default=0)
    for rnd in range(rounds):
        for name, (server, url) in targets.items():
            r = measure(server, wrk, url, duration=duration, **options)
            results[name].append(r)
            print(
                f"  round {rnd + 1}/{rounds} {name:<{width}} {r.rps:>9,.0f} req/s "
                f"p99 {r.p99_ms:6.2f} ms{'  ' + r.errors if r.errors else ''}",
                flush=True,
            )
