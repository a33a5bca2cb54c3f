"""The gateway in-process (Gateway.from_config + handle): routing, the C chain runner's
ordering, early responses, failures, Python middlewares in native chains, may-block chains
and upstream requests against a real HTTP server."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from plughost.sdk.exchange import Exchange
from plughost import Gateway
from plughost.sdk.pyelements import PythonAction, PythonMiddleware

from gateway_support import UpstreamServer, free_port, header, write_config


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture
def gateway(tmp_path: Path, test_plugin_dir: Path, upstream: UpstreamServer) -> Iterator[Gateway]:
    folder = write_config(tmp_path / "config", test_plugin_dir, upstream=upstream.url)
    with Gateway.from_config(folder) as gw:
        yield gw


def test_static_route_through_global_and_route_middlewares(gateway: Gateway) -> None:
    r = gateway.handle("GET", "/traced", {"X-Request-ID": "rid-1"}, query="q=1")
    assert r.status == 200
    assert (
        r.body == b"GET /traced q=1 trace=A,B id= rest= route=Traced body= local=rid-1 ip=127.0.0.1"
    )
    assert header(r, "X-Trace-Response") == "B,A"  # response phase in reverse
    assert header(r, "X-Request-ID") == "rid-1"  # the global middleware ran


def test_embedded_style_hello(gateway: Gateway) -> None:
    r = gateway.handle("GET", "/")
    assert (r.status, r.body) == (200, b"hello")


def test_params_and_wildcards(gateway: Gateway) -> None:
    assert b" id=42 " in gateway.handle("GET", "/users/42").body
    assert b" rest=a/b/c.txt " in gateway.handle("GET", "/files/a/b/c.txt").body


def test_not_found_and_method_not_allowed(gateway: Gateway) -> None:
    r = gateway.handle("GET", "/nope")
    assert r.status == 404 and json.loads(r.body)["status"] == 404
    r = gateway.handle("DELETE", "/traced")
    assert r.status == 405
    assert header(r, "Allow") == "GET, HEAD, POST"


def test_post_body_reaches_the_action(gateway: Gateway) -> None:
    r = gateway.handle("POST", "/traced", body=b"payload")
    assert b" body=payload local=" in r.body


def test_early_response_runs_response_phase_of_passed_middlewares(gateway: Gateway) -> None:
    r = gateway.handle("GET", "/early")
    assert r.status == 418 and r.body == b"Teapot"
    assert header(r, "X-Trace-Response") == "Teapot,A"  # B never ran


def test_failing_middleware_answers_500_with_request_id_and_keeps_serving(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    r = gateway.handle("GET", "/broken", {"X-Request-ID": "rid-broken"})
    assert r.status == 500
    body = json.loads(r.body)
    assert body == {"error": "internal error", "status": 500, "requestId": "rid-broken"}
    assert header(r, "X-Trace-Response") == "A"  # passed middlewares still answered
    assert (
        "FailRequest" in caplog.text and "plugins.trace.middlewares.TraceMiddleware" in caplog.text
    )
    assert "was told to fail" in caplog.text
    assert gateway.handle("GET", "/traced").status == 200


def test_failing_response_hook_answers_500(gateway: Gateway) -> None:
    r = gateway.handle("GET", "/broken-response")
    assert r.status == 500 and json.loads(r.body)["requestId"]


class PyTrace(PythonMiddleware):
    """A Python middleware that leaves the same trace as the native ones."""

    def __init__(self) -> None:
        self.calls = 0

    def on_request(self, ex: Exchange) -> None:
        self.calls += 1
        ex.set_request_header("X-Trace", (ex.request_header("X-Trace") or "") + ",py")

    def on_response(self, ex: Exchange) -> None:
        ex.set_response_header(
            "X-Trace-Response", (ex.response_header("X-Trace-Response") or "") + ",py"
        )


def test_ten_thousand_requests_with_a_python_middleware_in_a_native_chain(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    folder = write_config(
        tmp_path / "config",
        test_plugin_dir,
        extra_routes="""\
  Mixed:
    gatewayPath: /mixed
    methods: [GET]
    middlewares: [A, Py, B]
    action: Echo
""",
    )
    py = PyTrace()
    with Gateway.from_config(folder, python_elements={"Py": py}) as gw:
        for i in range(10_000):
            r = gw.handle("GET", "/mixed", {"X-Request-ID": f"r{i}"})
            assert r.status == 200
            assert b"trace=A,py,B " in r.body
            assert header(r, "X-Trace-Response") == "B,py,A"
            assert header(r, "X-Request-ID") == f"r{i}"
        assert py.calls == 10_000


class Explodes(PythonMiddleware):
    def on_request(self, ex: Exchange) -> None:
        raise RuntimeError("boom")


class PyHello(PythonAction):
    def handle(self, ex: Exchange) -> None:
        ex.respond(202, b"from python", "text/plain")


def test_python_elements_fail_cleanly_and_python_actions_respond(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    folder = write_config(
        tmp_path / "config",
        test_plugin_dir,
        extra_routes="""\
  Boom:
    gatewayPath: /boom
    methods: [GET]
    middlewares: [A, Explodes]
    action: PyHello
  PyOnly:
    gatewayPath: /py
    methods: [GET]
    middlewares: [A]
    action: PyHello
""",
    )
    elements = {"Explodes": Explodes(), "PyHello": PyHello()}
    with Gateway.from_config(folder, python_elements=elements) as gw:
        r = gw.handle("GET", "/boom")
        assert r.status == 500 and header(r, "X-Trace-Response") == "A"
        r = gw.handle("GET", "/py")
        assert (r.status, r.body, header(r, "X-Trace-Response")) == (202, b"from python", "A")


def test_may_block_chains_run_off_the_event_loop_thread(gateway: Gateway) -> None:
    chain = gateway.router.match("GET", "/blocking").target
    assert chain is not None and chain.may_block
    assert not gateway.router.match("GET", "/traced").target.may_block

    seen: list[str] = []
    real_run = gateway.pipeline.run

    def spy(*args: object) -> object:  # records the thread each chain runs on
        seen.append(threading.current_thread().name)
        return real_run(*args)  # type: ignore[arg-type]

    gateway.pipeline.run = spy  # type: ignore[method-assign]

    async def go() -> None:
        r = await gateway.handle_async("GET", "/blocking")
        assert b"trace=A,Blocking" in r.body
        await gateway.handle_async("GET", "/traced")

    asyncio.run(go())
    assert seen[0] != threading.main_thread().name  # may-block chain: a worker thread
    assert seen[1] == threading.main_thread().name  # others inline


def test_asgi_runs_may_block_static_routes_in_its_worker_threads(gateway: Gateway) -> None:
    """The ASGI app's one-call path: a may-block chain goes to the app's worker pool (its
    threads are named plughost-blocking-N), other chains run on the event loop."""
    from plughost.asgi import GatewayApp

    app = GatewayApp(gateway=gateway)
    app.scope_fast_path = False  # watch the general path (serve_scope takes inline static routes)
    seen: list[str] = []
    real_run = gateway.pipeline.run

    def spy(*args: object) -> object:
        seen.append(threading.current_thread().name)
        return real_run(*args)  # type: ignore[arg-type]

    gateway.pipeline.run = spy  # type: ignore[method-assign]

    async def get(path: str) -> tuple[int, bytes]:
        sent: list[dict[str, object]] = []

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b""}

        await app(
            {
                "type": "http",
                "method": "GET",
                "path": path,
                "headers": [],
                "query_string": b"",
                "client": ("127.0.0.1", 1),
            },
            receive,
            send,
        )
        return sent[0]["status"], sent[1]["body"]  # type: ignore[return-value]

    async def go() -> None:
        status, body = await get("/blocking")
        assert status == 200 and b"trace=A,Blocking" in body
        status, body = await get("/traced")
        assert status == 200

    asyncio.run(go())
    app._blocking.shutdown()
    assert seen[0].startswith("plughost-blocking")
    assert seen[1] == threading.main_thread().name


def test_asgi_scope_fast_path_answers_like_the_general_path(gateway: Gateway) -> None:
    """plughost._fastpath.serve_scope (static inline routes, no body) and the general path
    give the same status, headers and body; HEAD gets no body; a body or an unknown path
    falls back to the general path."""
    from plughost.asgi import GatewayApp

    async def call(
        app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"x", "more_body": False}

        await app(
            {
                "type": "http",
                "method": method,
                "path": path,
                "headers": headers,
                "query_string": b"q=1",
                "client": ("10.0.0.9", 1),
            },
            receive,
            send,
        )
        return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]

    fast = GatewayApp(gateway=gateway)
    pipeline = gateway.pipeline
    assert pipeline.scope is not None
    slow = GatewayApp(gateway=gateway)
    slow.scope_fast_path = False
    calls: list[int] = []
    real = pipeline.scope
    pipeline.scope = lambda *a: calls.append(1) or real(*a)  # type: ignore[assignment]
    rid = [(b"x-request-id", b"rid-7")]
    for method, path, headers in (
        ("GET", "/traced", rid),
        ("HEAD", "/traced", rid),
        ("GET", "/TRACED", rid),
        ("GET", "/nowhere", rid),
        ("POST", "/traced", [*rid, (b"content-length", b"1")]),
    ):
        a = asyncio.run(call(fast, method, path, headers))
        b = asyncio.run(call(slow, method, path, headers))
        a[1].pop(b"x-request-id", None), b[1].pop(b"x-request-id", None)
        assert a == b, (method, path)
    assert asyncio.run(call(fast, "HEAD", "/traced", rid))[2] == b""
    assert b"local=rid-7 ip=10.0.0.9" in asyncio.run(call(fast, "GET", "/traced", rid))[2]
    assert len(calls) == 7  # every request asked serve_scope first
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/traced",
        "headers": rid,
        "query_string": b"",
        "client": ("10.0.0.9", 1),
    }
    assert real(scope)[0]["status"] == 200  # answered in C
    for other in (
        {"path": "/nowhere"},
        {"headers": [(b"content-length", b"1")]},
        {"path": "/health/live"},
        {"path": "/blocking"},
    ):
        assert real({**scope, **other}) is None, other  # general path
    fast._blocking.shutdown()
    slow._blocking.shutdown()


def test_upstream_request_is_performed_and_response_phase_runs(
    gateway: Gateway, upstream: UpstreamServer
) -> None:
    r = gateway.handle("POST", "/proxy/items", {"X-Custom": "1"}, body=b"data", query="x=y")
    assert r.status == 201
    sent = json.loads(r.body)
    assert sent["method"] == "POST" and sent["path"] == "/proxy/items?x=y"
    assert sent["body"] == "data"
    sent_headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert sent_headers["x-custom"] == "1" and sent_headers["x-trace"] == "A"
    assert header(r, "X-Upstream") == "yes"
    assert header(r, "X-Trace-Response") == "A"


def test_upstream_refusing_connections_is_502(tmp_path: Path, test_plugin_dir: Path) -> None:
    folder = write_config(
        tmp_path / "c", test_plugin_dir, upstream=f"http://127.0.0.1:{free_port()}"
    )
    with Gateway.from_config(folder) as gw:
        r = gw.handle("GET", "/proxy/x")
        assert r.status == 502 and json.loads(r.body)["error"] == "bad gateway"
        assert header(r, "X-Trace-Response") == "A"


def test_upstream_timeout_is_504(gateway: Gateway) -> None:
    r = gateway.handle("GET", "/proxy/slow")
    assert r.status == 504 and json.loads(r.body)["error"] == "gateway timeout"


def test_storage_by_name(gateway: Gateway) -> None:
    store = gateway.storage("Memory")
    store.set(b"k", b"v")
    assert store.get(b"k") == b"v"


class Slow(PythonMiddleware):
    """Not thread-safe: records overlapping calls."""

    thread_safe = False

    def __init__(self) -> None:
        self.inside = 0
        self.overlaps = 0

    def on_request(self, ex: Exchange) -> None:
        self.inside += 1
        if self.inside > 1:
            self.overlaps += 1
        import time

        time.sleep(0.001)
        self.inside -= 1


def test_unsafe_python_element_shared_by_blocking_and_inline_chains(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """A non-thread-safe Python middleware in a may-block chain (worker threads, GIL
    released) and an inline chain (event loop) at once: serialised, and no deadlock."""
    folder = write_config(
        tmp_path / "config",
        test_plugin_dir,
        extra_routes="""\
  SlowBlocking:
    gatewayPath: /slow-blocking
    methods: [GET]
    middlewares: [Blocking, Slow]
    action: Echo
  SlowInline:
    gatewayPath: /slow-inline
    methods: [GET]
    middlewares: [Slow]
    action: Echo
""",
    )
    slow = Slow()
    with Gateway.from_config(folder, python_elements={"Slow": slow}) as gw:

        async def go() -> list[int]:
            calls = [
                gw.handle_async("GET", "/slow-blocking" if i % 2 else "/slow-inline")
                for i in range(200)
            ]
            return [r.status for r in await asyncio.wait_for(asyncio.gather(*calls), 60)]

        assert asyncio.run(go()) == [200] * 200
    assert slow.overlaps == 0


def test_unsafe_native_element_that_logs_shared_by_blocking_and_inline_chains(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """A native middleware that is not thread-safe and logs (a call into Python) from a
    may-block chain's worker thread and from inline chains at once: no deadlock."""
    folder = write_config(
        tmp_path / "config",
        test_plugin_dir,
        extra_routes="""\
  UnsafeBlocking:
    gatewayPath: /unsafe-blocking
    methods: [GET]
    middlewares: [Blocking, Unsafe]
    action: Echo
  UnsafeInline:
    gatewayPath: /unsafe-inline
    methods: [GET]
    middlewares: [Unsafe]
    action: Echo
""",
    )
    middlewares = folder / "middlewares.yaml"
    middlewares.write_text(
        middlewares.read_text().replace(
            "globalMiddlewares:",
            """\
  Unsafe:
    use: plugins.trace.middlewares.UnsafeTraceMiddleware
    config: {name: U}
globalMiddlewares:""",
        )
    )
    import logging

    logging.getLogger("plughost.plugin").setLevel(logging.DEBUG)
    with Gateway.from_config(folder) as gw:
        assert gw.router.match("GET", "/unsafe-inline").target.release_gil

        async def go() -> list[int]:
            calls = [
                gw.handle_async("GET", "/unsafe-blocking" if i % 2 else "/unsafe-inline")
                for i in range(200)
            ]
            return [r.status for r in await asyncio.gather(*calls)]

        assert asyncio.run(go()) == [200] * 200
