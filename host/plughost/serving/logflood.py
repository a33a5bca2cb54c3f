"""Repeated failures are logged once, then summarised.

When a storage goes down, every request that needs it fails the same way; logging each one
buries everything else (a Valkey outage once wrote 65,065 lines in 10 s). A
:class:`RepeatFilter` on plughost's loggers lets the first record of a kind through, counts
the records like it for ``window`` seconds, and lets the next one after that through with a
summary of what it held back: ``… (3,201 more like this in the last 10 s)``. Records are
"like" each other when they differ only in ids (request ids, trace ids); addresses, ports
and statuses keep records apart (two storages failing are two problems)."""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

#: The loggers the gateway writes request-time failures to.
LOGGERS = (
    "plughost.gateway",
    "plughost.plugin",
    "plughost.proxy",
    "plughost.asgi",
    "plughost.protocol",
    "plughost.python",
    "plughost.upstream",
    "plughost.websocket",
)
#: Seconds during which records like one just logged are only counted.
WINDOW = 10.0
#: Kinds of records remembered at once (the oldest are forgotten first).
MAX_KINDS = 1024

_VOLATILE = re.compile(
    r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
    r"|\b[0-9a-fA-F]{16,}\b"
)


@dataclass
class _Kind:
    since: float
    held: int = 0


class RepeatFilter(logging.Filter):
    """Lets the first record of a kind through per window; see the module's docstring."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.window = window
        self._clock = clock or time.monotonic
        self._kinds: dict[tuple[str, int, str], _Kind] = {}
        self._lock = threading.Lock()  # records come from worker threads too

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a broken record: let logging report it as usual
            return True
        key = (record.name, record.levelno, _VOLATILE.sub("#", text))
        now = self._clock()
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None and now - kind.since < self.window:
                kind.held += 1
                return False
            held = kind.held if kind is not None else 0
            if kind is None and len(self._kinds) >= MAX_KINDS:
                self._kinds.pop(next(iter(self._kinds)))
            self._kinds[key] = _Kind(now)
            self._kinds[key] = self._kinds.pop(key)  # most recent last
        if held:
            record.msg = "%s (%s more like this in the last %g s)" % (
                text,
                f"{held:,}",
                self.window,
            )
            record.args = None
        return True


_installed: RepeatFilter | None = None


def install(window: float = WINDOW) -> RepeatFilter:
    """Puts one RepeatFilter on plughost's loggers (once per process)."""
    global _installed
    if _installed is None:
        _installed = RepeatFilter(window)
        for name in LOGGERS:
            logging.getLogger(name).addFilter(_installed)
    return _installed
