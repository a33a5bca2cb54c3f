"""Prometheus metrics: `plughost serve` with a metrics listener, real traffic over HTTP on
both request paths, then a scrape of the admin listener checked against what was sent — with
one worker and with two, across a crashed and replaced worker — and the configuration's
problems with the listener."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway_support import (
    PLUGHOST,
    Server,
    UpstreamServer,
    free_port,
    upstream_server,
    write_config,
)
from plughost.metrics.families import add_observations

CRASH = """\
  Crash:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {name: Crash, fault: crash}
  Limited:
    use: plugins.limiter.middlewares.LimiterMiddleware
    config: {storage: Gone, failOpen: true, maxConnections: 1000}
"""
ROUTES = """\
  Crashing:
    gatewayPath: /crash
    methods: [GET]
    middlewares: [Crash]
    action: Echo
  Limited:
    gatewayPath: /limited
    methods: [GET]
    middlewares: [Limited]
    action: Hello
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    yield from upstream_server()


def metrics_config(folder: Path, plugin_dir: Path, upstream: str, metrics_port: int) -> Path:
    """gateway_support's configuration, plus a crashing route, a limiter on a Valkey nobody
    listens on (failOpen: its failures are counted, the requests served) and the listener."""
    write_config(folder, plugin_dir, upstream=upstream, extra_routes=ROUTES)
    middlewares = (folder / "middlewares.yaml").read_text()
    (folder / "middlewares.yaml").write_text(
        middlewares.replace("globalMiddlewares:", CRASH + "globalMiddlewares:")
    )
    (folder / "plugins.yaml").write_text(
        (folder / "plugins.yaml").read_text()
        + "".join(f"  - path: {plugin_dir / n}.so\n" for n in ("limiter", "valkey"))
    )
    (folder / "storages.yaml").write_text(
        "storages:\n  Gone:\n    use: plugins.valkey.storages.ValkeyStorage\n"
        f"    config: {{port: {free_port()}, connectTimeout: 200ms, commandTimeout: 200ms}}\n"
    )
    (folder / "server.yaml").write_text(
        f"server:\n  metricsAddress: 127.0.0.1:{metrics_port}\n  bodyLimit: 1000\n"
    )
    return folder


def host_refusals(port: int) -> None:
    """Two requests carrying Authorization twice (400) and a body over bodyLimit (413): the
    host answers them before any chain runs."""
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"GET / HTTP/1.1\r\nHost: t\r\nAuthorization: a\r\nAuthorization: b\r\n"
                b"Connection: close\r\n\r\n"
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /traced HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n"
            b"Connection: close\r\n\r\n" + b"x" * 2000
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 413")


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_until(port: int, name: str, want: float, **labels: str) -> Samples:
    """Scrapes until ``name{labels}`` reaches ``want`` (workers copy their counters once a
    second), at most 10 s."""
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(port)
        if value(samples, name, **labels) >= want or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def traffic(server: Server) -> None:
    """Known requests: direct path, Python router, bodies, upstream, errors, storage."""
    for _ in range(7):
        assert server.get("/")[0] == 200
    for _ in range(3):
        assert server.get("/broken")[0] == 500
    for i in range(4):
        assert server.request("POST", "/traced", body=b"x" * i)[0] == 200
    for _ in range(2):
        assert server.get("/users/7")[0] == 200
    for _ in range(2):
        assert server.get("/proxy/x")[0] == 201
    for _ in range(5):
        assert server.get("/limited")[0] == 200
    assert server.get("/nowhere")[0] == 404


def check_counts(samples: Samples, upstream: str, times: int = 1) -> None:
    requests = "plughost_requests_total"
    assert value(samples, requests, route="Hello", method="GET", code="200") == 7 * times
    assert value(samples, requests, route="Broken", method="GET", code="500") == 3 * times
    assert value(samples, requests, route="Traced", method="POST", code="200") == 4 * times
    assert value(samples, requests, route="User", method="GET", code="200") == 2 * times
    assert value(samples, requests, route="Proxy", method="GET", code="201") == 2 * times
    assert value(samples, requests, route="Limited", method="GET", code="200") == 5 * times
    latency = "plughost_request_duration_seconds"
    assert value(samples, f"{latency}_count", route="Hello") == 7 * times
    assert value(samples, f"{latency}_bucket", route="Hello", le="+Inf") == 7 * times
    assert 0 < value(samples, f"{latency}_sum", route="Hello") < 7 * times
    assert value(samples, f"{latency}_count", route="Proxy") == 2 * times
    # the proxied requests, as the pooled client saw them: by endpoint and status
    assert value(samples, "plughost_upstream_requests_total", endpoint=upstream, code="201") == (
        2 * times
    )
    assert value(samples, "plughost_upstream_duration_seconds_count", endpoint=upstream) == (
        2 * times
    )
    # every Limited request failed to reach its Valkey (incr), and was let through
    assert value(samples, "plughost_storage_failures_total", storage="Gone") >= 5 * times
    # the first request of each thread is timed: the global RequestID ran on at least one
    assert (
        value(
            samples, "plughost_element_sampled_calls_total", instance="RequestID", phase="request"
        )
        >= 1
    )
    assert (
        value(
            samples, "plughost_element_sampled_seconds_total", instance="RequestID", phase="request"
        )
        > 0
    )
    assert (
        value(
            samples,
            "plughost_build_info",
            version="0.1.0",
            abi="1.2",
            python=samples_python(samples),
        )
        == 1
    )


def samples_python(samples: Samples) -> str:
    for name, labels in samples:
        if name == "plughost_build_info":
            return dict(labels)["python"]
    return ""


@pytest.mark.parametrize("workers", [1, 2])
def test_a_scrape_counts_the_traffic_sent_and_a_crashed_worker(
    tmp_path: Path, test_plugin_dir: Path, upstream: UpstreamServer, workers: int
) -> None:
    mport = free_port()
    folder = metrics_config(tmp_path / "config", test_plugin_dir, upstream.url, mport)
    with Server("--config", str(folder), "--workers", str(workers)) as server:
        assert f"metrics on http://127.0.0.1:{mport}/metrics" in server.output()
        traffic(server)
        samples = scrape_until(
            mport, "plughost_requests_total", 5, route="Limited", method="GET", code="200"
        )
        check_counts(samples, upstream.url)
        host_refusals(server.port)
        samples = scrape_until(
            mport, "plughost_requests_total", 1, route="(host)", method="POST", code="413"
        )
        requests = "plughost_requests_total"
        assert value(samples, requests, route="(host)", method="GET", code="400") == 2
        assert value(samples, requests, route="(host)", method="POST", code="413") == 1
        assert value(samples, requests, route="(health)", method="GET", code="200") >= 1
        # the methods a client picks never become labels: the rest count as OTHER
        for name in (b"PROPFIND", b"MKCOL", b"LOCK"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(
                    name + b" / HTTP/1.1\r\nHost: t\r\nAuthorization: a\r\nAuthorization: "
                    b"b\r\nConnection: close\r\n\r\n"
                )
                assert sock.recv(100).startswith(b"HTTP/1.1 400")
        samples = scrape_until(mport, requests, 3, route="(host)", method="OTHER", code="400")
        assert value(samples, requests, route="(host)", method="OTHER", code="400") == 3
        methods = {dict(labels).get("method") for _, labels in samples}
        assert not methods & {"PROPFIND", "MKCOL", "LOCK"}
        # a crash: the worker is replaced and counted; what was copied before stays
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /crash HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            sock.recv(100)
        server.output_after(0, "replaced by worker", timeout=15)
        samples = scrape_until(mport, "plughost_worker_replacements_total", 1, reason="crash")
        assert value(samples, "plughost_worker_replacements_total", reason="crash") == 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if server.get("/")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        traffic(server)  # the new worker counts on from the old one's totals
        samples = scrape_until(
            mport, "plughost_requests_total", 10, route="Limited", method="GET", code="200"
        )
        assert (
            value(samples, "plughost_requests_total", route="Hello", method="GET", code="200")
            == 7 * 2 + 1
        )
        check_counts_after_restart(samples)


def check_counts_after_restart(samples: Samples) -> None:
    requests = "plughost_requests_total"
    assert value(samples, requests, route="Broken", method="GET", code="500") == 6
    assert value(samples, requests, route="Proxy", method="GET", code="201") == 4


def test_without_a_metrics_address_no_listener_is_opened(
    tmp_path: Path, test_plugin_dir: Path, upstream: UpstreamServer
) -> None:
    folder = write_config(tmp_path / "config", test_plugin_dir, upstream=upstream.url)
    with Server("--config", str(folder)) as server:
        assert "metrics on" not in server.output()
        assert server.get("/metrics")[0] == 404  # never on the public port


def test_metrics_address_problems_are_reported_and_nothing_starts(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        taken = busy.getsockname()[1]
        folder = write_config(tmp_path / "config", test_plugin_dir)
        (folder / "server.yaml").write_text(f"server:\n  metricsAddress: 127.0.0.1:{taken}\n")
        port = free_port()
        run = subprocess.run(
            [PLUGHOST, "serve", "--config", str(folder), "--address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode != 0
        assert (
            f"server.yaml:2: server.metricsAddress: metricsAddress 127.0.0.1:{taken} is in use"
            in run.stderr
        ), run.stderr
        run = subprocess.run(
            [
                PLUGHOST,
                "serve",
                "--config",
                str(folder),
                "--address",
                f"127.0.0.1:{port}",
                "--metrics-address",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode != 0
        assert "--metrics-address: the metrics listener needs a port of its own" in run.stderr
    finally:
        busy.close()


def test_add_observations_adds_what_observe_would() -> None:
    bounds = [0.001, 0.01, 0.1, 1.0]
    observed, added = CollectorRegistry(), CollectorRegistry()
    a = Histogram("lat", "x", ["route"], buckets=bounds, registry=observed)
    b = Histogram("lat", "x", ["route"], buckets=bounds, registry=added)
    values = [0.0005, 0.001, 0.002, 0.05, 0.05, 0.5, 3.0]
    for v in values:
        a.labels("r").observe(v)
    per_bucket = [2, 1, 2, 1, 1]  # <=0.001, <=0.01, <=0.1, <=1, +Inf
    add_observations(b.labels("r"), per_bucket, sum(values))
    strip = lambda text: [l for l in text.decode().splitlines() if "_created" not in l]  # noqa: E731
    assert strip(generate_latest(observed)) == strip(generate_latest(added))


# ----------------------------------------------------------------- plugins' own metrics


def plugin_metrics_config(folder: Path, plugin_dir: Path, metrics_port: int, count: str) -> Path:
    """First-party plugins that publish metrics, and the test plugin's three kinds; ``count``
    is the MetricsAction's ``declare`` option ("" for a sound one)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ("memory", "limiter", "session", "static", "perrequest")
    (folder / "plugins.yaml").write_text(
        "plugins:\n" + "".join(f"  - path: {plugin_dir / n}.so\n" for n in names)
    )
    (folder / "storages.yaml").write_text(
        "storages:\n  Mem: {use: plugins.memory.storages.MemoryStorage}\n"
    )
    (folder / "middlewares.yaml").write_text(
        "middlewares:\n"
        "  LimitMem:\n    use: plugins.limiter.middlewares.LimiterMiddleware\n"
        "    config: {storage: Mem, maxConnections: 3}\n"
        "  Sess:\n    use: plugins.session.middlewares.LoadSessionMiddleware\n"
        "    config: {storage: Mem}\n"
    )
    (folder / "actions.yaml").write_text(
        "actions:\n  Hello: {use: plugins.static.actions.StaticAction}\n"
        "  Count:\n    use: plugins.perrequest.actions.MetricsAction\n"
        f"    config: {{declare: '{count}'}}\n"
    )
    (folder / "routes.yaml").write_text(
        "routes:\n"
        "  Limited: {gatewayPath: /limited, methods: [GET], middlewares: [LimitMem], "
        "action: Hello}\n"
        "  Session: {gatewayPath: /session, methods: [GET], middlewares: [Sess], action: Hello}\n"
        "  Count: {gatewayPath: /count, methods: [POST], action: Count}\n"
    )
    (folder / "server.yaml").write_text(f"server:\n  metricsAddress: 127.0.0.1:{metrics_port}\n")
    return folder


def test_plugins_publish_counters_gauges_and_histograms(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    mport = free_port()
    folder = plugin_metrics_config(tmp_path / "config", test_plugin_dir, mport, "")
    with Server("--config", str(folder)) as server:
        statuses = [server.get("/limited")[0] for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        for _ in range(2):
            assert server.get("/session")[0] == 200  # no cookie: a new session each
        unknown = "ab" * 16  # a well-formed id nothing is stored under: one get, a miss
        assert server.get("/session", headers={"Cookie": f"session_id={unknown}"})[0] == 200
        for size in (0, 5, 50, 500):
            assert server.request("POST", "/count", body=b"x" * size)[::2] == (
                200,
                str(size).encode(),
            )
        samples = scrape_until(mport, "plughost_plugin_perrequest_calls_total", 4, instance="Count")
    limiter = "plughost_plugin_limiter_requests_total"
    assert value(samples, limiter, instance="LimitMem", result="allowed") == 3
    assert value(samples, limiter, instance="LimitMem", result="limited") == 2
    sessions = "plughost_plugin_session_sessions_total"
    assert value(samples, sessions, instance="Sess", event="created") == 2
    assert value(samples, sessions, instance="Sess", event="renewed") == 0
    lookups = "plughost_plugin_memory_lookups_total"
    assert value(samples, lookups, instance="Mem", result="miss") == 1
    assert value(samples, lookups, instance="Mem", result="hit") == 0
    assert value(samples, "plughost_plugin_perrequest_calls_total", instance="Count") == 4
    assert value(samples, "plughost_plugin_perrequest_last_size", instance="Count") == 500
    sizes = "plughost_plugin_perrequest_sizes"
    assert [
        value(samples, f"{sizes}_bucket", instance="Count", le=le)
        for le in ("1.0", "10.0", "100.0", "+Inf")
    ] == [1, 2, 3, 4]
    assert value(samples, f"{sizes}_sum", instance="Count") == 555
    assert value(samples, f"{sizes}_count", instance="Count") == 4


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (
            "badname",
            "actions.Count.config: metric 'Bad-Name' needs a name of 1 to 64 characters from "
            "[a-z0-9_], starting with a letter",
        ),
        (
            "conflict",
            "metric 'calls' was declared before with another kind, help, label name or "
            "buckets: one name is one metric",
        ),
    ],
)
def test_a_metric_the_host_refuses_is_a_configuration_problem(
    tmp_path: Path, test_plugin_dir: Path, declare: str, message: str
) -> None:
    folder = plugin_metrics_config(tmp_path / "config", test_plugin_dir, free_port(), declare)
    if declare == "conflict":  # a sound Count first, then one declaring "calls" as a gauge
        actions = (folder / "actions.yaml").read_text()
        (folder / "actions.yaml").write_text(
            actions.replace(
                "  Count:\n",
                "  Sound:\n    use: plugins.perrequest.actions.MetricsAction\n  Count:\n",
            )
        )
    run = subprocess.run(
        [PLUGHOST, "check", "--config", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode != 0
    assert message in run.stdout + run.stderr, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr


def test_totals_go_on_across_a_reload(tmp_path: Path, test_plugin_dir: Path) -> None:
    """A reload builds a new generation with counters of its own: the exposed totals (the
    host's and a plugin's) keep counting from where the old generation left them."""
    mport = free_port()
    folder = plugin_metrics_config(tmp_path / "config", test_plugin_dir, mport, "")
    sent = 0
    with Server("--config", str(folder)) as server:
        for _ in range(2):
            assert server.get("/limited")[0] == 200
            sent += 1
        scrape_until(
            mport, "plughost_requests_total", sent, route="Limited", method="GET", code="200"
        )
        limits = (folder / "middlewares.yaml").read_text()
        (folder / "middlewares.yaml").write_text(
            limits.replace("maxConnections: 3", "maxConnections: 1000")
        )
        os.kill(server.proc.pid, signal.SIGHUP)
        server.output_after(0, "generation 1 destroyed", timeout=20)
        for _ in range(5):  # 3 would have been the old limit: the new generation serves
            assert server.get("/limited")[0] == 200
            sent += 1
        samples = scrape_until(
            mport, "plughost_requests_total", sent, route="Limited", method="GET", code="200"
        )
    assert (
        value(samples, "plughost_requests_total", route="Limited", method="GET", code="200") == sent
    )
    limiter = "plughost_plugin_limiter_requests_total"
    assert value(samples, limiter, instance="LimitMem", result="allowed") == sent


def test_upstream_endpoints_past_the_limit_count_together() -> None:
    """A plugin that builds upstream URLs from what clients send cannot grow the labels
    without bound: past MAX_ENDPOINTS, endpoints count as one."""
    from plughost.metrics.upstreams import MAX_ENDPOINTS, OTHER_ENDPOINT, UpstreamStats

    stats = UpstreamStats([0.01, 0.1])
    for n in range(MAX_ENDPOINTS + 50):
        stats.record(f"http://host{n}:80", 200, 0.005)
    stats.record("http://host0:80", 200, 0.05)  # a named one stays named
    counts, buckets, _ = stats.take()
    assert len({endpoint for endpoint, _ in counts}) == MAX_ENDPOINTS + 1
    assert counts[(OTHER_ENDPOINT, 200)] == 50
    assert counts[("http://host0:80", 200)] == 2
    assert buckets["http://host0:80"] == [1, 1, 0]
