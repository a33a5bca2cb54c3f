"""Answers the host gives before any chain runs — a request over a limit (400 for a repeated
identity header, 405 under getOnly, 408, 413, 414, 431) or a health route — counted for the
metrics as route "(host)" or "(health)" (:func:`record`), until the metrics thread takes them.
Nothing is kept while metrics are off."""

from __future__ import annotations

import threading

from . import method_label

#: Route labels of the answers counted here.
HOST, HEALTH = "(host)", "(health)"

_lock = threading.Lock()  # record() on the event loop, take() on the metrics thread
_counts: dict[tuple[str, str, int], int] = {}
_on = False


def enable() -> None:
    """Starts counting (a worker with metrics on)."""
    global _on
    _on = True


def record(route: str, method: str, status: int) -> None:
    """Counts one answer the host gave on ``route`` (HOST or HEALTH)."""
    if not _on:
        return
    key = (route, method_label(method), status)  # never a label a client made up
    with _lock:
        _counts[key] = _counts.get(key, 0) + 1


def take() -> dict[tuple[str, str, int], int]:
    """What was counted since the last take."""
    global _counts
    with _lock:
        taken, _counts = _counts, {}
    return taken
