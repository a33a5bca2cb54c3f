"""The httpfw plugin (plugins.httpfw.actions.HttpAction and BalancerHttpAction): the real
httpfw.so through the gateway in-process against real upstream HTTP servers started here
(method, path, query, headers and body forwarded; hop-by-hop headers dropped both ways;
X-Forwarded-*; Seam's URL rule; 502 and 504), the balancer's round-robin and its active health
checks (an upstream that closes is skipped, and used again when it comes back), configuration
errors naming the key, and one run over real HTTP with `plughost serve`."""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest

from plughost.config import ConfigErrors

from gateway_support import Server, free_port, gateways

SEAM = Path(__file__).resolve().parent / "data" / "seam"

HTTP = "plugins.httpfw.actions.HttpAction"
BALANCER = "plugins.httpfw.actions.BalancerHttpAction"


# ------------------------------------------------------------------ upstream servers


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every method with JSON of what it received; records it on the server."""

    protocol_version = "HTTP/1.1"
    server: "_RecordingHTTPServer"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = {
            "name": self.server.name,
            "method": self.command,
            "target": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.hex(),
        }
        self.server.seen.append(seen)
        if self.path.startswith("/slow"):
            time.sleep(2)
        payload = json.dumps(seen).encode()
        self.send_response(207)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", self.server.name)
        self.send_header("Connection", "X-Upstream-Hop")  # names a hop-by-hop header
        self.send_header("X-Upstream-Hop", "secret")
        self.send_header("Keep-Alive", "timeout=5")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


class _RecordingHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, name: str, seen: list[dict[str, Any]]) -> None:
        self.name = name
        self.seen = seen
        super().__init__(("127.0.0.1", port), _Recorder)


class Upstream:
    """A real HTTP server on 127.0.0.1 that records what it received; can be stopped and
    started again on the same port."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[dict[str, Any]] = []
        self.port = 0
        self._server: _RecordingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = _RecordingHTTPServer(self.port, self.name, self.seen)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = None


@pytest.fixture
def upstreams() -> Iterator[list[Upstream]]:
    servers = [Upstream(name) for name in ("u1", "u2", "u3")]
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


# ------------------------------------------------------------------ configurations


def write_gateway(folder: Path, plugin_dir: Path, actions: dict[str, Any]) -> Path:
    """A Seam config folder: the given actions (name -> {use, config}) and routes to each:
    /<name>/* (any method), /<name>-exact (GET, POST) and /<name>-user/:id (GET)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugins.yaml").write_text(f"plugins:\n  - path: {plugin_dir / 'httpfw.so'}\n")
    (folder / "actions.yaml").write_text(json.dumps({"actions": actions}))
    routes: dict[str, Any] = {}
    for name in actions:
        routes[f"{name}Wild"] = {"gatewayPath": f"/{name}/*", "methods": ["ALL"], "action": name}
        routes[f"{name}Exact"] = {
            "gatewayPath": f"/{name}-exact",
            "methods": ["GET", "POST"],
            "action": name,
        }
        routes[f"{name}User"] = {
            "gatewayPath": f"/{name}-user/:id",
            "methods": ["GET"],
            "action": name,
        }
    (folder / "routes.yaml").write_text(json.dumps({"routes": routes}))
    return folder


@pytest.fixture
def make(tmp_path: Path, plugin_dir: Path) -> Iterator[Any]:
    with gateways(tmp_path, write_gateway, plugin_dir) as build:
        yield build


def http_action(url: str, **extra: Any) -> dict[str, Any]:
    return {"use": HTTP, "config": {"upstreamEndpoint": url, **extra}}


def balancer(urls: list[str], **extra: Any) -> dict[str, Any]:
    return {"use": BALANCER, "config": {"upstreamEndpoints": urls, **extra}}


def sent(response: Any) -> dict[str, Any]:
    """What the upstream received, as it echoed it."""
    assert response.status == 207, (response.status, response.body)
    return json.loads(response.body)


def hdrs(seen: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in seen["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def resp_header(response: Any, name: str) -> list[str]:
    return [v.decode("latin-1") for k, v in response.headers if k.lower() == name.lower().encode()]


def config_error(make: Any, action: dict[str, Any]) -> str:
    with pytest.raises(ConfigErrors) as exc:
        make({"Fw": action})
    return str(exc.value)


# ------------------------------------------------------------------ HttpAction


def test_method_path_query_headers_and_body_are_forwarded(
    make: Any, upstreams: list[Upstream]
) -> None:
    gw = make({"Fw": http_action(upstreams[0].url + "/base/")})
    body = bytes(range(256))
    r = gw.handle(
        "PUT",
        "/Fw/users/42",
        [
            ("X-Custom", "one"),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("Content-Type", "application/x"),
        ],
        body=body,
        query="a=1&b=%20x&a=2",
    )
    seen = sent(r)
    assert seen["method"] == "PUT"
    assert seen["target"] == "/base/users/42?a=1&b=%20x&a=2"
    assert bytes.fromhex(seen["body"]) == body
    h = hdrs(seen)
    assert h["x-custom"] == ["one"] and h["x-multi"] == ["a", "b"]
    assert h["content-type"] == ["application/x"]
    assert h["host"] == [f"127.0.0.1:{upstreams[0].port}"]  # the upstream's, not the client's
    # nothing the client did not send: no Accept-Encoding, User-Agent or Accept invented
    assert not {"accept-encoding", "user-agent", "accept"} & set(h)
    # the upstream's answer comes back: status, headers, body
    assert resp_header(r, "X-Upstream") == ["u1"]
    assert resp_header(r, "Content-Type") == ["application/json"]
    for method in ("GET", "POST", "DELETE", "PATCH", "OPTIONS"):
        assert sent(gw.handle(method, "/Fw/x"))["method"] == method


def test_upstream_url_follows_seams_rule(make: Any, upstreams: list[Upstream]) -> None:
    """Endpoint path + what the route's `*` matched (nothing for other routes) + query."""
    base = upstreams[0].url
    gw = make({"Fw": http_action(base + "/base"), "Bare": http_action(base)})
    target = lambda r: sent(r)["target"]  # noqa: E731
    assert target(gw.handle("GET", "/Fw/a/b/")) == "/base/a/b"
    assert target(gw.handle("GET", "/Fw")) == "/base"
    assert target(gw.handle("GET", "/Fw-exact", query="q=1")) == "/base?q=1"
    assert target(gw.handle("GET", "/Fw-user/42")) == "/base"
    assert target(gw.handle("GET", "/Bare/x", query="q")) == "/x?q"
    assert target(gw.handle("GET", "/Bare-exact")) == "/"
    # the decoded path is encoded again; dot segments never climb above the endpoint's path
    assert target(gw.handle("GET", "/Fw/a b/\u00fc/what?no")) == "/base/a%20b/%C3%BC/what%3Fno"
    assert target(gw.handle("GET", "/Fw/a/../../../etc/./passwd")) == "/base/etc/passwd"
    assert target(gw.handle("GET", "/Fw/100%")) == "/base/100%25"
    deep = "/Fw/" + "/".join(f"s{i}" for i in range(300)) + "/.." * 299
    assert target(gw.handle("GET", deep)) == "/base/s0"


def test_hop_by_hop_headers_are_dropped_both_ways(make: Any, upstreams: list[Upstream]) -> None:
    gw = make({"Fw": http_action(upstreams[0].url)})
    r = gw.handle(
        "GET",
        "/Fw/x",
        [
            ("Connection", "X-Hop, keep-alive"),
            ("X-Hop", "secret"),
            ("Keep-Alive", "300"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Proxy-Connection", "keep-alive"),
            ("Trailer", "X-T"),
            ("X-Kept", "yes"),
        ],
    )
    h = hdrs(sent(r))
    assert h["x-kept"] == ["yes"]
    for name in (
        "connection",
        "x-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "trailer",
    ):
        assert name not in h, name
    # the upstream's Connection header, the header it names and Keep-Alive stay behind
    for name in ("Connection", "X-Upstream-Hop", "Keep-Alive"):
        assert resp_header(r, name) == [], name


def test_x_forwarded_headers(make: Any, upstreams: list[Upstream]) -> None:
    gw = make(
        {
            "Fw": http_action(upstreams[0].url),
            "Tls": http_action(upstreams[0].url, forwardedProto="https"),
            "Trust": http_action(upstreams[0].url, trustForwardedHeaders=True),
        }
    )
    h = hdrs(sent(gw.handle("GET", "/Fw/x", {"Host": "gw.example:8090"}, client_ip="203.0.113.7")))
    assert h["x-forwarded-for"] == ["203.0.113.7"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["gw.example:8090"]
    # an existing chain is appended to (every value of every X-Forwarded-For header); the
    # client's X-Forwarded-Proto/-Host are replaced unless trustForwardedHeaders
    spoofed = [
        ("Host", "gw.example"),
        ("X-Forwarded-For", "198.51.100.1, 10.0.0.1"),
        ("X-Forwarded-For", "10.0.0.2"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
    ]
    h = hdrs(sent(gw.handle("GET", "/Fw/x", spoofed, client_ip="10.0.0.3")))
    assert h["x-forwarded-for"] == ["198.51.100.1, 10.0.0.1, 10.0.0.2, 10.0.0.3"]
    assert h["x-forwarded-proto"] == ["http"] and h["x-forwarded-host"] == ["gw.example"]
    h = hdrs(sent(gw.handle("GET", "/Tls/x", spoofed, client_ip="10.0.0.3")))
    assert h["x-forwarded-proto"] == ["https"]
    h = hdrs(sent(gw.handle("GET", "/Trust/x", spoofed, client_ip="10.0.0.3")))
    assert h["x-forwarded-proto"] == ["https"] and h["x-forwarded-host"] == ["evil.example"]
    assert h["x-forwarded-for"] == ["198.51.100.1, 10.0.0.1, 10.0.0.2, 10.0.0.3"]
    h = hdrs(sent(gw.handle("GET", "/Trust/x", {"Host": "gw.example"})))
    assert h["x-forwarded-proto"] == ["http"] and h["x-forwarded-host"] == ["gw.example"]
    # no Host: no X-Forwarded-Host (and a client's one does not pass)
    h = hdrs(sent(gw.handle("GET", "/Fw/x", {"X-Forwarded-Host": "evil.example"})))
    assert "x-forwarded-host" not in h


def test_refused_is_502_and_timeout_is_504(make: Any, upstreams: list[Upstream]) -> None:
    gw = make(
        {
            "Closed": http_action(f"http://127.0.0.1:{free_port()}"),
            "Slow": http_action(upstreams[0].url, timeout="300ms", connectTimeout="1s"),
        }
    )
    r = gw.handle("GET", "/Closed/x")
    assert r.status == 502 and json.loads(r.body)["error"] == "bad gateway"
    start = time.monotonic()
    r = gw.handle("GET", "/Slow/slow")
    assert r.status == 504 and json.loads(r.body)["error"] == "gateway timeout"
    assert time.monotonic() - start < 1.9  # the action's timeout, not the upstream's 2 s


# ------------------------------------------------------------------ BalancerHttpAction


def names(gw: Any, n: int, path: str = "/Lb/x") -> list[str]:
    out = []
    for _ in range(n):
        r = gw.handle("GET", path)
        out.append(sent(r)["name"])
    return out


def test_balancer_round_robin(make: Any, upstreams: list[Upstream]) -> None:
    gw = make({"Lb": balancer([u.url + "/svc" for u in upstreams])})
    got = names(gw, 9)
    assert sorted(set(got)) == ["u1", "u2", "u3"]
    assert got[:3] * 3 == got  # a fixed rotation
    assert sent(gw.handle("POST", "/Lb/a/b", body=b"x", query="q=1"))["target"] == "/svc/a/b?q=1"


def wait_until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_balancer_skips_a_closed_upstream_and_uses_it_again(
    make: Any, upstreams: list[Upstream], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plughost")
    gw = make(
        {
            "Lb": balancer(
                [u.url for u in upstreams], healthCheckInterval="100ms", healthCheckTimeout="200ms"
            )
        }
    )
    assert sorted(names(gw, 3)) == ["u1", "u2", "u3"]
    upstreams[1].stop()
    # within a few health-check intervals, the closed one is skipped: no more 502
    wait_until(lambda: all(gw.handle("GET", "/Lb/x").status == 207 for _ in range(3)))
    got = names(gw, 6)
    assert sorted(got) == ["u1", "u1", "u1", "u3", "u3", "u3"]
    assert f"upstream {upstreams[1].url} is down, skipped" in caplog.text
    upstreams[1].start()
    before = len(upstreams[1].seen)
    wait_until(lambda: gw.handle("GET", "/Lb/x").status == 207 and len(upstreams[1].seen) > before)
    assert sorted(names(gw, 6)) == ["u1", "u1", "u2", "u2", "u3", "u3"]
    assert f"upstream {upstreams[1].url} is up again" in caplog.text


def test_balancer_with_every_upstream_down_still_tries_them(
    make: Any, upstreams: list[Upstream]
) -> None:
    gw = make({"Lb": balancer([u.url for u in upstreams], healthCheckInterval="100ms")})
    for u in upstreams:
        u.stop()
    time.sleep(0.5)
    for _ in range(3):
        r = gw.handle("GET", "/Lb/x")
        assert r.status == 502  # tried (and refused), never answered by the plugin itself
    upstreams[2].start()
    wait_until(lambda: gw.handle("GET", "/Lb/x").status == 207)
    assert names(gw, 3) == ["u3"] * 3


def test_balancer_without_health_checks(make: Any, upstreams: list[Upstream]) -> None:
    gw = make({"Lb": balancer([u.url for u in upstreams], healthCheckInterval=0)})
    upstreams[0].stop()
    statuses = [gw.handle("GET", "/Lb/x").status for _ in range(6)]
    assert statuses.count(502) == 2 and statuses.count(207) == 4


def test_seam_examples_as_written(make: Any) -> None:
    """Seam's page's actions.yaml files, unchanged: accepted, and the requests are forwarded
    (502 when nothing listens on localhost:808N, as here normally)."""
    import yaml

    single = yaml.safe_load((SEAM / "httpfw" / "actions.yaml").read_text())["actions"]
    many = yaml.safe_load((SEAM / "httpfw-balancer" / "actions.yaml").read_text())["actions"]
    gw = make({**single, **many})
    assert gw.handle("GET", "/ForwardToService-exact").status not in (404, 500)
    assert gw.handle("POST", "/LoadBalancedForward-exact").status not in (404, 500)


# ------------------------------------------------------------------ configuration errors


@pytest.mark.parametrize(
    "url, why",
    [
        ("ftp://example.com", "absolute http:// or https:// URL"),
        ("localhost:8080", "absolute http:// or https:// URL"),
        ("http://", "has no host"),
        ("http://:8080", "has no host"),
        ("http://example.com:99999", "invalid port"),
        ("http://example.com:http", "invalid port"),
        ("http://example.com/p?x=1", "must not have a query"),
        ("http://user:pw@example.com", "credentials"),
        ("http://exa mple.com", "without spaces"),
        ("http://[::1", "malformed IPv6"),
        ("http://example.com/100%", "percent-encode"),
        ("http://example.com/{id}", "percent-encode"),
    ],
)
def test_bad_upstream_endpoint(make: Any, url: str, why: str) -> None:
    msg = config_error(make, http_action(url))
    assert "upstreamEndpoint" in msg and why in msg, msg


def test_config_errors_name_the_key(make: Any) -> None:
    msg = config_error(make, {"use": HTTP})
    assert (
        f"actions.Fw.config.upstreamEndpoint: 'upstreamEndpoint' is missing, and {HTTP} "
        "needs it" in msg
    ), msg
    msg = config_error(make, {"use": HTTP, "config": {"upstreamEndpoint": ""}})
    assert "upstreamEndpoint" in msg and "is empty: give it a string" in msg
    msg = config_error(make, {"use": BALANCER, "config": {"upstreamEndpoints": []}})
    assert "upstreamEndpoints" in msg and "is empty: give it a list with at least one entry" in msg
    msg = config_error(make, {"use": BALANCER})
    assert "upstreamEndpoints" in msg
    msg = config_error(make, balancer(["http://a:1", "gopher://b"]))
    assert "upstreamEndpoints" in msg and "entry 2" in msg
    msg = config_error(make, balancer(["http://a:1", 5]))
    assert "upstreamEndpoints" in msg and "entry 2" in msg
    msg = config_error(make, {"use": BALANCER, "config": {"upstreamEndpoints": "http://a:1"}})
    assert "upstreamEndpoints" in msg and "list" in msg
    for key in ("timeout", "connectTimeout"):
        assert key in config_error(make, http_action("http://a:1", **{key: "-1s"}))
        msg = config_error(make, http_action("http://a:1", **{key: 0}))
        assert key in msg and "it must be at least 1ms" in msg, msg
    for key in ("healthCheckInterval", "healthCheckTimeout"):
        msg = config_error(make, balancer(["http://a:1"], **{key: "-5s"}))
        assert key in msg and "negative" in msg, msg
    msg = config_error(make, http_action("http://a:1", forwardedProto="ftp"))
    assert "forwardedProto" in msg and "not one of 'http' or 'https'" in msg, msg
    msg = config_error(make, http_action("http://a:1", timout="1s"))
    assert "timout" in msg and "did you mean 'timeout'" in msg
    msg = config_error(make, {"use": HTTP, "config": {"upstreamEndpoints": ["http://a:1"]}})
    assert f"{HTTP} has no option 'upstreamEndpoints': did you mean 'upstreamEndpoint'?" in msg
    msg = config_error(make, http_action("http://a:1", healthCheckInterval="1s"))
    assert f"{HTTP} has no option 'healthCheckInterval'" in msg, msg
    msg = config_error(make, balancer([f"http://a:{i + 1}" for i in range(65)]))
    assert "upstreamEndpoints" in msg and "at most 64" in msg


def test_option_names_ignore_case_and_urls_are_normalised(
    make: Any, upstreams: list[Upstream]
) -> None:
    url = upstreams[0].url.replace("http://", "HTTP://")
    gw = make(
        {"Fw": {"use": HTTP, "config": {"UpstreamEndpoint": url + "/p%20q/", "Timeout": "5s"}}}
    )
    assert sent(gw.handle("GET", "/Fw/x"))["target"] == "/p%20q/x"


def test_option_names_are_checked_by_the_schema_and_ignore_case(
    make: Any, tmp_path: Path, plugin_dir: Path, upstreams: list[Upstream]
) -> None:
    from plughost import Gateway

    # a misspelt option: refused before create runs, at its own file, line and key
    folder = write_gateway(
        tmp_path / "typo", plugin_dir, {"Lb": balancer(["http://a:1"], healthCheckIntervall="5s")}
    )
    with pytest.raises(ConfigErrors) as exc:
        Gateway.from_config(folder)
    path = folder / "actions.yaml"
    line = next(
        n for n, t in enumerate(path.read_text().splitlines(), 1) if "healthCheckIntervall" in t
    )
    assert (
        f"{path}:{line}: actions.Lb.config.healthCheckIntervall: {BALANCER} has no "
        "option 'healthCheckIntervall': did you mean 'healthCheckInterval'?"
    ) in str(exc.value), str(exc.value)

    # the same options written in other case are accepted and take effect
    gw = make(
        {
            "Fw": {
                "use": HTTP,
                "config": {
                    "UPSTREAMENDPOINT": upstreams[0].url,
                    "forwardedproto": "HTTPS",
                    "TrustForwardedHeaders": False,
                },
            },
            "Lb": {
                "use": BALANCER,
                "config": {"UpstreamEndpoints": [upstreams[1].url], "HEALTHCHECKINTERVAL": 0},
            },
        }
    )
    assert hdrs(sent(gw.handle("GET", "/Fw/x")))["x-forwarded-proto"] == ["https"]
    assert sent(gw.handle("GET", "/Lb/x"))["target"] == "/x"


# ------------------------------------------------------------------ over real HTTP


def test_served_over_http(tmp_path: Path, plugin_dir: Path, upstreams: list[Upstream]) -> None:
    folder = write_gateway(
        tmp_path / "config",
        plugin_dir,
        {
            "Fw": http_action(upstreams[0].url + "/api"),
            "Lb": balancer([u.url for u in upstreams]),
            "Closed": http_action(f"http://127.0.0.1:{free_port()}"),
        },
    )
    with Server("--config", str(folder)) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request(
                "POST",
                "/Fw/items?x=%2F",
                body=b"payload",
                headers={
                    "Connection": "X-Hop",
                    "X-Hop": "secret",
                    "X-Custom": "1",
                    "X-Forwarded-For": "198.51.100.9",
                },
            )
            resp = conn.getresponse()
            payload = resp.read()
            assert resp.status == 207, payload
            assert resp.getheader("X-Upstream") == "u1"
            assert resp.getheader("X-Upstream-Hop") is None
        finally:
            conn.close()
        seen = json.loads(payload)
        h = hdrs(seen)
        assert seen["method"] == "POST" and seen["target"] == "/api/items?x=%2F"
        assert bytes.fromhex(seen["body"]) == b"payload"
        assert h["x-custom"] == ["1"] and "x-hop" not in h and "connection" not in h
        assert h["x-forwarded-for"] == ["198.51.100.9, 127.0.0.1"]
        assert h["x-forwarded-host"] == [f"127.0.0.1:{server.port}"]
        assert h["x-forwarded-proto"] == ["http"]
        # concurrent requests: the atomic counter shares them out exactly
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda _: json.loads(server.get("/Lb/x")[2])["name"], range(30)))
        assert sorted(got) == ["u1"] * 10 + ["u2"] * 10 + ["u3"] * 10
        # a refused upstream is a 502, and the server goes on serving
        status, _, body = server.get("/Closed/x")
        assert status == 502 and json.loads(body)["error"] == "bad gateway"
        assert server.alive()
