"""Upstream answers, counted where the pooled client gets them (plughost.proxy.client), and
kept until the metrics thread copies them into Prometheus (:class:`UpstreamStats`)."""

from __future__ import annotations

import bisect
import threading
from typing import Sequence

#: What :meth:`UpstreamStats.take` gives: counts by (endpoint, status), and by endpoint the
#: latency buckets' counts (not cumulative) and their sum in seconds.
Taken = tuple[dict[tuple[str, int], int], dict[str, list[int]], dict[str, float]]


_shared: "UpstreamStats | None" = None
_shared_lock = threading.Lock()


def shared_upstream_stats(bounds: Sequence[float]) -> "UpstreamStats":
    """This process's one UpstreamStats (its pooled client counts into it; the metrics
    thread of whichever generation runs takes from it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = UpstreamStats(bounds)
        return _shared


#: The most endpoints named apart; upstreams past them (a plugin building URLs from what
#: clients send, say) are counted together as OTHER_ENDPOINT, so the labels stay bounded.
MAX_ENDPOINTS = 256
OTHER_ENDPOINT = "(other)"


class UpstreamStats:
    """Upstream requests by endpoint (``scheme://host:port``) and status, with the time from
    the request's start to its answer's head (or to the 502/504 that ended it)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self._named: set[str] = set()  # the endpoints labelled by name, at most MAX_ENDPOINTS
        self._lock = threading.Lock()  # record() on the event loop, take() on the metrics thread
        self._counts: dict[tuple[str, int], int] = {}
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def record(self, endpoint: str, status: int, seconds: float) -> None:
        slot = bisect.bisect_left(self.bounds, seconds)  # the first bound >= seconds
        with self._lock:
            if endpoint not in self._named:
                if len(self._named) < MAX_ENDPOINTS:
                    self._named.add(endpoint)
                else:
                    endpoint = OTHER_ENDPOINT
            key = (endpoint, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            buckets = self._buckets.get(endpoint)
            if buckets is None:
                buckets = self._buckets[endpoint] = [0] * (len(self.bounds) + 1)
            buckets[slot] += 1
            self._sums[endpoint] = self._sums.get(endpoint, 0.0) + seconds

    def take(self) -> Taken:
        """What was recorded since the last take."""
        with self._lock:
            taken = (self._counts, self._buckets, self._sums)
            self._counts, self._buckets, self._sums = {}, {}, {}
        return taken
