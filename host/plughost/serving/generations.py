"""Generations: a worker's gateway replaced by a new one without dropping a request.

A reload (``SIGHUP`` to ``plughost serve``, or ``plughost reload``) builds a new
:class:`Generation` — the plugins loaded again (a plugin file replaced on disk is loaded as
its new version), every instance created, the routes compiled — beside the one serving. New
requests go to the new one from then on; the old one is destroyed once nothing runs on it any
more: no request between its chain and its answer (:class:`InFlight` counts them), no
request the ASGI application is still serving on it, no WebSocket session it started — or
when :data:`RETIRE_BOUND` seconds have passed, whichever comes first. The listening sockets are
never touched.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .gateway import Gateway

#: The longest an old generation waits for its requests and sessions before it is destroyed.
RETIRE_BOUND = 60.0


class InFlight:
    """A thread-safe count of what runs on a generation (requests, sessions, exchanges
    waiting on their upstream)."""

    __slots__ = ("_lock", "_count")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def enter(self) -> None:
        with self._lock:
            self._count += 1

    def leave(self) -> None:
        with self._lock:
            self._count -= 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


class Generation:
    """One built gateway, numbered from 1, with what runs on it."""

    def __init__(self, gateway: "Gateway", number: int) -> None:
        self.gateway = gateway
        self.number = number
        #: Requests and WebSocket sessions the application serves on this generation.
        self.serving = InFlight()
        self.stats: Any = None  # its GatewayStats, when metrics are on
        self.retiring_since: float | None = None

    @property
    def idle(self) -> bool:
        """Whether nothing runs on it: no request or session, no exchange pending."""
        return self.serving.count == 0 and self.gateway.runner.held.count == 0

    def overdue(self) -> bool:
        """Whether it has waited out :data:`RETIRE_BOUND` since it was replaced."""
        return (
            self.retiring_since is not None
            and time.monotonic() - self.retiring_since > RETIRE_BOUND
        )
