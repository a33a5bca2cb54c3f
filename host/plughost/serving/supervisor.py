"""Fault containment: ``plughost serve`` supervises its workers, one or many.

A worker is a process running the gateway under uvicorn. Inside it, the C runtime marks the
chain element each thread is running (plughost/_runtime/watch.c): when a plugin crashes
(SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT), a signal handler writes one line naming the
signal, the element (instance, type id, plugin), the route and the request id, and the
signal ends the worker; when an element runs longer than ``server.elementTimeout``, a
watchdog thread writes the same line and ends the worker. The :class:`Supervisor` (uvicorn's
multiprocess supervisor, also for a single worker) replaces a worker that ended within a
second, says why it ended and counts crashes, hangs and replacements; on SIGTERM or SIGINT it
stops every worker gracefully and kills those still running when the grace period is over
(a worker stuck in a plugin cannot handle the signal itself).
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from multiprocessing.connection import wait
from dataclasses import dataclass
from typing import Any, Callable

from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger("uvicorn.error")

#: The variable that tells a worker to watch its plugins: elementTimeout in seconds.
WATCH_VARIABLE = "PLUGHOST_ELEMENT_TIMEOUT"
#: A worker's exit status when its watchdog ended it (the runtime's RT_WATCH_HANG_EXIT).
HANG_EXIT = 70


def under_supervisor() -> bool:
    """Whether this process is a worker of ``plughost serve``'s supervisor."""
    return bool(os.environ.get(WATCH_VARIABLE))


def watch_worker(runtime: Any) -> None:
    """In a worker started by the supervisor: installs the crash report and starts the
    watchdog (no-op elsewhere, e.g. under ``uvicorn plughost.asgi:app`` or in tests)."""
    limit = os.environ.get(WATCH_VARIABLE)
    if not limit:
        return
    lib = runtime.lib
    if lib.rt_watch_install_crash_report() != 0:
        log.warning("plughost: the crash report could not be installed")
    if float(limit) > 0:  # elementTimeout: 0 turns the watchdog off
        lib.rt_watch_start(max(1, int(float(limit) * 1000)))


@dataclass
class Counts:
    """What happened to the workers since the server started."""

    crashes: int = 0
    hangs: int = 0
    unresponsive: int = 0
    other: int = 0

    @property
    def replacements(self) -> int:
        return self.crashes + self.hangs + self.unresponsive + self.other


#: The reason a metric gives for each kind of end (a Counts field).
REASONS = {"crashes": "crash", "hangs": "hang", "unresponsive": "unresponsive", "other": "other"}


#: The variable naming the configuration ``plughost serve`` serves (unset: the embedded one).
CONFIG_VARIABLE = "PLUGHOST_CONFIG"


def check_configuration() -> list[str]:
    """The problems of the configuration the workers serve, as ``plughost check --config``
    finds them, run in a child process ([] when it is sound)."""
    source = os.environ.get(CONFIG_VARIABLE)
    if not source:
        return []  # the embedded configuration: nothing on disk changed
    argv = [sys.executable, "-m", "plughost", "check", "--config", source]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return ["checking the configuration took over 120 s"]
    if run.returncode == 0:
        return []
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    return lines or [f"plughost check --config exited with status {run.returncode}"]


def why_it_ended(exitcode: int | None, killed_by_us: bool) -> tuple[str, str]:
    """(kind, sentence) for a worker's end: kind is a Counts field."""
    if killed_by_us:
        return "unresponsive", "stopped answering its supervisor's health checks and was killed"
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return "crashes", f"was ended by {name}"
    if exitcode == HANG_EXIT:
        return "hangs", "was ended by its watchdog: a chain element ran over elementTimeout"
    return "other", f"exited with status {exitcode}"


class Supervisor(Multiprocess):
    """uvicorn's multiprocess supervisor with plughost's reports and a bounded shutdown."""

    def __init__(
        self,
        config: Any,
        sockets: list[Any],
        *,
        grace: float,
        health_timeout: float,
        on_replaced: Callable[[str, int | None], None] | None = None,
    ) -> None:
        """``on_replaced(reason, pid)``: told of every replacement (the metrics count them);
        reason is crash, hang, unresponsive or other, pid the ended worker's."""
        super().__init__(config, sockets)
        self.grace = grace
        self.health_timeout = health_timeout
        self.on_replaced = on_replaced
        self.counts = Counts()
        self._pinged: dict[int | None, float] = {}  # pid -> when its pending ping was sent

    def run(self) -> None:
        log.info("plughost: supervisor [%d] starts %d worker(s)", os.getpid(), self.processes_num)
        self.init_processes()
        while not self.should_exit.wait(0.5):
            self.handle_signals()
            self.keep_subprocess_alive()
        self.stop_all()
        log.info(
            "plughost: supervisor [%d] stopped (%d worker replacement(s): %d crash(es), "
            "%d hang(s))",
            os.getpid(),
            self.counts.replacements,
            self.counts.crashes,
            self.counts.hangs,
        )

    def handle_hup(self) -> None:
        """SIGHUP: reload without dropping a request. The new configuration is checked
        first, in a process of its own (``plughost check --config``: plugin code never runs
        in the supervisor); when it has problems, each is logged and the workers keep
        serving the running one. Otherwise every worker gets SIGHUP and builds the new
        generation beside the one it serves (plughost.serving.generations); the listening
        sockets stay open throughout."""
        problems = check_configuration()
        if problems:
            for line in problems:
                log.error("plughost: reload: %s", line)
            log.error("plughost: reload refused; the workers keep the running configuration")
            return
        log.info(
            "plughost: reload: the configuration is sound; %d worker(s) reload", len(self.processes)
        )
        for process in self.processes:
            if process.process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGHUP)

    def _health(self, process: Process) -> str:
        """Whether a worker is "well" (it answered its last ping, or the ping is younger
        than health_timeout), has "ended" (noticed at once from its sentinel, unlike
        uvicorn's own ping, which waits out its timeout) or is "silent" (no answer for
        health_timeout). Never waits: the supervisor keeps handling signals."""
        conn, sentinel = process.parent_conn, process.process.sentinel
        sent = self._pinged.get(process.pid)
        try:
            if sent is None:
                conn.send(b"ping")
                sent = self._pinged[process.pid] = time.monotonic()
            ready = wait([conn, sentinel], 0)
            if conn in ready:
                conn.recv()
                del self._pinged[process.pid]
                return "well"
            if sentinel in ready:
                return "ended"
        except (OSError, EOFError, pickle.UnpicklingError):
            return "ended" if not process.process.is_alive() else "silent"
        return "silent" if time.monotonic() - sent > self.health_timeout else "well"

    def stop_all(self) -> None:
        """SIGTERM to every worker, then SIGKILL to those still running after the grace
        period."""
        self.terminate_all()
        deadline = time.monotonic() + self.grace
        for process in self.processes:
            process.process.join(max(0.0, deadline - time.monotonic()))
        for process in self.processes:
            if process.process.is_alive():
                log.error(
                    "plughost: worker [%s] did not stop within %g s and was killed",
                    process.pid,
                    self.grace,
                )
                process.kill()
                process.process.join()

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            killed = False
            if process.process.is_alive():
                answer = self._health(process)
                if answer == "well":
                    continue
                if answer == "silent":
                    killed = True
                    process.kill()
            process.process.join()
            self._pinged.pop(process.pid, None)
            if process.exitcode == STARTUP_FAILURE:
                log.error(
                    "plughost: worker [%s] failed to start; the supervisor stops", process.pid
                )
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            kind, sentence = why_it_ended(process.exitcode, killed)
            setattr(self.counts, kind, getattr(self.counts, kind) + 1)
            if self.on_replaced is not None:
                self.on_replaced(REASONS[kind], process.pid)
            replacement = Process(self.config, self.sockets)
            replacement.start()
            self.processes[idx] = replacement
            counts = self.counts
            log.error(
                "plughost: worker [%s] %s; replaced by worker [%s] (%d replacement(s) "
                "since start: %d crash(es), %d hang(s))",
                process.pid,
                sentence,
                replacement.pid,
                counts.replacements,
                counts.crashes,
                counts.hangs,
            )
