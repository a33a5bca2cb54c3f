"""The metric families plughost exposes, defined once (prometheus_client).

Import this module only where metrics are on: prometheus_client chooses how it stores values
(one file per process, for its multi-process mode) when it is first imported.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


#: ph_metric_kind: what a plugin's metric is.
COUNTER, GAUGE, HISTOGRAM = 1, 2, 3
#: Phases of an element's sampled time (stats.h): its request hook (or the action's handle),
#: its response hook.
PHASES = ("request", "response")


class WorkerMetrics:
    """The families a worker writes: requests, latency, elements' time, storage failures."""

    def __init__(self, latency_bounds: Sequence[float], registry: CollectorRegistry | None = None):
        self.requests = Counter(
            "plughost_requests",
            "Requests a route's chain answered, by route, method and status code",
            ["route", "method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "plughost_request_duration_seconds",
            "Time from a request reaching its chain to its answer's head, by route",
            ["route"],
            buckets=list(latency_bounds),
            registry=registry,
        )
        self.element_seconds = Counter(
            "plughost_element_sampled_seconds",
            "Time spent in an element's hooks on sampled requests (one in 8), by instance and "
            "phase: divide by plughost_element_sampled_calls_total for the mean",
            ["instance", "phase"],
            registry=registry,
        )
        self.element_calls = Counter(
            "plughost_element_sampled_calls",
            "Hook calls timed on sampled requests (one in 8), by instance and phase",
            ["instance", "phase"],
            registry=registry,
        )
        self.storage_failures = Counter(
            "plughost_storage_failures",
            "Storage calls that failed (a Valkey down, a memory storage full...), by storage",
            ["storage"],
            registry=registry,
        )
        self.upstream_requests = Counter(
            "plughost_upstream_requests",
            "Requests sent to an upstream, by endpoint (scheme://host:port) and the status it "
            "answered (502/504: the host's, when it did not answer in time or at all)",
            ["endpoint", "code"],
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "plughost_upstream_duration_seconds",
            "Time from sending a request to an upstream to its answer's head, by endpoint",
            ["endpoint"],
            buckets=list(latency_bounds),
            registry=registry,
        )
        self._registry = registry
        self._plugin_families: dict[str, Any] = {}

    def plugin_child(
        self,
        kind: int,
        family: str,
        help: str,
        instance: str,
        label: str | None,
        label_value: str | None,
        bounds: Sequence[float],
    ) -> tuple[int, Any, int]:
        """(kind, the labelled child, number of buckets) of a metric a plugin declared
        (ph_metric_declare); its family is made once. kind: 1 counter, 2 gauge, 3
        histogram (ph_metric_kind)."""
        names = ("instance", label) if label else ("instance",)
        metric = self._plugin_families.get(family)
        if metric is None:
            if kind == COUNTER:
                metric = Counter(family, help, names, registry=self._registry)
            elif kind == GAUGE:
                metric = Gauge(
                    family, help, names, multiprocess_mode="livesum", registry=self._registry
                )
            else:
                metric = Histogram(
                    family, help, names, buckets=list(bounds), registry=self._registry
                )
            self._plugin_families[family] = metric
        values = (instance, label_value) if label else (instance,)
        return kind, metric.labels(*values), len(bounds)


@functools.lru_cache(maxsize=None)
def worker_metrics(latency_bounds: tuple[float, ...]) -> WorkerMetrics:
    """This process's one WorkerMetrics: every generation of its gateway (reloads) counts
    into the same families, so no two objects hold one multi-process value."""
    return WorkerMetrics(latency_bounds)


class SupervisorMetrics:
    """The families the supervisor of ``plughost serve`` writes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.replacements = Counter(
            "plughost_worker_replacements",
            "Workers replaced since start, by why the worker ended: crash (a plugin crashed "
            "it), hang (an element ran over elementTimeout), unresponsive, other",
            ["reason"],
            registry=registry,
        )
        self.build = Gauge(
            "plughost_build_info",
            "plughost's version, the plugin ABI it hosts and its Python (value 1)",
            ["version", "abi", "python"],
            multiprocess_mode="max",
            registry=registry,
        )


def add_observations(child: Any, bucket_counts: Sequence[int], total: float) -> None:
    """Adds to a Histogram child ``bucket_counts[i]`` observations in its bucket i (counts
    per bucket, not cumulative, as the runtime keeps them) summing to ``total``: what that
    many ``observe()`` calls would add. prometheus_client has no public call for it, so this
    one function reaches its buckets (tests/test_metrics.py checks it against observe())."""
    for value, count in zip(child._buckets, bucket_counts):
        if count:
            value.inc(count)
    if total:
        child._sum.inc(total)
