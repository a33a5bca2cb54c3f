"""The opentelemetry plugin (plugins.opentelemetry.middlewares.OpenTelemetryMiddleware): W3C
traceparent continued or started (many malformed forms), propagated to the upstream, the
locals it sets, spans exported over OTLP/HTTP JSON to a real local receiver (attributes,
status, timing, batching, interval, flush at destroy), an unreachable or failing collector
that never slows a request and is logged, sampling, configuration errors, the stdout
exporter, and one run through a real `plughost serve` with the logger printing the ids."""

from __future__ import annotations

import http.server
import json
import logging
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from plughost import Gateway
from plughost.sdk.pyelements import PythonAction

from gateway_support import Server, UpstreamServer, gateways

OTEL = "plugins.opentelemetry.middlewares.OpenTelemetryMiddleware"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])")
TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PID = "00f067aa0ba902b7"


# ----------------------------------------------------------------------------- helpers


class Collector:
    """A real OTLP/HTTP receiver on a free loopback port: keeps every POSTed document."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = status
        self.delay = delay
        self.cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if outer.delay:
                    time.sleep(outer.delay)
                with outer.cond:
                    outer.posts.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": json.loads(body),
                        }
                    )
                    outer.cond.notify_all()
                answer = b"{}" if outer.status == 200 else b'{"message":"collector says no"}'
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[dict[str, Any]]:
        """Every span received, each with "_scope" and "_resource" added."""
        out = []
        with self.cond:
            for post in self.posts:
                for rs in post["body"]["resourceSpans"]:
                    resource = attrs(rs["resource"])
                    for ss in rs["scopeSpans"]:
                        for span in ss["spans"]:
                            out.append(
                                {**span, "_scope": ss["scope"]["name"], "_resource": resource}
                            )
        return out

    def wait_spans(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.spans()) < n and time.monotonic() < deadline:
            with self.cond:
                self.cond.wait(0.05)
        return self.spans()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def attrs(obj: dict[str, Any]) -> dict[str, Any]:
    """OTLP attributes as a plain dict (intValue as int)."""
    out: dict[str, Any] = {}
    for a in obj.get("attributes", []):
        ((kind, value),) = a["value"].items()
        out[a["key"]] = int(value) if kind == "intValue" else value
    return out


class Show(PythonAction):
    """Answers 200 with the request headers the upstream would get and the locals."""

    def handle(self, ex: Any) -> None:
        body = {
            "headers": {k.lower(): v for k, v in ex.request_headers},
            "locals": {k: v.decode("latin-1") for k, v in ex.locals.items()},
        }
        ex.respond(200, json.dumps(body).encode(), "application/json")


def write_config(
    folder: Path,
    plugin_dir: Path,
    provider: dict[str, Any] | None,
    middleware: dict[str, Any] | None = None,
    *,
    plugin_extra: dict[str, Any] | None = None,
    global_otel: bool = False,
    upstream: str = "",
) -> Path:
    """gateway.yaml: opentelemetry (providerConfig ``provider``), static and trace; the
    middleware Otel on routes /show (Python Show), /echo (EchoAction), /boom (503),
    /teapot (418) and, with ``upstream``, /proxy/* (ForwardAction)."""
    folder.mkdir(parents=True, exist_ok=True)
    plugin_cfg: dict[str, Any] = dict(plugin_extra or {})
    if provider is not None:
        plugin_cfg["providerConfig"] = provider
    actions = {
        "Echo": {"use": "plugins.trace.actions.EchoAction"},
        "Boom": {
            "use": "plugins.static.actions.StaticAction",
            "config": {"status": 503, "body": "down"},
        },
        "Teapot": {
            "use": "plugins.static.actions.StaticAction",
            "config": {"status": 418, "body": "tea"},
        },
    }
    if upstream:
        actions["Forward"] = {
            "use": "plugins.trace.actions.ForwardAction",
            "config": {"url": upstream},
        }
    chain = [] if global_otel else ["Otel"]
    routes = {
        "ShowRoute": {
            "gatewayPath": "/show",
            "methods": ["ALL"],
            "middlewares": chain,
            "action": "Show",
        },
        "EchoRoute": {
            "gatewayPath": "/echo/:id",
            "methods": ["GET"],
            "middlewares": chain,
            "action": "Echo",
        },
        "BoomRoute": {
            "gatewayPath": "/boom",
            "methods": ["GET"],
            "middlewares": chain,
            "action": "Boom",
        },
        "TeapotRoute": {
            "gatewayPath": "/teapot",
            "methods": ["GET"],
            "middlewares": chain,
            "action": "Teapot",
        },
    }
    if upstream:
        routes["ProxyRoute"] = {
            "gatewayPath": "/proxy/*",
            "methods": ["GET"],
            "middlewares": chain,
            "action": "Forward",
        }
    text: dict[str, Any] = {
        "plugins": [
            {"path": str(plugin_dir / "opentelemetry.so"), "config": plugin_cfg},
            {"path": str(plugin_dir / "static.so")},
            {"path": str(plugin_dir / "trace.so")},
        ],
        "middlewares": {"Otel": {"use": OTEL, "config": middleware or {}}},
        "actions": actions,
        "routes": routes,
    }
    if global_otel:
        text["globalMiddlewares"] = ["Otel"]
    path = folder / "gateway.yaml"
    path.write_text(json.dumps(text, indent=1))  # JSON is YAML
    return path


@pytest.fixture
def gateway_factory(tmp_path: Path, test_plugin_dir: Path) -> Iterator[Any]:
    """make(provider, middleware=None, **kwargs): a gateway of write_config(...) with the
    Show action."""
    with gateways(
        tmp_path, write_config, test_plugin_dir, python_elements={"Show": Show()}
    ) as make:
        yield make


def otlp(collector: Collector, **extra: Any) -> dict[str, Any]:
    """providerConfig exporting to the collector; batches wait for destroy by default."""
    return {"endpoint": collector.url, "exportInterval": "1h", **extra}


def show(gw: Gateway, headers: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    r = gw.handle("GET", "/show", headers or {}, **kw)
    assert r.status == 200, (r.status, r.body)
    return json.loads(r.body)


# --------------------------------------------------------------------- propagation


def test_a_new_trace_starts_without_traceparent(gateway_factory: Any, collector: Collector) -> None:
    gw = gateway_factory(otlp(collector))
    seen = show(gw, {"tracestate": "orphan=1"})
    m = TRACEPARENT.fullmatch(seen["headers"]["traceparent"])
    assert m, seen
    trace_id, span_id, flags = m.groups()
    assert flags == "01" and set(trace_id) != {"0"} and set(span_id) != {"0"}
    assert "tracestate" not in seen["headers"]  # no valid context: its state goes too
    loc = seen["locals"]
    assert (loc["otel.traceId"], loc["otel.spanId"], loc["otel.traceFlags"]) == (
        trace_id,
        span_id,
        "01",
    )
    assert loc["openTelemetryTracer"] == seen["headers"]["traceparent"]
    other = show(gw)["locals"]
    assert other["otel.traceId"] != trace_id and other["otel.spanId"] != span_id
    gw.close()
    spans = collector.wait_spans(2)
    span = next(s for s in spans if s["spanId"] == span_id)
    assert span["traceId"] == trace_id and "parentSpanId" not in span
    assert span["flags"] == 0x101  # sampled, context has is-remote (false)


def test_a_valid_traceparent_is_continued(gateway_factory: Any, collector: Collector) -> None:
    gw = gateway_factory(otlp(collector))
    seen = show(gw, {"traceparent": f"00-{TID}-{PID}-01", "tracestate": "congo=t61rcWkgMzE"})
    trace_id, span_id, flags = TRACEPARENT.fullmatch(seen["headers"]["traceparent"]).groups()
    assert (trace_id, flags) == (TID, "01") and span_id != PID
    assert seen["headers"]["tracestate"] == "congo=t61rcWkgMzE"
    gw.close()
    (span,) = collector.wait_spans(1)
    assert (span["traceId"], span["spanId"], span["parentSpanId"]) == (TID, span_id, PID)
    assert span["traceState"] == "congo=t61rcWkgMzE"
    assert span["flags"] == 0x301  # sampled, remote parent


@pytest.mark.parametrize("later", [f"01-{TID}-{PID}-01", f"cc-{TID}-{PID}-03-what-ever"])
def test_a_later_version_is_read_as_version_00(
    gateway_factory: Any, collector: Collector, later: str
) -> None:
    gw = gateway_factory(otlp(collector))
    seen = show(gw, {"traceparent": later, "tracestate": "k=v"})
    trace_id, span_id, flags = TRACEPARENT.fullmatch(seen["headers"]["traceparent"]).groups()
    assert (trace_id, flags) == (TID, "01") and seen["headers"]["tracestate"] == "k=v"
    gw.close()
    (span,) = collector.wait_spans(1)
    assert span["parentSpanId"] == PID


@pytest.mark.parametrize(
    "bad",
    [
        f"00-{TID.upper()}-{PID}-01",  # upper-case hex
        f"00-{'0' * 32}-{PID}-01",  # all-zero trace id
        f"00-{TID}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TID}-{PID}-01",  # version ff is forbidden
        f"0g-{TID}-{PID}-01",  # version not hex
        f"01-{TID}-{PID}-01x",  # a later version needs '-' after 55 chars
        f"00-{TID[:-1]}-{PID}-01",  # short trace id
        f"00-{TID}-{PID}-01-extra",  # trailing data
        f"00_{TID}_{PID}_01",  # wrong separators
        f"00-{TID}-{PID}-0g",  # flags not hex
        f"00-{TID}-{PID[:-1]}x-01",  # parent id not hex
        " " + f"00-{TID}-{PID}-01"[1:],  # garbage at the start
        "",
        "garbage",
    ],
)
def test_a_malformed_traceparent_starts_a_new_trace(
    gateway_factory: Any, collector: Collector, bad: str
) -> None:
    gw = gateway_factory(otlp(collector))
    seen = show(gw, {"traceparent": bad, "tracestate": "k=v"})
    trace_id, span_id, flags = TRACEPARENT.fullmatch(seen["headers"]["traceparent"]).groups()
    assert trace_id not in (TID, TID.lower()) and flags == "01"
    assert "tracestate" not in seen["headers"]
    gw.close()
    (span,) = collector.wait_spans(1)
    assert span["traceId"] == trace_id and "parentSpanId" not in span
    assert "traceState" not in span


def test_the_upstream_gets_the_new_traceparent(
    tmp_path: Path, test_plugin_dir: Path, collector: Collector
) -> None:
    with UpstreamServer() as up:
        path = write_config(tmp_path / "c", test_plugin_dir, otlp(collector), upstream=up.url)
        gw = Gateway.from_config(path, python_elements={"Show": Show()})
        try:
            r = gw.handle(
                "GET", "/proxy/x", {"traceparent": f"00-{TID}-{PID}-01", "tracestate": "a=b"}
            )
            assert r.status == 201, r.body
            got = {k.lower(): v for k, v in json.loads(r.body)["headers"].items()}
        finally:
            gw.close()
    trace_id, span_id, _ = TRACEPARENT.fullmatch(got["traceparent"]).groups()
    assert trace_id == TID and span_id != PID and got["tracestate"] == "a=b"
    (span,) = collector.wait_spans(1)
    assert span["spanId"] == span_id and attrs(span)["http.response.status_code"] == 201


def test_an_unsampled_parent_is_propagated_but_not_recorded(
    gateway_factory: Any, collector: Collector
) -> None:
    gw = gateway_factory(otlp(collector))
    seen = show(gw, {"traceparent": f"00-{TID}-{PID}-00"})
    assert TRACEPARENT.fullmatch(seen["headers"]["traceparent"]).group(3) == "00"
    assert seen["locals"]["otel.traceFlags"] == "00"
    show(gw)  # a sampled one, so we know export works
    gw.close()  # destroy exports synchronously: everything has arrived when it returns
    spans = collector.spans()
    assert len(spans) == 1 and spans[0]["traceId"] != TID


def test_sampling_ratio_zero_records_only_sampled_parents(
    gateway_factory: Any, collector: Collector
) -> None:
    gw = gateway_factory(otlp(collector, samplingRatio=0))
    for _ in range(5):
        seen = show(gw)
        assert seen["headers"]["traceparent"].endswith("-00")
    show(gw, {"traceparent": f"00-{TID}-{PID}-01"})  # parent-based: the parent decides
    gw.close()  # destroy exports synchronously: everything has arrived when it returns
    assert [s["traceId"] for s in collector.spans()] == [TID]


def test_sampling_ratio_half_records_about_half(gateway_factory: Any, collector: Collector) -> None:
    gw = gateway_factory(otlp(collector, samplingRatio=0.5))
    flags = [show(gw)["locals"]["otel.traceFlags"] for _ in range(400)]
    gw.close()
    sampled = flags.count("01")
    assert 120 < sampled < 280, sampled
    assert len(collector.wait_spans(sampled)) == sampled


def test_nested_middlewares_make_a_parent_and_a_child(
    tmp_path: Path, test_plugin_dir: Path, collector: Collector
) -> None:
    path = write_config(tmp_path / "c", test_plugin_dir, otlp(collector), global_otel=True)
    text = json.loads(path.read_text())
    text["middlewares"]["Inner"] = {"use": OTEL, "config": {"tracerName": "inner"}}
    text["routes"]["ShowRoute"]["middlewares"] = ["Inner"]
    path.write_text(json.dumps(text))
    gw = Gateway.from_config(path, python_elements={"Show": Show()})
    try:
        seen = show(gw)
    finally:
        gw.close()
    spans = {s["_scope"]: s for s in collector.wait_spans(2)}
    outer, inner = spans["plughost"], spans["inner"]
    assert inner["parentSpanId"] == outer["spanId"] and inner["traceId"] == outer["traceId"]
    assert seen["headers"]["traceparent"].split("-")[2] == inner["spanId"]
    assert int(outer["startTimeUnixNano"]) <= int(inner["startTimeUnixNano"])
    assert int(inner["endTimeUnixNano"]) <= int(outer["endTimeUnixNano"])


# ------------------------------------------------------------------------- the spans


def test_span_attributes_kind_and_timing(gateway_factory: Any, collector: Collector) -> None:
    gw = gateway_factory(
        otlp(collector, serviceName="edge", headers={"X-Api-Key": "k1"}),
        {"tracerName": "edge-tracer"},
    )
    before = time.time_ns()
    r = gw.handle(
        "GET", "/echo/42", {"Host": "api.example:8443", "User-Agent": "t/1"}, client_ip="10.1.2.3"
    )
    after = time.time_ns()
    assert r.status == 200
    gw.close()
    (span,) = collector.wait_spans(1)
    post = collector.posts[0]
    assert post["path"] == "/v1/traces"
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["X-Api-Key"] == "k1"
    assert span["name"] == "EchoRoute" and span["kind"] == 2
    assert span["_scope"] == "edge-tracer"
    assert span["_resource"]["service.name"] == "edge"
    start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
    assert isinstance(span["startTimeUnixNano"], str)
    assert before <= start <= end <= after
    assert attrs(span) == {
        "http.request.method": "GET",
        "url.path": "/echo/42",
        "plughost.route": "EchoRoute",
        "http.response.status_code": 200,
        "client.address": "10.1.2.3",
        "server.address": "api.example",
        "server.port": 8443,
        "user_agent.original": "t/1",
        "http.response.body.size": len(r.body),
    }
    assert span["status"] == {}


def test_server_errors_set_status_error(gateway_factory: Any, collector: Collector) -> None:
    gw = gateway_factory(otlp(collector))
    assert gw.handle("GET", "/boom").status == 503
    assert gw.handle("GET", "/teapot").status == 418
    r = gw.handle("BREW", "/show", body=b"coffee")
    assert r.status == 200
    gw.close()
    spans = {s["name"]: s for s in collector.wait_spans(3)}
    boom, teapot, brew = spans["BoomRoute"], spans["TeapotRoute"], spans["ShowRoute"]
    assert boom["status"] == {"code": 2} and attrs(boom)["error.type"] == "503"
    assert attrs(boom)["http.response.status_code"] == 503
    assert teapot["status"] == {} and "error.type" not in attrs(teapot)  # 4xx: not a server error
    a = attrs(brew)
    assert (a["http.request.method"], a["http.request.method_original"]) == ("_OTHER", "BREW")
    assert a["http.request.body.size"] == 6


def test_long_and_odd_paths_stay_valid_json(gateway_factory: Any, collector: Collector) -> None:
    gw = gateway_factory(otlp(collector))
    assert gw.handle("GET", "/echo/" + 'é"\\' * 50).status == 200
    gw.close()
    (span,) = collector.wait_spans(1)
    assert attrs(span)["url.path"] == "/echo/" + 'é"\\' * 50


# ------------------------------------------------------------------------- exporting


def test_full_batches_are_sent_without_waiting(gateway_factory: Any, collector: Collector) -> None:
    gw = gateway_factory(otlp(collector, batchSize=3))
    for _ in range(7):
        show(gw)
    spans = collector.wait_spans(6)
    assert len(spans) == 6 and [
        len(p["body"]["resourceSpans"][0]["scopeSpans"][0]["spans"]) for p in collector.posts
    ] == [3, 3]
    gw.close()  # the 7th goes at destroy
    assert len(collector.wait_spans(7)) == 7 and len(collector.posts) == 3


def test_a_partial_batch_goes_after_the_export_interval(
    gateway_factory: Any, collector: Collector
) -> None:
    gw = gateway_factory(otlp(collector, exportInterval="200ms"))
    show(gw)
    t0 = time.monotonic()
    assert len(collector.wait_spans(1, timeout=5)) == 1
    assert time.monotonic() - t0 < 3


def test_destroy_flushes_every_queued_span(gateway_factory: Any, collector: Collector) -> None:
    gw = gateway_factory(otlp(collector))
    ids = {show(gw)["locals"]["otel.spanId"] for _ in range(25)}
    time.sleep(0.3)
    assert collector.posts == []  # batch not full, interval 1h: nothing sent yet
    gw.close()
    assert {s["spanId"] for s in collector.wait_spans(25)} == ids


def test_an_unreachable_collector_never_slows_requests(
    gateway_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plughost")
    # A listening socket that never accepts: connections hang until the export timeout.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    try:
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        gw = gateway_factory(
            {"endpoint": url, "batchSize": 1, "timeout": "2s", "shutdownTimeout": "1s"}
        )
        t0 = time.monotonic()
        for _ in range(50):
            show(gw)
        elapsed = time.monotonic() - t0
        assert elapsed < 1.5, elapsed  # one export alone would take 2 s
        t0 = time.monotonic()
        gw.close()
        assert time.monotonic() - t0 < 2.5  # shutdownTimeout cuts the POST in flight
    finally:
        hole.close()
    assert "opentelemetry: exporting" in caplog.text and "failed" in caplog.text
    assert url in caplog.text and "shutdownTimeout passed" in caplog.text


def test_refused_and_failing_collectors_are_logged(
    gateway_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plughost")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}"
    gw = gateway_factory({"endpoint": refused})
    show(gw)
    gw.close()
    assert f"to {refused}/v1/traces failed" in caplog.text
    failing = Collector(status=500)
    try:
        gw = gateway_factory(otlp(failing))
        show(gw)
        gw.close()
        assert 'the collector answered 500: {"message":"collector says no"}' in caplog.text
        assert "1 span lost so far" in caplog.text
    finally:
        failing.close()


def test_a_full_queue_drops_and_counts(
    gateway_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plughost")
    slow = Collector(delay=1.0)
    try:
        gw = gateway_factory(otlp(slow, queueSize=2, batchSize=1))
        t0 = time.monotonic()
        for _ in range(30):
            show(gw)
        assert time.monotonic() - t0 < 1.0
        gw.close()
        assert "dropped" in caplog.text and "the export queue (queueSize 2) was full" in caplog.text
        assert 1 <= len(slow.spans()) <= 4
    finally:
        slow.close()


def test_stdout_exporter_when_otlp_is_off(
    gateway_factory: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    gw = gateway_factory({"serviceName": "dev", "exportInterval": "1h"})
    span_id = show(gw)["locals"]["otel.spanId"]
    gw.close()
    lines = [line for line in capfd.readouterr().out.splitlines() if "resourceSpans" in line]
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] == span_id


def test_disable_traces_does_nothing(gateway_factory: Any, collector: Collector) -> None:
    gw = gateway_factory(otlp(collector, disableTraces=True))
    seen = show(gw, {"traceparent": f"00-{TID}-{PID}-01"})
    assert seen["headers"]["traceparent"] == f"00-{TID}-{PID}-01"
    assert not any(k.startswith("otel.") for k in seen["locals"])
    gw.close()
    assert collector.posts == []


def test_seams_configuration_is_accepted(gateway_factory: Any, collector: Collector) -> None:
    gw = gateway_factory(
        {
            "ServiceName": "example-service",
            "UseOTLP": True,
            "disableMetrics": False,
            "DisableLogs": True,
            "endpoint": collector.url,
        },
        {"tracerName": "internal-service-endpoint"},
        plugin_extra={"provider": "", "contextTracerKey": "tracer"},
    )
    seen = show(gw)
    assert seen["locals"]["tracer"] == seen["headers"]["traceparent"]
    gw.close()
    (span,) = collector.wait_spans(1)
    assert span["_scope"] == "internal-service-endpoint"
    assert span["_resource"]["service.name"] == "example-service"


# ----------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "provider, plugin_extra, middleware, key, words",
    [
        (
            {"batchSize": 0},
            {},
            {},
            "providerConfig.batchSize",
            "'batchSize' is the number 0: it must be at least 1",
        ),
        ({"batchSize": 10, "queueSize": 5}, {}, {}, "providerConfig.batchSize", "between 1 and 5"),
        (
            {"queueSize": 2_000_000},
            {},
            {},
            "providerConfig.queueSize",
            "it must be at least 1 and at most 1000000",
        ),
        ({"batchSize": "many"}, {}, {}, "providerConfig.batchSize", ""),
        ({"timeout": "0s"}, {}, {}, "providerConfig.timeout", "at least"),
        ({"exportInterval": "soon"}, {}, {}, "providerConfig.exportInterval", ""),
        ({"shutdownTimeout": "-1s"}, {}, {}, "providerConfig.shutdownTimeout", ""),
        (
            {"samplingRatio": 1.5},
            {},
            {},
            "providerConfig.samplingRatio",
            "it must be at least 0 and at most 1",
        ),
        ({"samplingRatio": "half"}, {}, {}, "providerConfig.samplingRatio", ""),
        ({"endpoint": "localhost:4318"}, {}, {}, "providerConfig.endpoint", "http(s)://"),
        (
            {"endpoint": "http://x:4318", "useOTLP": False},
            {},
            {},
            "providerConfig.endpoint",
            "useOTLP",
        ),
        ({"useOTLP": "sometimes"}, {}, {}, "providerConfig.useOTLP", ""),
        ({"headers": ["a"]}, {}, {}, "providerConfig.headers", "map"),
        ({"headers": {"Bad Name": "x"}}, {}, {}, "providerConfig.headers.Bad Name", "header name"),
        (
            {"headers": {"Content-Type": "x"}},
            {},
            {},
            "providerConfig.headers.Content-Type",
            "set by the exporter",
        ),
        (
            {"endpoit": "http://x"},
            {},
            {},
            "providerConfig.endpoit",
            "'providerConfig' has no key 'endpoit': did you mean 'endpoint'?",
        ),
        (
            {"serviceName": "a", "servicename": "b"},
            {},
            {},
            "providerConfig.servicename",
            "written twice (also as 'serviceName')",
        ),
        (None, {"provider": "jaeger"}, {}, "provider", "'provider' is 'jaeger', not one of"),
        (None, {"providerConfig": [1]}, {}, "providerConfig", "must be a map"),
        (None, {"tracer": "x"}, {}, "tracer", "plugin opentelemetry has no option 'tracer'"),
        (
            {},
            {},
            {"endpoint": "http://x"},
            "middlewares.Otel.config.endpoint",
            f"{OTEL} has no option 'endpoint': its options are 'tracerName'",
        ),
    ],
)
def test_config_errors_name_the_key(
    gateway_factory: Any, provider: Any, plugin_extra: Any, middleware: Any, key: str, words: str
) -> None:
    with pytest.raises(Exception) as exc:
        gateway_factory(provider, middleware, plugin_extra=plugin_extra)
    text = str(exc.value)
    prefix = "" if key.startswith("middlewares.") else "plugins[0].config."
    assert f"{prefix}{key}:" in text and words in text, text


def test_option_names_are_checked_by_the_schema_and_ignore_case(
    tmp_path: Path, test_plugin_dir: Path, gateway_factory: Any, collector: Collector
) -> None:
    # misspelt options, the middleware's and the plugin's: refused before init and create
    # run, each at its own file, line and key
    path = write_config(
        tmp_path / "typo", test_plugin_dir, {"sampligRatio": 0.5}, {"tracerNmae": "edge"}
    )
    with pytest.raises(Exception) as exc:
        Gateway.from_config(path, python_elements={"Show": Show()})
    lines = path.read_text().splitlines()
    provider_line = next(n for n, t in enumerate(lines, 1) if '"sampligRatio"' in t)
    assert (
        f"{path}:{provider_line}: plugins[0].config.providerConfig.sampligRatio: "
        "'providerConfig' has no key 'sampligRatio': did you mean 'samplingRatio'?"
    ) in str(exc.value), str(exc.value)
    path = write_config(tmp_path / "typo2", test_plugin_dir, {}, {"tracerNmae": "edge"})
    with pytest.raises(Exception) as exc:
        Gateway.from_config(path, python_elements={"Show": Show()})
    line = next(n for n, t in enumerate(path.read_text().splitlines(), 1) if "tracerNmae" in t)
    assert (
        f"{path}:{line}: middlewares.Otel.config.tracerNmae: {OTEL} has no option "
        "'tracerNmae': did you mean 'tracerName'?"
    ) in str(exc.value), str(exc.value)

    # the same options written in other case are accepted and take effect
    gw = gateway_factory(
        {"ENDPOINT": collector.url, "exportinterval": "1h", "SamplingRatio": 0.0},
        {"TRACERNAME": "edge"},
        plugin_extra={"CONTEXTTRACERKEY": "tr"},
    )
    unsampled = show(gw)  # ratio 0: a new trace is not recorded
    assert unsampled["locals"]["otel.traceFlags"] == "00"
    assert unsampled["locals"]["tr"] == unsampled["headers"]["traceparent"]
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    show(gw, {"traceparent": parent})  # a sampled parent is recorded
    gw.close()
    (span,) = collector.wait_spans(1)
    assert span["_scope"] == "edge"
    assert span["traceId"] == "0af7651916cd43dd8448eb211c80319c"


# -------------------------------------------------------------- real HTTP server


def test_serve_end_to_end_with_logger(
    tmp_path: Path, test_plugin_dir: Path, collector: Collector
) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "plugins.yaml").write_text(f"""\
plugins:
  - path: {test_plugin_dir / "opentelemetry.so"}
    config:
      providerConfig:
        serviceName: e2e
        useOTLP: true
        exportInterval: 100ms
  - path: {test_plugin_dir / "logger.so"}
  - path: {test_plugin_dir / "trace.so"}
""")
    (folder / "middlewares.yaml").write_text(f"""\
middlewares:
  Tracing:
    use: {OTEL}
    config:
      tracerName: gateway
  Access:
    use: plugins.logger.middlewares.LoggerMiddleware
    config:
      format: "access trace=${{locals:otel.traceId}} span=${{locals:otel.spanId}} ${{status}}\\n"
globalMiddlewares: [Tracing, Access]
""")
    (folder / "actions.yaml").write_text(
        "actions:\n  Echo:\n    use: plugins.trace.actions.EchoAction\n"
    )
    (folder / "routes.yaml").write_text("""\
routes:
  Hello:
    gatewayPath: /hello/:id
    methods: [GET]
    action: Echo
""")
    # The endpoint comes from the standard variable, as with Seam (OTel SDK).
    server = Server(
        "--config",
        str(folder),
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
        },
    )  # unset: would win
    try:
        status, _, _ = server.get("/hello/1", headers={"traceparent": f"00-{TID}-{PID}-01"})
        assert status == 200
        spans = collector.wait_spans(1)
        assert len(spans) == 1
        span = spans[0]
        assert span["traceId"] == TID and span["parentSpanId"] == PID
        assert span["name"] == "Hello" and span["_scope"] == "gateway"
        assert span["_resource"]["service.name"] == "e2e"
        assert attrs(span)["client.address"] == "127.0.0.1"
        assert attrs(span)["server.address"] == "127.0.0.1"
        out = server.output_after(0, f"span={span['spanId']}")
        assert f"access trace={TID} span={span['spanId']} 200" in out, out
        assert server.alive()
    finally:
        output = server.stop()
    assert "Traceback" not in output
    assert len(collector.spans()) == 1


def test_a_failed_upstream_is_a_server_error(
    tmp_path: Path, test_plugin_dir: Path, collector: Collector
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}"
    path = write_config(tmp_path / "c", test_plugin_dir, otlp(collector), upstream=refused)
    gw = Gateway.from_config(path, python_elements={"Show": Show()})
    try:
        assert gw.handle("GET", "/proxy/x").status == 502
    finally:
        gw.close()
    (span,) = collector.wait_spans(1)
    assert span["status"] == {"code": 2} and attrs(span)["error.type"] == "502"
    assert span["name"] == "ProxyRoute"
