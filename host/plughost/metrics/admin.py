"""The supervisor's side of the metrics: the folder of prometheus_client's multi-process
files, and the admin listener that serves them (:class:`MetricsListener`)."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from typing import Any

from . import MULTIPROC_VARIABLE


class MetricsListener:
    """Prometheus' text format on ``address`` (host, port), summed over every worker's files.

    Made before the workers start: it creates the folder of the multi-process files and names
    it in the environment the workers inherit (prometheus_client reads it when first
    imported, so nothing of it is imported in this process before). :meth:`start` binds and
    serves on a thread; :meth:`close` stops it and removes the folder."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.folder = tempfile.mkdtemp(prefix="plughost-metrics-")
        os.environ[MULTIPROC_VARIABLE] = self.folder
        self._server: Any = None
        self._thread: Any = None
        self.supervisor: Any = None  # its SupervisorMetrics, once started

    def start(self) -> None:
        """Binds the admin listener (OSError when it cannot) and serves it on a thread."""
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        from .. import __version__
        from ..abi import ABI_MAJOR, ABI_MINOR
        from .families import SupervisorMetrics

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.folder)
        host, port = self.address
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.supervisor = SupervisorMetrics()
        self.supervisor.build.labels(
            __version__, f"{ABI_MAJOR}.{ABI_MINOR}", platform.python_version()
        ).set(1)

    def worker_replaced(self, reason: str, pid: int | None) -> None:
        """Counts a worker's replacement (``reason``: crash, hang, unresponsive, other) and
        lets go of the ended worker's live gauges."""
        if self.supervisor is None:
            return
        self.supervisor.replacements.labels(reason).inc()
        if pid is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.folder)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        shutil.rmtree(self.folder, ignore_errors=True)
        if os.environ.get(MULTIPROC_VARIABLE) == self.folder:
            del os.environ[MULTIPROC_VARIABLE]
