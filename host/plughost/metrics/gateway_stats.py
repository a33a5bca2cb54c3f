"""A worker's side of the metrics: the C runtime's counters of one gateway, copied into
prometheus_client's metrics as deltas (:class:`GatewayStats`)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from .families import METHODS, PHASES, WorkerMetrics, add_observations

if TYPE_CHECKING:
    from ..serving.gateway import Gateway

log = logging.getLogger("plughost.metrics")

#: Seconds between two copies of the runtime's counters: how stale a scrape may be.
INTERVAL = 1.0


class GatewayStats:
    """Copies a gateway's counters (its chains' answers and latency, its elements' sampled
    time, its storages' failures) into ``metrics``: :meth:`flush` once, or every
    :data:`INTERVAL` seconds on a thread between :meth:`start` and :meth:`stop`. The runtime
    counts only while one is started (``rt_stats_enable``)."""

    def __init__(self, gateway: "Gateway", metrics: WorkerMetrics | None = None) -> None:
        self.gateway = gateway
        runtime = gateway.runtime
        self._ffi, self._lib = runtime.ffi, runtime.lib
        bounds = self._lib.rt_latency_bounds()
        self.bounds = [bounds[i] for i in range(self._lib.RT_LATENCY_BOUNDS)]
        self.metrics = metrics or WorkerMetrics(self.bounds)
        cap = self._lib.RT_STAT_PAIRS
        self._pairs = (
            self._ffi.new("uint32_t[]", cap),
            self._ffi.new("uint32_t[]", cap),
            self._ffi.new("uint64_t[]", cap),
        )
        self._buckets = self._ffi.new("uint64_t[]", len(self.bounds) + 1)
        self._scalars = self._ffi.new("uint64_t[2]")
        self._times = self._ffi.new("uint64_t[4]")
        self._seen: dict[tuple[Any, ...], int] = {}  # counter key -> value last copied
        self._lock = threading.Lock()  # flush() from the thread and from stop()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifetime
    def start(self) -> "GatewayStats":
        """Turns the runtime's counting on and copies every :data:`INTERVAL` seconds."""
        self._lib.rt_stats_enable(1)
        self._thread = threading.Thread(target=self._run, name="plughost-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the copying thread after a last copy (call before the gateway closes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            try:
                self.flush()
            except Exception:  # never let the metrics end the worker
                log.exception("plughost: copying the metrics failed")

    # ------------------------------------------------------------------ copying
    def _delta(self, key: tuple[Any, ...], value: int) -> int:
        delta = value - self._seen.get(key, 0)
        if delta:
            self._seen[key] = value
        return delta

    def flush(self) -> None:
        """Copies what the runtime counted since the last copy."""
        with self._lock:
            for chain in list(self.gateway.chains):
                if chain.ptr is not None:
                    self._chain(chain)
            for instance in list(self.gateway._instances):
                ptr = getattr(instance, "ptr", None)
                if ptr is not None and ptr != self._ffi.NULL:
                    self._element(instance.name, ptr)
            for name, storage in list(self.gateway.storages.items()):
                handle = getattr(storage, "_handle", None)
                if handle is not None and not storage.closed:
                    failed = self._delta(("storage", name), self._lib.rt_storage_failures(handle))
                    if failed:
                        self.metrics.storage_failures.labels(name).inc(failed)

    def _chain(self, chain: Any) -> None:
        lib, metrics = self._lib, self.metrics
        stats = lib.rt_chain_answers(chain.ptr)
        route = chain.route_name or chain.pattern or "(unnamed)"
        methods, statuses, counts = self._pairs
        for i in range(lib.rt_stats_pairs(stats, methods, statuses, counts, len(counts))):
            method, status = methods[i], statuses[i]
            delta = self._delta(("answers", chain.address, method, status), counts[i])
            if delta:
                name = METHODS[method] if method < len(METHODS) else "OTHER"
                metrics.requests.labels(route, name, str(status)).inc(delta)
        buckets, scalars = self._buckets, self._scalars
        lib.rt_stats_latency(stats, buckets, scalars, scalars + 1)
        deltas = [
            self._delta(("latency", chain.address, b), buckets[b]) for b in range(len(buckets))
        ]
        total_ns = self._delta(("latency-sum", chain.address), scalars[0])
        if any(deltas):
            add_observations(metrics.latency.labels(route), deltas, total_ns / 1e9)

    def _element(self, name: str, ptr: Any) -> None:
        times = self._times
        self._lib.rt_element_times(self._lib.rt_instance_times(ptr), times)
        for p, phase in enumerate(PHASES):
            calls = self._delta(("calls", name, phase), times[2 * p])
            if calls:
                self.metrics.element_calls.labels(name, phase).inc(calls)
            ns = self._delta(("ns", name, phase), times[2 * p + 1])
            if ns:
                self.metrics.element_seconds.labels(name, phase).inc(ns / 1e9)
