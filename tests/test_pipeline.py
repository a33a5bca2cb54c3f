"""The request pipeline (plughost.serving.pipeline): one way through for every caller.

In-process ``Gateway.handle``, the ASGI app and plughost's protocol apply the same serving
rules, routing, HEAD and error handling; the C one-call paths answer what the Python steps
would; Python and C exchange a Response or a PendingUpstream.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path
from typing import Any, Iterator

import pytest

from gateway_support import UpstreamServer, write_config
from plughost import Gateway, Response, _fastpath
from plughost.proxy.pending import PendingUpstream
from plughost.serving.pipeline import INTERNAL_ERROR, Request, ServingRules, for_method


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


def configure(tmp_path: Path, plugin_dir: Path, upstream: str, server: str = "") -> Path:
    folder = write_config(tmp_path / "config", plugin_dir, upstream=upstream)
    if server:
        (folder / "server.yaml").write_text("server:\n" + server)
    return folder


@pytest.fixture
def gateway(tmp_path: Path, test_plugin_dir: Path, upstream: UpstreamServer) -> Iterator[Gateway]:
    with Gateway.from_config(configure(tmp_path, test_plugin_dir, upstream.url)) as gw:
        yield gw


async def asgi(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]] = (), body: bytes = b""
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    await app(
        {
            "type": "http",
            "method": method,
            "path": path,
            "headers": list(headers),
            "query_string": b"",
            "client": ("10.0.0.9", 1),
        },
        receive,
        send,
    )
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_in_process_requests_follow_the_serving_rules(gateway: Gateway) -> None:
    live = gateway.handle("GET", "/health/live")
    assert (live.status, live.body) == (200, b'{"status":"live"}')
    assert gateway.handle("GET", "/health/ready").body == b'{"status":"ready"}'
    gateway.ready = False
    assert gateway.handle("GET", "/health/ready").status == 503
    gateway.ready = True


def test_head_keeps_the_headers_of_get_and_drops_the_body(gateway: Gateway) -> None:
    get = gateway.handle("GET", "/")
    head = gateway.handle("HEAD", "/")
    assert get.body and head.body == b"" and head.status == get.status
    assert dict(head.headers)[b"content-length"] == str(len(get.body)).encode()
    response = Response(200, [(b"content-length", b"3")], b"abc")
    assert for_method(response, "HEAD").body == b"" and for_method(response, "GET") is response


def test_get_only_and_body_limit_hold_in_process_and_over_asgi(
    tmp_path: Path, test_plugin_dir: Path, upstream: UpstreamServer
) -> None:
    from plughost.asgi import GatewayApp

    folder = configure(
        tmp_path,
        test_plugin_dir,
        upstream.url,
        "  getOnly: true\n  bodyLimit: 8\n  serverHeader: plughost-test\n",
    )
    with Gateway.from_config(folder) as gw:
        assert gw.pipeline.rules.get_only and gw.pipeline.rules.body_limit == 8
        assert gw.pipeline.native is None  # a rule that needs Python: no one-call path
        post = gw.handle("POST", "/traced", body=b"x")
        assert post.status == 405 and dict(post.headers)[b"allow"] == b"GET, HEAD"
        assert gw.handle("GET", "/traced", body=b"123456789").status == 413
        app = GatewayApp(gateway=gw)
        try:
            status, headers, _ = asyncio.run(
                asgi(app, "POST", "/traced", [(b"content-length", b"1")], b"x")
            )
            assert status == 405 and headers[b"server"] == b"plughost-test"
            status, _, body = asyncio.run(
                asgi(app, "GET", "/traced", [(b"content-length", b"9")], b"123456789")
            )
            assert status == 413 and b"too large" in body
            # a chunked body over the limit, without a Content-Length to refuse it early
            status, _, _ = asyncio.run(
                asgi(app, "GET", "/traced", [(b"transfer-encoding", b"chunked")], b"1" * 9)
            )
            assert status == 413
            assert asyncio.run(asgi(app, "GET", "/health/live"))[0] == 200
        finally:
            app._blocking.shutdown()


def test_the_client_address_rule(tmp_path: Path) -> None:
    rules = ServingRules(proxy_header=b"x-forwarded-for")
    assert (
        rules.client_address([(b"x-forwarded-for", b"203.0.113.7, 10.0.0.1")], b"127.0.0.1")
        == b"203.0.113.7"
    )
    import ipaddress

    trusted = ServingRules(
        proxy_header=b"x-real-ip",
        trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),),
        validate_ip=True,
    )
    assert trusted.client_address([(b"x-real-ip", b"198.51.100.1")], b"10.1.2.3") == b"198.51.100.1"
    assert (
        trusted.client_address([(b"x-real-ip", b"198.51.100.1")], b"192.0.2.1") == b"192.0.2.1"
    )  # not a trusted peer
    assert trusted.client_address([(b"x-real-ip", b"nonsense")], b"10.1.2.3") == b"10.1.2.3"
    assert ServingRules().client_address([(b"x-forwarded-for", b"1.2.3.4")], b"::1") == b"::1"


def test_a_chain_run_is_a_response_or_a_pending_upstream(gateway: Gateway) -> None:
    pipeline = gateway.pipeline
    chain, params = gateway.route("GET", "/traced")  # type: ignore[misc]
    result = pipeline.run(chain, params, Request("GET", "/traced", [], b"q=1", b"10.0.0.1"))
    assert type(result) is Response and result.status == 200
    chain, params = gateway.route("GET", "/proxy/x")  # type: ignore[misc]
    pending = pipeline.run(chain, params, Request("GET", "/proxy/x"))
    assert type(pending) is PendingUpstream and pending.open
    assert pending.directive().url.endswith("/x")
    pending.discard()
    assert not pending.open
    with pytest.raises(RuntimeError, match="already finished or discarded"):
        pending.directive()


def test_an_element_failure_is_logged_on_every_path(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("ERROR", logger="plughost.gateway"):
        assert gateway.handle("GET", "/broken").status == 500
        date = b"date: x\r\n"
        data = gateway.pipeline.plain(b"GET", b"/broken", [], None, date)
        assert data.startswith(b"HTTP/1.1 500 ")
    failures = [r for r in caplog.records if "route Broken" in r.getMessage()]
    assert len(failures) == 2, caplog.text


def test_the_host_failing_is_a_500_not_a_traceback(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("the host broke")

    gateway.pipeline.run = broken  # type: ignore[method-assign]
    with caplog.at_level("ERROR", logger="plughost.gateway"):
        assert gateway.handle("GET", "/users/7") is INTERNAL_ERROR
    assert "unexpected error handling GET /users/7" in caplog.text


def test_the_chain_sees_the_path_the_client_wrote_on_every_path(gateway: Gateway) -> None:
    """Routing ignores case (caseSensitive off), but the chain and the upstream get the path
    as written, whichever path served the request."""
    from plughost.asgi import GatewayApp

    in_process = gateway.handle("GET", "/TRACED").body
    assert in_process.startswith(b"GET /TRACED ")
    raw = _fastpath.serve_raw(gateway.pipeline.native, b"GET", b"/TRACED", [], "10.0.0.9", b"")
    assert raw.split(b"\r\n\r\n", 1)[1].startswith(b"GET /TRACED ")
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/TRACED",
        "headers": [],
        "query_string": b"",
        "client": ("10.0.0.9", 1),
    }
    start, body = gateway.pipeline.scope(scope)
    assert start["status"] == 200 and body["body"].startswith(b"GET /TRACED ")
    app = GatewayApp(gateway=gateway)
    try:
        assert asyncio.run(asgi(app, "GET", "/TRACED"))[2].startswith(b"GET /TRACED ")
    finally:
        app._blocking.shutdown()


def test_a_closed_gateway_is_freed(
    tmp_path: Path, test_plugin_dir: Path, upstream: UpstreamServer
) -> None:
    """The C one-call path's Native refers back to the runner that owns it: the cycle is
    collected, so a closed gateway (and its plugins' libraries) does not live on."""
    gateway = Gateway.from_config(configure(tmp_path, test_plugin_dir, upstream.url))
    assert gateway.pipeline.native is not None
    assert gateway.handle("GET", "/traced").status == 200
    ref = weakref.ref(gateway)
    gateway.close()
    del gateway
    gc.collect()
    assert ref() is None
