"""A worker's side of the metrics: the C runtime's counters of one gateway, copied into
prometheus_client's metrics as deltas (:class:`GatewayStats`)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from . import METHODS, host_answers
from .upstreams import shared_upstream_stats
from .families import (
    COUNTER,
    GAUGE,
    PHASES,
    WorkerMetrics,
    add_observations,
    worker_metrics,
)

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
        self.metrics = metrics or worker_metrics(tuple(self.bounds))
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
        self._seen_values: dict[int, float] = {}  # plugin metric -> value last copied
        self._declared: dict[int, tuple[int, Any, int]] = {}  # plugin metric -> its child
        self._info = self._ffi.new("rt_metric_info *")
        self._plugin_buckets = self._ffi.new("uint64_t[]", self._lib.RT_METRIC_BUCKETS_MAX + 1)
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
            self._plugin_metrics()
            self._upstreams()
            self._host_answers()
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

    def _plugin_metrics(self) -> None:
        """The metrics plugins declared (ph_metric_declare): their families are made the
        first time they are seen, with the labels instance and the plugin's own."""
        ffi, lib, host = self._ffi, self._lib, self.gateway.ptr
        info = self._info
        for i in range(lib.rt_metrics_count(host)):
            known = self._declared.get(i)
            if known is None:
                if lib.rt_metric_info_at(host, i, info) != 0:
                    break
                known = self._declared[i] = self.metrics.plugin_child(
                    info.kind,
                    ffi.string(info.family).decode(),
                    ffi.string(info.help).decode("utf-8", "replace"),
                    ffi.string(info.instance).decode(),
                    ffi.string(info.label).decode() if info.label else None,
                    ffi.string(info.label_value).decode("utf-8", "replace")
                    if info.label_value
                    else None,
                    [info.bounds[b] for b in range(info.n_buckets)],
                )
            kind, child, n_buckets = known
            if kind == GAUGE:
                child.set(lib.rt_metric_read(host, i, ffi.NULL))
                continue
            buckets = self._plugin_buckets
            value = lib.rt_metric_read(host, i, buckets)
            if kind == COUNTER:
                delta = value - self._seen_values.get(i, 0.0)
                if delta > 0:
                    self._seen_values[i] = value
                    child.inc(delta)
            else:
                counts = [self._delta(("plugin", i, b), buckets[b]) for b in range(n_buckets + 1)]
                total = value - self._seen_values.get(i, 0.0)
                self._seen_values[i] = value
                if any(counts):
                    add_observations(child, counts, total)

    def _host_answers(self) -> None:
        requests = self.metrics.requests
        for (route, method, status), n in host_answers.take().items():
            requests.labels(route, method, str(status)).inc(n)

    def _upstreams(self) -> None:
        counts, buckets, sums = shared_upstream_stats(self.bounds).take()
        metrics = self.metrics
        for (endpoint, status), n in counts.items():
            metrics.upstream_requests.labels(endpoint, str(status)).inc(n)
        for endpoint, per_bucket in buckets.items():
            add_observations(metrics.upstream_latency.labels(endpoint), per_bucket, sums[endpoint])

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
