"""`plughost serve` over real HTTP on loopback: the embedded default, a Seam configuration
folder, health routes, 404/405/413, TLS, several workers, graceful shutdown, and a refusal
to start on a bad configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway_support import PLUGHOST, Server, free_port, wait_for_http, write_config


@pytest.fixture
def config_dir(tmp_path: Path, test_plugin_dir: Path) -> Path:
    return write_config(tmp_path / "config", test_plugin_dir)


def test_embedded_default_answers_hello_and_health() -> None:
    server = Server()
    try:
        status, headers, body = server.get("/")
        assert status == 200 and json.loads(body) == {"message": "hello from plughost"}
        assert len(headers["X-Request-ID"]) == 36  # the requestid plugin ran
        assert "Server" not in headers  # as Fiber: only with server.serverHeader
        assert server.get("/health/live")[0] == 200
        status, _, body = server.get("/health/ready")
        assert status == 200 and json.loads(body) == {"status": "ready"}
        assert server.get("/missing")[0] == 404
        status, headers, _ = server.request("POST", "/", body=b"x")
        assert status == 405 and headers["allow"] == "GET, HEAD"
    finally:
        server.stop()


def test_embedded_default_listens_on_8090_by_default() -> None:
    from plughost.defaults import default_config

    env = {k: v for k, v in os.environ.items() if k != "PLUGHOST_ADDRESS"}
    server = default_config(env).server
    assert (server.host, server.port) == ("127.0.0.1", 8090)


def test_config_folder_routes_over_http_and_graceful_shutdown(
    config_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    plugins = config_dir / "plugins.yaml"
    plugins.write_text(
        plugins.read_text().replace(
            "trace.so\n", f"trace.so\n    config:\n      marker: {marker}\n"
        )
    )
    server = Server("--config", str(config_dir))
    try:
        status, headers, body = server.get("/users/7?x=1", headers={"X-Request-ID": "abc"})
        assert status == 200
        assert (
            body == b"GET /users/7 x=1 trace=A id=7 rest= route=User body= local=abc ip=127.0.0.1"
        )
        assert headers["X-Trace-Response"] == "A" and headers["X-Request-ID"] == "abc"
        status, _, body = server.request("POST", "/traced", body=b"hello body")
        assert status == 200 and b"body=hello body" in body
        status, _, body = server.get("/broken")
        assert status == 500 and json.loads(body)["error"] == "internal error"
        assert server.get("/traced")[0] == 200  # still serving after a failure
        # serve validated the configuration by building the gateway once, then closed it
        assert marker.read_text() == "shutdown\n"
    finally:
        out = server.stop()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see the signal
    assert server.proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out
    assert marker.read_text() == "shutdown\n" * 2  # the worker shut every plugin down too
    assert "Traceback" not in out


def test_body_limit_413(config_dir: Path) -> None:
    (config_dir / "server.yaml").write_text("server:\n  bodyLimit: 1024\n")
    server = Server("--config", str(config_dir))
    try:
        assert server.request("POST", "/traced", body=b"x" * 1024)[0] == 200
        status, _, body = server.request("POST", "/traced", body=b"x" * 1025)
        assert status == 413 and json.loads(body)["status"] == 413
    finally:
        server.stop()


def test_tls_from_server_yaml(config_dir: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    (config_dir / "server.yaml").write_text(
        f"server:\n  tls: true\n  certFile: {cert}\n  keyFile: {key}\n"
    )
    server = Server("--config", str(config_dir), scheme="https")
    try:
        status, _, body = server.get("/")
        assert (status, body) == (200, b"hello")
    finally:
        server.stop()


def test_two_workers_both_serve(config_dir: Path) -> None:
    server = Server("--config", str(config_dir), "--workers", "2")
    try:
        for _ in range(20):
            assert server.get("/")[0] == 200
    finally:
        out = server.stop()
    assert "Traceback" not in out


def test_prefork_runs_one_worker_per_core(config_dir: Path) -> None:
    """Seam's production setting: ``prefork: true`` runs one worker process per core, as
    ``--workers N`` does (an explicit --workers wins)."""
    import os

    (config_dir / "server.yaml").write_text("server:\n  prefork: true\n")
    server = Server("--config", str(config_dir))
    try:
        assert server.get("/")[0] == 200
        assert f"with {os.cpu_count()} worker(s)" in server.output()
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text()
        workers = len(children.split())
        assert workers >= (os.cpu_count() or 1), children  # the workers (and a tracker)
    finally:
        out = server.stop()
    assert "Traceback" not in out


def test_bad_configuration_refuses_to_start_with_every_problem(config_dir: Path) -> None:
    (config_dir / "middlewares.yaml").write_text(
        (config_dir / "middlewares.yaml")
        .read_text()
        .replace(
            "plugins.requestid.middlewares.RequestIdMiddleware",
            "plugins.requestid.middlewares.RequestIDMiddleware",
        )
        .replace("config: {name: B}", "config: {name: B, fail: sometimes}")
    )
    proc = subprocess.run(
        [PLUGHOST, "serve", "--config", str(config_dir), "--address", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    err = proc.stderr
    assert (
        "middlewares.yaml:3: middlewares.RequestID.use: no loaded plugin provides "
        "'plugins.requestid.middlewares.RequestIDMiddleware': did you mean "
        "'plugins.requestid.middlewares.RequestIdMiddleware'?" in err
    )
    assert 'middlewares.yaml:9: middlewares.B.config.fail: must be "request" or "response"' in err
    assert "2 problem(s) in the configuration; nothing was started" in err
    assert "Traceback" not in err


def test_server_header_and_disabled_health_checks(config_dir: Path) -> None:
    (config_dir / "server.yaml").write_text(
        "server:\n  serverHeader: plughost-test\n  disableHealthCheck: true\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [PLUGHOST, "serve", "--config", str(config_dir), "--address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with wait_for_http(f"http://127.0.0.1:{port}/", proc) as resp:
            assert resp.headers["Server"] == "plughost-test"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=5)
        assert info.value.code == 404  # no health route: an ordinary unknown path
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_krakend_folder_env_list_routes_services_and_upstream_over_http(
    tmp_path: Path, test_plugin_dir: Path
) -> None:
    """One Seam configuration using the alternative forms at once, served for real."""
    from gateway_support import UpstreamServer, private_plugins

    private_plugins(test_plugin_dir, tmp_path / "plugins")
    (tmp_path / "gateway.yaml").write_text("""\
plugin:
  folder: ./plugins
  pattern: .so
middlewares:
  RequestID: {use: plugins.requestid.middlewares.RequestIdMiddleware}
  A: {use: plugins.trace.middlewares.TraceMiddleware, config: {name: A}}
  S: {use: plugins.trace.middlewares.TraceMiddleware, config: {name: service}}
globalMiddlewares: [RequestID]
actions:
  Echo:
    use: plugins.trace.actions.EchoAction
  Forward:
    use: plugins.trace.actions.ForwardAction
    config:
      url: ${UPSTREAM_URL}
      timeout: ${UPSTREAM_TIMEOUT:-2s}
routes:
  - path: /users/:id
    method: GET
    middlewares: [A]
    action: Echo
  - path: /proxy/*
    method: [GET, POST]
    action: Forward
services:
  Api:
    gatewayBasePath: /api/v1
    middlewares: [S]
    routes: ["GET /users/:id", "GET,POST /proxy/*"]
""")
    with UpstreamServer() as upstream:
        server = Server(
            "--config", str(tmp_path / "gateway.yaml"), env={"UPSTREAM_URL": upstream.url}
        )
        try:
            status, headers, body = server.get("/api/v1/users/5")
            assert status == 200, body
            assert b"/api/v1/users/5" in body and b"trace=service,A id=5" in body
            assert headers["X-Trace-Response"] == "A,service"
            assert server.get("/users/5")[0] == 404  # only as the service mounts it
            status, headers, body = server.request(
                "POST",
                "/api/v1/proxy/things?a=b",
                body=b"payload",
                headers={"Content-Type": "text/plain"},
            )
            assert status == 201 and headers["X-Upstream"] == "yes"
            sent = json.loads(body)
            assert sent["path"] == "/api/v1/proxy/things?a=b" and sent["body"] == "payload"
        finally:
            server.stop()


def test_chunked_request_bodies_and_their_limit(config_dir: Path) -> None:
    import http.client

    (config_dir / "server.yaml").write_text("server:\n  bodyLimit: 100\n")
    server = Server("--config", str(config_dir))
    try:

        def post_chunked(chunks: list[bytes]) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request(
                "POST",
                "/traced",
                body=iter(chunks),
                encode_chunked=True,
                headers={"Transfer-Encoding": "chunked"},
            )
            resp = conn.getresponse()
            out = resp.status, resp.read()
            conn.close()
            return out

        status, body = post_chunked([b"ab", b"cd"])
        assert status == 200 and b"body=abcd" in body
        status, body = post_chunked([b"x" * 60, b"y" * 60])
        assert status == 413
    finally:
        server.stop()


def test_seam_routing_and_proxy_options_over_http(config_dir: Path) -> None:
    """caseSensitive (off by default), strictRouting, getOnly, proxyHeader with
    enableTrustedProxyCheck/trustedProxies, as Seam's server.yaml documents them."""
    routes = config_dir / "routes.yaml"
    routes.write_text(
        routes.read_text()
        + """\
  Ip:
    gatewayPath: /ip
    methods: [GET, POST]
    action: Echo
"""
    )
    server = Server("--config", str(config_dir))
    try:  # defaults: case-insensitive, trailing slash ignored, any method, no proxy header
        assert server.get("/TRACED")[0] == 200
        assert server.get("/Users/AbC")[2].startswith(b"GET /Users/AbC ")  # params keep case
        assert b" id=AbC " in server.get("/users/AbC")[2]
        assert server.get("/traced/")[0] == 200
        assert server.request("POST", "/traced", body=b"")[0] == 200
        # no proxyHeader configured: a client cannot claim another address
        _, _, body = server.get("/ip", headers={"X-Forwarded-For": "203.0.113.9"})
        assert body.endswith(b" ip=127.0.0.1")
    finally:
        server.stop()

    (config_dir / "server.yaml").write_text("""\
server:
  caseSensitive: true
  strictRouting: true
  getOnly: true
  proxyHeader: X-Forwarded-For
  enableTrustedProxyCheck: true
  trustedProxies: [127.0.0.0/8]
""")
    server = Server("--config", str(config_dir))
    try:
        assert server.get("/TRACED")[0] == 404
        assert server.get("/traced/")[0] == 404
        assert server.get("/traced")[0] == 200
        status, headers, _ = server.request("POST", "/traced", body=b"")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        # the peer (127.0.0.1) is trusted: the client address comes from the header, read
        # from the right: 10.0.0.1 is not a trusted proxy, so it is the client the last
        # proxy saw (what stands left of it was written by that client)
        _, _, body = server.get("/ip", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"})
        assert body.endswith(b" ip=10.0.0.1")
        _, _, body = server.get("/ip", headers={"X-Forwarded-For": "203.0.113.9, 127.0.0.5"})
        assert body.endswith(b" ip=203.0.113.9")  # past a trusted proxy's own entry
        assert server.get("/ip")[2].endswith(b" ip=127.0.0.1")  # no header: the peer
    finally:
        server.stop()


def test_proxy_header_ignored_from_untrusted_peers(config_dir: Path) -> None:
    routes = config_dir / "routes.yaml"
    routes.write_text(
        routes.read_text() + "  Ip:\n    gatewayPath: /ip\n    methods: [GET]\n    action: Echo\n"
    )
    (config_dir / "server.yaml").write_text(
        "server:\n  proxyHeader: X-Forwarded-For\n  enableTrustedProxyCheck: true\n"
        "  trustedProxies: [10.0.0.0/8]\n"
    )
    server = Server("--config", str(config_dir))
    try:
        _, _, body = server.get("/ip", headers={"X-Forwarded-For": "203.0.113.9"})
        assert body.endswith(b" ip=127.0.0.1")  # 127.0.0.1 is not a trusted proxy
    finally:
        server.stop()
