"""The helmet plugin (plugins.helmet.middlewares.HelmetMiddleware): the real helmet.so through
the gateway in-process (Seam's defaults exactly, every option changing its header, HSTS only
over HTTPS as a proxy reports it, precedence over the action's headers, headers on early
answers, failures and upstream errors, configuration errors naming the key, hostile request
headers), and one run over real HTTP with `plughost serve`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import pytest

from plughost.config import ConfigErrors
from plughost import Gateway

from gateway_support import Server, free_port, header, instance_yaml, middleware_gateways

HELMET = "plugins.helmet.middlewares.HelmetMiddleware"

#: Seam's defaults (its HelmetMiddlewareConfig), with Referrer-Policy as Fiber means it: Seam
#: writes the literal "ReferrerPolicy", an invalid value that browsers ignore.
SEAM_DEFAULTS = {
    "x-xss-protection": "0",
    "x-content-type-options": "nosniff",
    "x-frame-options": "SAMEORIGIN",
    "referrer-policy": "no-referrer",
    "cross-origin-embedder-policy": "require-corp",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "origin-agent-cluster": "?1",
    "x-dns-prefetch-control": "off",
    "x-download-options": "noopen",
    "x-permitted-cross-domain-policies": "none",
}
HELMET_HEADERS = set(SEAM_DEFAULTS) | {
    "content-security-policy",
    "content-security-policy-report-only",
    "permissions-policy",
    "strict-transport-security",
}
HTTPS = {"X-Forwarded-Proto": "https"}


def security_headers(response: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in response.headers:
        name = key.decode().lower()
        if name in HELMET_HEADERS:
            assert name not in out, f"{name} sent twice"
            out[name] = value.decode("latin-1")
    return out


def write_gateway(
    folder: Path, plugin_dir: Path, middlewares: str, *, upstream: str = "http://127.0.0.1:9"
) -> Path:
    """Routes behind [Helmet, ...]: /echo, /framed (the action sets X-Frame-Options and
    Referrer-Policy itself), /early (a later middleware answers 418), /broken (a later
    middleware fails), /proxy (the upstream refuses the connection: 502)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugins.yaml").write_text(
        "plugins:\n"
        + "".join(f"  - path: {plugin_dir / name}.so\n" for name in ("helmet", "static", "trace"))
    )
    (folder / "middlewares.yaml").write_text(f"""\
middlewares:
{middlewares}
  Teapot:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {{name: Teapot, respond: 418}}
  Fail:
    use: plugins.trace.middlewares.TraceMiddleware
    config: {{name: Fail, fail: request}}
""")
    (folder / "actions.yaml").write_text(f"""\
actions:
  Echo:
    use: plugins.trace.actions.EchoAction
  Framed:
    use: plugins.static.actions.StaticAction
    config:
      body: widget
      headers: {{X-Frame-Options: DENY, referrer-policy: same-origin}}
  Forward:
    use: plugins.trace.actions.ForwardAction
    config: {{url: "{upstream}", timeout: 1s}}
""")
    (folder / "routes.yaml").write_text("""\
routes:
  Echo: {gatewayPath: /echo, methods: [GET, POST], middlewares: [Helmet], action: Echo}
  Framed: {gatewayPath: /framed, methods: [GET], middlewares: [Helmet], action: Framed}
  Early: {gatewayPath: /early, methods: [GET], middlewares: [Helmet, Teapot], action: Echo}
  Broken: {gatewayPath: /broken, methods: [GET], middlewares: [Helmet, Fail], action: Echo}
  Proxy: {gatewayPath: /proxy, methods: [GET], middlewares: [Helmet], action: Forward}
""")
    return folder


def mw_yaml(cfg: dict[str, Any] | None) -> str:
    return instance_yaml("Helmet", HELMET, cfg)


@pytest.fixture
def make(tmp_path: Path, test_plugin_dir: Path) -> Iterator[Any]:
    with middleware_gateways(tmp_path, write_gateway, test_plugin_dir, mw_yaml) as build:
        yield build


def get(gw: Gateway, path: str = "/echo") -> Any:
    return gw.handle("GET", path)


# ------------------------------------------------------------------------ defaults


def test_defaults_match_seams_list_exactly(make: Any) -> None:
    for gw in (
        make(None),
        make({}),
        make(
            {
                k: ""
                for k in (
                    "xssProtection",
                    "contentTypeNosniff",
                    "xFrameOptions",
                    "referrerPolicy",
                    "crossOriginEmbedderPolicy",
                    "crossOriginOpenerPolicy",
                    "crossOriginResourcePolicy",
                    "originAgentCluster",
                    "xdnsPrefetchControl",
                    "xDownloadOptions",
                    "xPermittedCrossDomain",
                    "contentSecurityPolicy",
                    "permissionPolicy",
                )
            }
        ),
    ):
        r = get(gw)
        assert r.status == 200 and r.body.startswith(b"GET /echo")
        assert security_headers(r) == SEAM_DEFAULTS
        # hstsMaxAge defaults to 0: no Strict-Transport-Security, even over HTTPS
        assert security_headers(gw.handle("GET", "/echo", HTTPS)) == SEAM_DEFAULTS


SEAM_PAGE_EXAMPLE = f"""\
  Helmet:
    use: {HELMET}
    config:
      xssProtection: "1; mode=block"
      contentTypeNosniff: "nosniff"
      xFrameOptions: "SAMEORIGIN"
      hstsMaxAge: 31536000
      referrerPolicy: "no-referrer"
      crossOriginEmbedderPolicy: "require-corp"
      crossOriginOpenerPolicy: "same-origin"
      crossOriginResourcePolicy: "same-origin"
      xdnsPrefetchControl: "off"
      xDownloadOptions: "noopen"
      xPermittedCrossDomain: "none"
"""


def test_seam_page_example_as_written(make: Any) -> None:
    gw = make(raw=SEAM_PAGE_EXAMPLE)
    expected = {**SEAM_DEFAULTS, "x-xss-protection": "1; mode=block"}
    assert security_headers(get(gw)) == expected
    assert security_headers(gw.handle("GET", "/echo", HTTPS)) == {
        **expected,
        "strict-transport-security": "max-age=31536000; includeSubDomains",
    }


# ------------------------------------------------------------------------ every option


@pytest.mark.parametrize(
    "cfg, name, value",
    [
        ({"xssProtection": "1; mode=block"}, "x-xss-protection", "1; mode=block"),
        ({"xssProtection": 1}, "x-xss-protection", "1"),
        ({"xssProtection": 0}, "x-xss-protection", "0"),
        (
            {"xssProtection": "1; report=https://r.example/x"},
            "x-xss-protection",
            "1; report=https://r.example/x",
        ),
        ({"contentTypeNosniff": "NOSNIFF"}, "x-content-type-options", "NOSNIFF"),
        ({"xFrameOptions": "DENY"}, "x-frame-options", "DENY"),
        ({"xFrameOptions": " sameorigin "}, "x-frame-options", "sameorigin"),
        (
            {"contentSecurityPolicy": "default-src 'self'; img-src *"},
            "content-security-policy",
            "default-src 'self'; img-src *",
        ),
        (
            {"contentSecurityPolicy": "default-src 'none'", "cspReportOnly": True},
            "content-security-policy-report-only",
            "default-src 'none'",
        ),
        (
            {"referrerPolicy": "strict-origin-when-cross-origin"},
            "referrer-policy",
            "strict-origin-when-cross-origin",
        ),
        (
            {"referrerPolicy": "no-referrer, strict-origin-when-cross-origin"},
            "referrer-policy",
            "no-referrer, strict-origin-when-cross-origin",
        ),
        (
            {"permissionPolicy": "geolocation=(), camera=(self)"},
            "permissions-policy",
            "geolocation=(), camera=(self)",
        ),
        (
            {"crossOriginEmbedderPolicy": "credentialless"},
            "cross-origin-embedder-policy",
            "credentialless",
        ),
        (
            {"crossOriginEmbedderPolicy": 'require-corp; report-to="coep"'},
            "cross-origin-embedder-policy",
            'require-corp; report-to="coep"',
        ),
        (
            {"crossOriginOpenerPolicy": "same-origin-allow-popups"},
            "cross-origin-opener-policy",
            "same-origin-allow-popups",
        ),
        (
            {"crossOriginResourcePolicy": "cross-origin"},
            "cross-origin-resource-policy",
            "cross-origin",
        ),
        ({"originAgentCluster": "?0"}, "origin-agent-cluster", "?0"),
        ({"xdnsPrefetchControl": "on"}, "x-dns-prefetch-control", "on"),
        ({"xDownloadOptions": "noopen"}, "x-download-options", "noopen"),
        (
            {"xPermittedCrossDomain": "master-only"},
            "x-permitted-cross-domain-policies",
            "master-only",
        ),
    ],
)
def test_each_option_changes_its_header(
    make: Any, cfg: dict[str, Any], name: str, value: str
) -> None:
    got = security_headers(get(make(cfg)))
    assert got == {**SEAM_DEFAULTS, name: value}


@pytest.mark.parametrize(
    "key, name",
    [
        ("xssProtection", "x-xss-protection"),
        ("contentTypeNosniff", "x-content-type-options"),
        ("xFrameOptions", "x-frame-options"),
        ("referrerPolicy", "referrer-policy"),
        ("crossOriginEmbedderPolicy", "cross-origin-embedder-policy"),
        ("crossOriginOpenerPolicy", "cross-origin-opener-policy"),
        ("crossOriginResourcePolicy", "cross-origin-resource-policy"),
        ("originAgentCluster", "origin-agent-cluster"),
        ("xdnsPrefetchControl", "x-dns-prefetch-control"),
        ("xDownloadOptions", "x-download-options"),
        ("xPermittedCrossDomain", "x-permitted-cross-domain-policies"),
    ],
)
def test_false_sends_no_such_header(make: Any, key: str, name: str) -> None:
    got = security_headers(get(make({key: False})))
    assert got == {k: v for k, v in SEAM_DEFAULTS.items() if k != name}


def test_option_names_ignore_case_as_seam(make: Any) -> None:
    gw = make(
        {
            "XSSProtection": "1",
            "HSTSMaxAge": 60,
            "HSTSExcludeSubdomains": True,
            "XFrameOptions": "DENY",
            "PermissionPolicy": "usb=()",
        }
    )
    r = gw.handle("GET", "/echo", HTTPS)
    assert header(r, "X-XSS-Protection") == "1" and header(r, "X-Frame-Options") == "DENY"
    assert header(r, "Strict-Transport-Security") == "max-age=60"
    assert header(r, "Permissions-Policy") == "usb=()"


# ------------------------------------------------------------------------ HSTS


def test_hsts_only_when_a_proxy_reports_https(make: Any) -> None:
    gw = make({"hstsMaxAge": 31536000})
    hsts = "max-age=31536000; includeSubDomains"
    https = [
        {"X-Forwarded-Proto": "https"},
        {"X-Forwarded-Proto": "HTTPS"},
        {"X-Forwarded-Proto": "https, http"},
        {"X-Forwarded-Protocol": "https"},
        {"X-Forwarded-Ssl": "on"},
        {"X-Url-Scheme": "https"},
        {"Forwarded": "proto=https"},
        {"Forwarded": 'for=1.2.3.4;proto="https";by=x, proto=http'},
        {"Forwarded": "For=1.2.3.4; Proto=HTTPS"},
    ]
    plain: list[dict[str, str]] = [
        {},
        {"X-Forwarded-Proto": "http"},
        {"X-Forwarded-Proto": "http, https"},
        {"X-Forwarded-Proto": "httpsx"},
        {"X-Forwarded-Ssl": "off"},
        {"Forwarded": "for=1.2.3.4, proto=https"},
        {"Forwarded": "proto=httpsx"},
        {"Forwarded": 'proto="https'},
        {"X-Url-Scheme": "http"},
    ]
    for h in https:
        assert header(gw.handle("GET", "/echo", h), "Strict-Transport-Security") == hsts, h
    for h in plain:
        assert header(gw.handle("GET", "/echo", h), "Strict-Transport-Security") is None, h


@pytest.mark.parametrize(
    "cfg, value",
    [
        ({"hstsMaxAge": 60}, "max-age=60; includeSubDomains"),
        ({"hstsMaxAge": "8760h"}, "max-age=31536000; includeSubDomains"),
        ({"hstsMaxAge": "365d"}, "max-age=31536000; includeSubDomains"),
        ({"hstsMaxAge": 60, "hstsExcludeSubdomains": True}, "max-age=60"),
        (
            {"hstsMaxAge": 63072000, "hstsPreloadEnabled": True},
            "max-age=63072000; includeSubDomains; preload",
        ),
        ({"hstsMaxAge": 0, "hstsPreloadEnabled": True}, None),
        ({"hstsExcludeSubdomains": True}, None),
    ],
)
def test_hsts_options(make: Any, cfg: dict[str, Any], value: str | None) -> None:
    assert header(make(cfg).handle("GET", "/echo", HTTPS), "Strict-Transport-Security") == value


def test_hsts_always_for_plughost_terminating_tls(make: Any) -> None:
    gw = make({"hstsMaxAge": 600, "hstsAlways": True})
    assert header(get(gw), "Strict-Transport-Security") == "max-age=600; includeSubDomains"
    assert header(get(make({"hstsAlways": True})), "Strict-Transport-Security") is None


def test_preload_below_the_lists_requirements_warns(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="plughost"):
        make({"hstsMaxAge": 600, "hstsPreloadEnabled": True})
    assert "max-age >= 31536000" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="plughost"):
        make({"xFrameOptions": "ALLOW-FROM https://a.example"})
    assert "frame-ancestors" in caplog.text


# ------------------------------------------------------------------------ precedence


def test_action_headers_are_kept_unless_override(make: Any) -> None:
    r = get(make(None), "/framed")
    assert r.body == b"widget"
    got = security_headers(r)
    assert got["x-frame-options"] == "DENY" and got["referrer-policy"] == "same-origin"
    assert got["x-content-type-options"] == "nosniff"  # the others are still added
    got = security_headers(get(make({"override": True}), "/framed"))
    assert got["x-frame-options"] == "SAMEORIGIN" and got["referrer-policy"] == "no-referrer"


def test_headers_on_early_answers_failures_and_upstream_errors(make: Any) -> None:
    gw = make(
        {"contentSecurityPolicy": "default-src 'none'"}, upstream=f"http://127.0.0.1:{free_port()}"
    )
    expected = {**SEAM_DEFAULTS, "content-security-policy": "default-src 'none'"}
    r = get(gw, "/early")
    assert r.status == 418 and security_headers(r) == expected
    log = logging.getLogger("plughost")
    level = log.level
    log.setLevel(logging.CRITICAL)  # the failures below are on purpose
    try:
        r = get(gw, "/broken")
        assert r.status == 500 and security_headers(r) == expected
        r = get(gw, "/proxy")
        assert r.status == 502 and security_headers(r) == expected
    finally:
        log.setLevel(level)


# ------------------------------------------------------------------------ configuration errors


@pytest.mark.parametrize(
    "cfg, key, words",
    [
        (
            {"contentSecurityPolicy": "default-src 'self'\r\nSet-Cookie: a=b"},
            "contentSecurityPolicy",
            "control character",
        ),
        ({"permissionPolicy": "camera=()\n"}, "permissionPolicy", "control character"),
        (
            {"contentSecurityPolicy": "default-src h\u00e9.example"},
            "contentSecurityPolicy",
            "non-ASCII",
        ),
        ({"xssProtection": "2"}, "xssProtection", '"1; mode=block"'),
        (
            {"xssProtection": "1; mode=allow"},
            "xssProtection",
            "is not a valid X-XSS-Protection value",
        ),
        ({"xssProtection": "1; report="}, "xssProtection", "is not a valid X-XSS-Protection value"),
        (
            {"contentTypeNosniff": "sniff"},
            "contentTypeNosniff",
            "'contentTypeNosniff' is 'sniff', not one of 'nosniff' or '' (the default): did you mean 'nosniff'?",
        ),
        ({"xFrameOptions": "ALLOWALL"}, "xFrameOptions", '"DENY" or "SAMEORIGIN"'),
        ({"xFrameOptions": "ALLOW-FROM "}, "xFrameOptions", "frame-ancestors"),
        ({"referrerPolicy": "ReferrerPolicy"}, "referrerPolicy", '"no-referrer"'),
        ({"referrerPolicy": "no-referrer,,origin"}, "referrerPolicy", "comma-separated"),
        (
            {"crossOriginEmbedderPolicy": "require-cors"},
            "crossOriginEmbedderPolicy",
            '"credentialless"',
        ),
        ({"crossOriginOpenerPolicy": "same"}, "crossOriginOpenerPolicy", '"same-origin"'),
        (
            {"crossOriginResourcePolicy": "same-origin-allow"},
            "crossOriginResourcePolicy",
            "'crossOriginResourcePolicy' is 'same-origin-allow', not one of 'same-site', 'same-origin', "
            "'cross-origin' or '' (the default): did you mean 'same-origin'?",
        ),
        (
            {"originAgentCluster": "?2"},
            "originAgentCluster",
            "'originAgentCluster' is '?2', not one of '?1', '?0' or '' (the default)",
        ),
        (
            {"originAgentCluster": 1},
            "originAgentCluster",
            "'originAgentCluster' is '1', not one of '?1', '?0' or '' (the default): did you mean '?1'?",
        ),
        (
            {"xdnsPrefetchControl": "maybe"},
            "xdnsPrefetchControl",
            "'xdnsPrefetchControl' is 'maybe', not one of 'on', 'off' or '' (the default)",
        ),
        (
            {"xDownloadOptions": "open"},
            "xDownloadOptions",
            "'xDownloadOptions' is 'open', not one of 'noopen' or '' (the default): did you mean 'noopen'?",
        ),
        (
            {"xPermittedCrossDomain": "some"},
            "xPermittedCrossDomain",
            "'xPermittedCrossDomain' is 'some', not one of 'none', 'master-only', 'by-content-type', "
            "'by-ftp-filename', 'all', 'none-this-response' or '' (the default)",
        ),
        (
            {"xFrameOptions": True},
            "xFrameOptions",
            "'xFrameOptions' must be a string (or false to turn it off), not the boolean true",
        ),
        (
            {"contentSecurityPolicy": ["default-src"]},
            "contentSecurityPolicy",
            "'contentSecurityPolicy' must be a string, not a list",
        ),
        ({"hstsMaxAge": -1}, "hstsMaxAge", "positive number of seconds"),
        ({"hstsMaxAge": "1500ms"}, "hstsMaxAge", "whole number of seconds"),
        ({"hstsMaxAge": "a year"}, "hstsMaxAge", "duration"),
        ({"hstsPreloadEnabled": "sometimes"}, "hstsPreloadEnabled", "true or false"),
        ({"cspReportOnly": 3}, "cspReportOnly", ""),
        ({"override": "never"}, "override", ""),
        ({"permissionsPolicy": "usb=()"}, "permissionsPolicy", "did you mean 'permissionPolicy'?"),
        ({"hsts": 1}, "hsts", f"{HELMET} has no option 'hsts': its options are 'xssProtection', "),
        (
            {"xFrameOptions": "DENY", "XFRAMEOPTIONS": "DENY"},
            "XFRAMEOPTIONS",
            "'XFRAMEOPTIONS' is written twice (also as 'xFrameOptions'): keys match ignoring case, "
            "keep one",
        ),
    ],
)
def test_config_errors_name_the_key(make: Any, cfg: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigErrors) as exc:
        make(cfg)
    message = str(exc.value)
    assert f"middlewares.yaml:4: middlewares.Helmet.config.{key}:" in message, message
    assert words in message, message


def test_option_schema_refuses_a_misspelt_option_and_matches_names_ignoring_case(make: Any) -> None:
    """HelmetMiddleware declares its options (ABI 1.2): a misspelt option is refused before
    create runs, at its file, line and key, with the option it resembles; an option written
    in another case is the option itself."""
    with pytest.raises(ConfigErrors) as exc:
        make(
            raw=f"""\
  Helmet:
    use: {HELMET}
    config:
      xFrameOptions: DENY
      xFrameOption: DENY
"""
        )
    assert (
        "middlewares.yaml:6: middlewares.Helmet.config.xFrameOption: "
        f"{HELMET} has no option 'xFrameOption': did you mean 'xFrameOptions'?" in str(exc.value)
    ), str(exc.value)
    assert str(exc.value).startswith("1 problem"), str(exc.value)

    gw = make(
        raw=f"""\
  Helmet:
    use: {HELMET}
    config:
      xframeoptions: DENY
      HSTSMAXAGE: 600
      ContentTypeNosniff: false
"""
    )
    got = security_headers(gw.handle("GET", "/echo", HTTPS))
    assert got["x-frame-options"] == "DENY"
    assert got["strict-transport-security"] == "max-age=600; includeSubDomains"
    assert "x-content-type-options" not in got


# ------------------------------------------------------------------------ hostile input


def test_hostile_request_headers_get_clean_answers(make: Any) -> None:
    gw = make({"hstsMaxAge": 60})
    for h in (
        {"X-Forwarded-Proto": "h" * 100_000},
        {"X-Forwarded-Proto": ",,,"},
        {"X-Forwarded-Proto": "\xff\xfe"},
        {"X-Forwarded-Ssl": ""},
        {"Forwarded": ";" * 50_000},
        {"Forwarded": "proto="},
        {"Forwarded": 'proto="'},
        {"Forwarded": "proto=http" + "s" * 50_000},
        {"Forwarded": "\x80" * 10_000},
        {"X-Url-Scheme": "https" + "\xff" * 1000},
        {"Origin": "\xc3\x28" * 1000},
    ):
        r = gw.handle("GET", "/echo", h)
        assert r.status == 200
        assert header(r, "Strict-Transport-Security") is None
        assert header(r, "X-Frame-Options") == "SAMEORIGIN"


# ------------------------------------------------------------------------ over HTTP


def test_helmet_over_real_http(tmp_path: Path, test_plugin_dir: Path) -> None:
    folder = write_gateway(
        tmp_path / "config",
        test_plugin_dir,
        mw_yaml(
            {
                "hstsMaxAge": 31536000,
                "hstsPreloadEnabled": True,
                "contentSecurityPolicy": "default-src 'self'",
                "permissionPolicy": "camera=()",
            }
        ),
    )
    with Server("--config", str(folder)) as server:
        status, headers, body = server.get("/echo")
        assert status == 200 and body.startswith(b"GET /echo")
        got = {k.lower(): v for k, v in headers.items() if k.lower() in HELMET_HEADERS}
        assert got == {
            **SEAM_DEFAULTS,
            "content-security-policy": "default-src 'self'",
            "permissions-policy": "camera=()",
        }
        status, headers, _ = server.get("/echo", headers={"X-Forwarded-Proto": "https"})
        assert (
            headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
        )
        status, headers, _ = server.get("/framed")
        assert headers["X-Frame-Options"] == "DENY"
        status, headers, _ = server.get("/early")
        assert status == 418 and headers["X-Content-Type-Options"] == "nosniff"
        # hostile forwarding headers over the wire: no HSTS, a clean answer
        for bad in (
            {"X-Forwarded-Proto": "\xff\xfehttps"},
            {"Forwarded": "proto=" + "h" * 8192},
            {"X-Forwarded-Ssl": "\x80on"},
        ):
            status, headers, _ = server.get("/echo", headers=bad)
            assert status == 200 and "Strict-Transport-Security" not in headers
            assert headers["X-Frame-Options"] == "SAMEORIGIN"
        assert server.alive()
    out = server.output()
    assert "Traceback" not in out, out
