"""Prometheus metrics: what a gateway counts, and where an operator reads it.

``server.metricsAddress`` (or ``plughost serve --metrics-address``) turns them on. The
supervisor of ``plughost serve`` then serves Prometheus' text format on that admin listener,
off the public port (:mod:`plughost.metrics.admin`), from prometheus_client's multi-process
files, which every worker writes its own of.

Requests are counted where it costs least: the C runtime counts each chain's answers by
method and status, with their latency, and times the elements' hooks of one request in
:data:`TIMING_EVERY` (lock-free atomics, plughost/_runtime/stats.c); the storages count their
failed calls. A thread in each worker copies those counters into prometheus_client's metrics
about once a second (:mod:`plughost.metrics.gateway_stats`), so a scrape shows what happened
up to a second before it. The metric families are defined once, in
:mod:`plughost.metrics.families`.
"""

from __future__ import annotations

import os

#: prometheus_client's variable naming the folder of its multi-process files: set by
#: ``plughost serve`` for its workers when metrics are on.
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: Methods the metrics name (the runtime's order, stats.c); any other is counted as "OTHER",
#: so that a client cannot make up labels.
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER")


def method_label(method: str) -> str:
    """``method`` as the metrics name it: itself when it is one of METHODS, else "OTHER"."""
    return method if method in METHODS else "OTHER"


#: One request in this many (per thread) has its elements' hooks timed (RT_TIMING_EVERY).
TIMING_EVERY = 8


def enabled() -> bool:
    """Whether this process writes metrics (it runs under ``plughost serve`` with metrics
    on)."""
    return bool(os.environ.get(MULTIPROC_VARIABLE))


__all__ = ["METHODS", "MULTIPROC_VARIABLE", "TIMING_EVERY", "enabled", "method_label"]
