"""The cors plugin (plugins.cors.middlewares.CORSMiddleware): the real cors.so through the
gateway in-process (preflights, actual requests, Vary, every option and its default, Seam's
own examples, configuration errors naming the key, hostile headers), the router's answer to a
preflight on a route without OPTIONS, and one run over real HTTP with `plughost serve`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from plughost.config import ConfigErrors
from plughost import Gateway

from gateway_support import Server, header, header_values, instance_yaml, middleware_gateways

CORS = "plugins.cors.middlewares.CORSMiddleware"
APP = "https://app.example.com"
DEFAULT_METHODS = "GET, POST, HEAD, PUT, DELETE, PATCH"


def cors_headers(response: Any) -> dict[str, str]:
    return {
        k.decode().lower(): v.decode("latin-1")
        for k, v in response.headers
        if k.lower().startswith(b"access-control-")
    }


def vary(response: Any) -> list[str]:
    return [
        t.strip().lower()
        for v in header_values(response, "Vary")
        for t in v.split(",")
        if t.strip()
    ]


def preflight(
    gw: Gateway,
    path: str = "/api",
    origin: str = APP,
    method: str = "POST",
    headers: str | None = None,
    **extra: str,
) -> Any:
    h = {"Origin": origin, "Access-Control-Request-Method": method, **extra}
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    return gw.handle("OPTIONS", path, h)


def write_gateway(
    folder: Path,
    plugin_dir: Path,
    middlewares: str,
    global_mws: tuple[str, ...] = (),
    route_mw: str = "Cors",
) -> Path:
    """A Seam config folder: middlewares.yaml as given (YAML text under `middlewares:`), and
    routes behind `route_mw`: /api (GET, POST, OPTIONS; echo), /plain (GET, POST only),
    /all (ALL), /static (a static answer that sets Vary and its own CORS headers)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugins.yaml").write_text(
        "plugins:\n"
        + "".join(f"  - path: {plugin_dir / name}.so\n" for name in ("cors", "static", "trace"))
    )
    (folder / "middlewares.yaml").write_text(
        "middlewares:\n"
        + middlewares
        + ("globalMiddlewares:\n" + "".join(f"  - {n}\n" for n in global_mws) if global_mws else "")
    )
    (folder / "actions.yaml").write_text("""\
actions:
  Echo:
    use: plugins.trace.actions.EchoAction
  Static:
    use: plugins.static.actions.StaticAction
    config:
      body: static
      headers:
        Vary: Accept-Encoding
        Access-Control-Allow-Origin: "*"
        Access-Control-Allow-Credentials: "true"
        Access-Control-Expose-Headers: X-Upstream-Secret
""")
    mws = f"[{route_mw}]" if route_mw else "[]"
    (folder / "routes.yaml").write_text(f"""\
routes:
  Api:
    gatewayPath: /api
    methods: [GET, POST, OPTIONS]
    middlewares: {mws}
    action: Echo
  Plain:
    gatewayPath: /plain
    methods: [GET, POST]
    middlewares: {mws}
    action: Echo
  All:
    gatewayPath: /all/:id
    methods: [ALL]
    middlewares: {mws}
    action: Echo
  Static:
    gatewayPath: /static
    methods: [GET, OPTIONS]
    middlewares: {mws}
    action: Static
""")
    return folder


def mw_yaml(cfg: dict[str, Any] | None, name: str = "Cors") -> str:
    return instance_yaml(name, CORS, cfg)


@pytest.fixture
def make(tmp_path: Path, test_plugin_dir: Path) -> Iterator[Any]:
    with middleware_gateways(tmp_path, write_gateway, test_plugin_dir, mw_yaml) as build:
        yield build


def config_error(make: Any, cfg: dict[str, Any]) -> str:
    with pytest.raises(ConfigErrors) as exc:
        make(cfg)
    return str(exc.value)


# ------------------------------------------------------------------------ defaults


def test_defaults_allow_every_origin_without_credentials(make: Any) -> None:
    gw = make(None)
    r = gw.handle("GET", "/api", {"Origin": APP})
    assert r.status == 200 and r.body.startswith(b"GET /api")
    assert cors_headers(r) == {"access-control-allow-origin": "*"}
    assert "origin" not in vary(r)  # the answer is "*" for everyone: nothing to vary on
    # the default methods (Seam's), every requested header echoed back, no Max-Age
    r = preflight(gw, method="PATCH", headers="x-anything, content-type")
    assert r.status == 204 and r.body == b""
    assert cors_headers(r) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": DEFAULT_METHODS,
        "access-control-allow-headers": "x-anything, content-type",
    }
    assert vary(r) == ["origin", "access-control-request-method", "access-control-request-headers"]
    for method in ("OPTIONS", "CONNECT", "PROPFIND"):  # not among the default methods
        r = preflight(gw, method=method)
        assert r.status == 204 and cors_headers(r) == {}, method


def test_requests_without_origin_are_not_cors(make: Any) -> None:
    gw = make({"allowOrigins": APP})
    r = gw.handle("GET", "/api")
    assert r.status == 200 and cors_headers(r) == {}
    assert vary(r) == ["origin"]  # the answer depends on Origin: caches must know
    # OPTIONS without Origin, or without Access-Control-Request-Method, reaches the action
    r = gw.handle("OPTIONS", "/api", {"Access-Control-Request-Method": "GET"})
    assert r.status == 200 and r.body.startswith(b"OPTIONS /api")
    r = gw.handle("OPTIONS", "/api", {"Origin": APP})
    assert r.status == 200 and r.body.startswith(b"OPTIONS /api")
    assert header(r, "Access-Control-Allow-Origin") == APP  # a CORS request, not a preflight


# ------------------------------------------------------------------------ Seam's pages


SEAM_PAGE_EXAMPLE = f"""\
  CORSMiddleware:
    use: {CORS}
    config:
      allowOrigins: "https://example.com, https://anotherdomain.com"
      allowMethods: "GET, POST, PUT, DELETE"
      allowHeaders: "Content-Type, Authorization"
      allowCredentials: true
      exposeHeaders: "X-Custom-Header, Content-Length"
      maxAge: 1m
"""

SEAM_GLOBAL_EXAMPLE = f"""\
  CORSMiddleware:
    use: {CORS}
    config:
      allowOrigins: "https://example.com, https://anotherdomain.com"
      allowMethods: "GET, POST"
      allowHeaders: "Content-Type, Authorization"
      allowCredentials: false
      exposeHeaders: "X-Custom-Header"
      maxAge: 1800
"""


def test_seam_page_example_as_written(make: Any) -> None:
    gw = make(raw=SEAM_PAGE_EXAMPLE, route_mw="CORSMiddleware")
    r = preflight(
        gw, origin="https://anotherdomain.com", method="PUT", headers="content-type,authorization"
    )
    assert r.status == 204 and r.body == b""
    assert cors_headers(r) == {
        "access-control-allow-origin": "https://anotherdomain.com",
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST, PUT, DELETE",
        "access-control-allow-headers": "Content-Type, Authorization",
        "access-control-max-age": "60",
    }
    r = gw.handle("POST", "/api", {"Origin": "https://example.com"}, body=b"x")
    assert r.status == 200 and r.body.startswith(b"POST /api")
    assert cors_headers(r) == {
        "access-control-allow-origin": "https://example.com",
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "X-Custom-Header, Content-Length",
    }
    assert vary(r) == ["origin"]
    # PATCH is not in allowMethods: the preflight is answered without CORS headers
    r = preflight(gw, origin="https://example.com", method="PATCH")
    assert r.status == 204 and cors_headers(r) == {}


def test_seam_global_middleware_example(make: Any) -> None:
    gw = make(raw=SEAM_GLOBAL_EXAMPLE, global_mws=("CORSMiddleware",), route_mw="")
    r = preflight(
        gw, path="/all/7", origin="https://example.com", method="GET", headers="Content-Type"
    )
    assert r.status == 204
    assert cors_headers(r) == {
        "access-control-allow-origin": "https://example.com",
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": "Content-Type, Authorization",
        "access-control-max-age": "1800",
    }
    r = gw.handle("GET", "/api", {"Origin": "https://example.com"})
    assert cors_headers(r) == {
        "access-control-allow-origin": "https://example.com",
        "access-control-expose-headers": "X-Custom-Header",
    }


# ------------------------------------------------------------------------ preflights


def test_preflight_never_reaches_the_action(make: Any) -> None:
    gw = make({"allowOrigins": [APP]})
    for origin in (APP, "https://evil.example"):  # allowed or not: answered here
        r = preflight(gw, origin=origin)
        assert r.status == 204 and r.body == b""
        assert header(r, "X-Trace-Response") is None


@pytest.mark.parametrize(
    "change",
    [
        {"origin": "https://evil.example"},
        {"origin": "https://app.example.com.evil.example"},
        {"origin": "http://app.example.com"},  # another scheme is another origin
        {"origin": "https://app.example.com:8443"},
        {"method": "DELETE"},
        {"method": "GET, POST"},  # not a method
        {"headers": "content-type, x-other"},
        {"headers": "content-type; x-api-key"},  # not a list of names
    ],
)
def test_preflight_refused(make: Any, change: dict[str, str]) -> None:
    gw = make(
        {
            "allowOrigins": [APP],
            "allowMethods": "GET,POST",
            "allowHeaders": ["Content-Type", "X-Api-Key"],
            "maxAge": 600,
        }
    )
    args = {"origin": APP, "method": "POST", "headers": "content-type", **change}
    r = preflight(gw, **args)
    assert r.status == 204 and r.body == b""
    assert cors_headers(r) == {}  # the browser blocks the request
    assert vary(r) == ["origin", "access-control-request-method", "access-control-request-headers"]


def test_requested_headers_compared_without_case(make: Any) -> None:
    gw = make({"allowOrigins": APP, "allowHeaders": "Content-Type, X-Api-Key"})
    for requested in (
        "content-type,x-api-key",
        "X-API-KEY",
        " Content-Type , x-Api-key ",
        "content-type,,x-api-key",
        "",
    ):
        r = preflight(gw, headers=requested)
        assert header(r, "Access-Control-Allow-Origin") == APP, requested
        assert header(r, "Access-Control-Allow-Headers") == "Content-Type, X-Api-Key"
    assert cors_headers(preflight(gw, headers="content-type, authorization")) == {}


def test_methods_compared_without_case_and_star(make: Any) -> None:
    gw = make({"allowOrigins": APP, "allowMethods": ["get", "Post"]})
    assert header(preflight(gw, method="POST"), "Access-Control-Allow-Methods") == "get, Post"
    gw = make(
        {"allowOrigins": APP, "allowMethods": "*", "allowHeaders": "*", "allowCredentials": True}
    )
    r = preflight(gw, method="PROPFIND", headers="x-a, authorization")
    # "*" is echoed as the request asked: a literal "*" means nothing to a browser when
    # credentials are allowed, and never covers Authorization
    assert header(r, "Access-Control-Allow-Methods") == "PROPFIND"
    assert header(r, "Access-Control-Allow-Headers") == "x-a, authorization"
    assert header(r, "Access-Control-Allow-Credentials") == "true"


def test_max_age_forms(make: Any) -> None:
    for value, sent in (
        (600, "600"),
        ("10m", "600"),
        ("1h30m", "5400"),
        (-1, "0"),
        (0, None),
        ("0s", None),
    ):
        gw = make({"maxAge": value})
        assert header(preflight(gw), "Access-Control-Max-Age") == sent, value
        # only preflights carry it
        assert header(gw.handle("GET", "/api", {"Origin": APP}), "Access-Control-Max-Age") is None


def test_allow_private_network(make: Any) -> None:
    pna = {"Access-Control-Request-Private-Network": "true"}
    r = preflight(make({"allowOrigins": APP, "allowPrivateNetwork": True}), **pna)
    assert header(r, "Access-Control-Allow-Private-Network") == "true"
    assert "access-control-request-private-network" in vary(r)
    r = preflight(make({"allowOrigins": APP}), **pna)  # default false
    assert header(r, "Access-Control-Allow-Private-Network") is None
    assert header(r, "Access-Control-Allow-Origin") == APP


# ------------------------------------------------------------------------ actual requests


def test_actual_requests_allowed_and_refused_origins(make: Any) -> None:
    gw = make(
        {
            "allowOrigins": "https://app.example.com, https://admin.example.com",
            "exposeHeaders": ["X-Total-Count"],
        }
    )
    r = gw.handle("POST", "/api", {"Origin": "https://admin.example.com"}, body=b"hi")
    assert r.status == 200 and b"body=hi" in r.body
    assert cors_headers(r) == {
        "access-control-allow-origin": "https://admin.example.com",
        "access-control-expose-headers": "X-Total-Count",
    }
    assert vary(r) == ["origin"]
    # a refused origin: the request still runs (browsers enforce), without CORS headers
    r = gw.handle("POST", "/api", {"Origin": "https://evil.example"}, body=b"hi")
    assert r.status == 200 and b"body=hi" in r.body
    assert cors_headers(r) == {} and vary(r) == ["origin"]
    # the Origin is echoed as the browser sent it; origins compare without case
    r = gw.handle("GET", "/api", {"Origin": "HTTPS://App.Example.com"})
    assert header(r, "Access-Control-Allow-Origin") == "HTTPS://App.Example.com"


def test_vary_joins_the_actions_vary(make: Any) -> None:
    gw = make({"allowOrigins": APP})
    r = gw.handle("GET", "/static", {"Origin": APP})
    assert header_values(r, "Vary") == ["Accept-Encoding, Origin"]
    r = gw.handle("GET", "/static")
    assert header_values(r, "Vary") == ["Accept-Encoding, Origin"]


def test_gateway_owns_the_access_control_headers(make: Any) -> None:
    """The static action (think: an upstream) sends its own permissive CORS headers: the
    gateway's policy replaces them, and removes them for a refused origin."""
    gw = make({"allowOrigins": APP})
    r = gw.handle("GET", "/static", {"Origin": APP})
    assert cors_headers(r) == {"access-control-allow-origin": APP}
    r = gw.handle("GET", "/static", {"Origin": "https://evil.example"})
    assert cors_headers(r) == {}
    r = gw.handle("GET", "/static")  # not a CORS request: left alone
    assert header(r, "Access-Control-Allow-Origin") == "*"


def test_credentials_on_actual_and_preflight(make: Any) -> None:
    gw = make({"allowOrigins": [APP], "allowCredentials": True})
    r = gw.handle("GET", "/api", {"Origin": APP, "Cookie": "a=b"})
    assert cors_headers(r) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
    }
    assert header(preflight(gw), "Access-Control-Allow-Credentials") == "true"
    assert cors_headers(gw.handle("GET", "/api", {"Origin": "https://evil.example"})) == {}


def test_origin_list_forms_are_equivalent(make: Any) -> None:
    forms = [
        "https://a.example, https://b.example:8443",
        "https://a.example,https://b.example:8443,",
        ["https://a.example", "https://b.example:8443"],
        ["https://a.example/", "HTTPS://B.EXAMPLE:8443"],
        ["https://a.example, https://b.example:8443"],
    ]
    for form in forms:
        gw = make({"allowOrigins": form})
        for origin, allowed in (
            ("https://a.example", True),
            ("https://b.example:8443", True),
            ("https://b.example", False),
            ("https://c.example", False),
        ):
            got = header(
                gw.handle("GET", "/api", {"Origin": origin}), "Access-Control-Allow-Origin"
            )
            assert got == (origin if allowed else None), (form, origin)


def test_star_anywhere_in_the_list_allows_every_origin(make: Any) -> None:
    gw = make({"allowOrigins": "https://a.example, *"})  # Fiber's reading
    assert (
        header(
            gw.handle("GET", "/api", {"Origin": "https://z.example"}), "Access-Control-Allow-Origin"
        )
        == "*"
    )


def test_subdomain_patterns(make: Any) -> None:
    gw = make({"allowOrigins": ["https://*.example.com", "http://*.local.test:8080"]})
    cases = {
        "https://a.example.com": True,
        "https://a.b.example.com": True,
        "https://A.Example.COM": True,
        "https://example.com": False,  # the domain itself is not a subdomain
        "https://evilexample.com": False,
        "https://a.example.com.evil.test": False,
        "http://a.example.com": False,
        "https://a.example.com:444": False,
        "http://x.local.test:8080": True,
        "http://x.local.test": False,
        "https://[::1].example.com": False,
        "https://a..example.com": False,
        "https://a_b.example.com": False,
        "https://a.example.com/": False,
    }
    for origin, allowed in cases.items():
        r = gw.handle("GET", "/api", {"Origin": origin})
        assert header(r, "Access-Control-Allow-Origin") == (origin if allowed else None), origin
        r = preflight(gw, origin=origin, method="GET")
        assert (header(r, "Access-Control-Allow-Origin") is not None) == allowed, origin


def test_option_names_ignore_case_as_seam(make: Any) -> None:
    gw = make({"AllowOrigins": APP, "ALLOWCREDENTIALS": True, "MaxAge": 5})
    r = preflight(gw)
    assert header(r, "Access-Control-Allow-Origin") == APP
    assert header(r, "Access-Control-Allow-Credentials") == "true"
    assert header(r, "Access-Control-Max-Age") == "5"


# ------------------------------------------------------------------------ configuration errors


def test_credentials_with_every_origin_is_one_clear_error(make: Any) -> None:
    for cfg in (
        {"allowCredentials": True},
        {"allowCredentials": True, "allowOrigins": "*"},
        {"allowCredentials": True, "allowOrigins": [APP, "*"]},
    ):
        message = config_error(make, cfg)
        line = next(s for s in message.splitlines() if "allowCredentials" in s)
        assert "middlewares.Cors.config.allowCredentials:" in line, message
        assert "allowOrigins" in line and "list the exact origins" in line
        assert line.rstrip().endswith("or set allowCredentials: false")
        assert line.count(". ") == 0  # one sentence
    assert "(its default)" in config_error(make, {"allowCredentials": True})


@pytest.mark.parametrize(
    "cfg, key, words",
    [
        ({"allowOrigins": "https://a.example/path"}, "allowOrigins", "is not an origin"),
        ({"allowOrigins": "app.example.com"}, "allowOrigins", "scheme://host"),
        ({"allowOrigins": "https://a.example:99999"}, "allowOrigins", "is not an origin"),
        ({"allowOrigins": "https://a b.example"}, "allowOrigins", "is not an origin"),
        ({"allowOrigins": ["null"]}, "allowOrigins", "'null' must not be allowed"),
        ({"allowOrigins": "https://a.*.example"}, "allowOrigins", "subdomain wildcard"),
        ({"allowOrigins": "https://*example.com"}, "allowOrigins", "subdomain wildcard"),
        ({"allowOrigins": "https://*.*.example.com"}, "allowOrigins", "subdomain wildcard"),
        (
            {"allowOrigins": [{"url": APP}]},
            "allowOrigins[0]",
            "'allowOrigins' must be a string, not a map",
        ),
        (
            {"allowOrigins": True},
            "allowOrigins",
            "'allowOrigins' must be a list of strings or one comma-separated string, not the boolean "
            "true",
        ),
        ({"allowMethods": "GET, PO ST"}, "allowMethods", "is not an HTTP method"),
        ({"allowHeaders": ["X-Ok", "X Bad"]}, "allowHeaders", "is not a header name"),
        ({"exposeHeaders": "X-Ok, X\u00e9"}, "exposeHeaders", "is not a header name"),
        ({"allowCredentials": "sometimes"}, "allowCredentials", ""),
        ({"allowPrivateNetwork": [1]}, "allowPrivateNetwork", ""),
        ({"maxAge": "soon"}, "maxAge", ""),
        ({"maxAge": "1500ms"}, "maxAge", "whole number of seconds"),
        ({"maxAge": "-5s"}, "maxAge", "negative"),
        (
            {"allowCredentials": True, "allowOrigins": APP, "exposeHeaders": "*"},
            "exposeHeaders",
            "list the headers",
        ),
        ({"allowOrigin": APP}, "allowOrigin", "did you mean 'allowOrigins'?"),
        (
            {"credentials": True},
            "credentials",
            f"{CORS} has no option 'credentials': did you mean 'allowCredentials'?",
        ),
        (
            {"allowOriginsFunc": "x"},
            "allowOriginsFunc",
            f"{CORS} has no option 'allowOriginsFunc': did you mean 'allowOrigins'?",
        ),
        (
            {"maxAge": 1, "MaxAge": 2},
            "MaxAge",
            "'MaxAge' is written twice (also as 'maxAge'): keys match ignoring case, keep one",
        ),
    ],
)
def test_config_errors_name_the_key(make: Any, cfg: dict[str, Any], key: str, words: str) -> None:
    message = config_error(make, cfg)
    assert f"middlewares.yaml:4: middlewares.Cors.config.{key}:" in message, message
    assert words in message, message


def test_option_schema_refuses_a_misspelt_option_and_matches_names_ignoring_case(make: Any) -> None:
    """CORSMiddleware declares its options (ABI 1.2): a misspelt option is refused before
    create runs, at its file, line and key, with the option it resembles (every problem at
    once); an option written in another case is the option itself."""
    message = config_error(make, {"alowOrigins": APP, "maxage": 5, "exposeHeader": "X-A"})
    assert (
        f"middlewares.yaml:4: middlewares.Cors.config.alowOrigins: {CORS} has no option "
        "'alowOrigins': did you mean 'allowOrigins'?" in message
    ), message
    assert (
        f"middlewares.yaml:4: middlewares.Cors.config.exposeHeader: {CORS} has no option "
        "'exposeHeader': did you mean 'exposeHeaders'?" in message
    ), message
    assert message.startswith("2 problems in the configuration"), message  # maxage is fine

    gw = make({"alloworigins": APP, "MAXAGE": "10m", "AllowMethods": ["GET", "PUT"]})
    r = preflight(gw, method="PUT")
    assert header(r, "Access-Control-Allow-Origin") == APP
    assert header(r, "Access-Control-Max-Age") == "600"
    assert header(r, "Access-Control-Allow-Methods") == "GET, PUT"
    assert (
        header(preflight(gw, origin="https://other.example"), "Access-Control-Allow-Origin") is None
    )


# ------------------------------------------------------------------------ hostile input


def test_hostile_headers_get_clean_answers(make: Any) -> None:
    built = [
        make({"allowOrigins": [APP, "https://*.example.com"]}),
        make(None),
        make({"allowOrigins": APP, "allowHeaders": "X-A"}),
    ]
    long = "https://" + "a" * 100_000 + ".example.com"
    origins = [
        "garbage",
        "",
        " ",
        "null",
        "*",
        "https://",
        "https://:443",
        "https://[zz]",
        "https://app.example.com\tx",
        "https://app.example.com, https://evil",
        "https://\xff\xfe.example.com",
        "https://app.example.com\xc3",
        long,
        "https://" + "a." * 300 + "example.com",
        "\x80" * 5000,
    ]
    for gw in built:
        for origin in origins:
            for method in ("GET", "POST"):
                r = gw.handle(method, "/api", {"Origin": origin})
                assert r.status == 200, (origin[:40], r.status)
                allow = header(r, "Access-Control-Allow-Origin")
                assert allow in (None, "*"), origin[:40]
            r = preflight(gw, origin=origin, headers="x-a," * 20_000 + "\xff")
            assert r.status in (204, 200), origin[:40]  # 200: empty Origin, not a preflight
            assert header(r, "Access-Control-Allow-Headers") is None
        r = preflight(gw, method="\xff" * 10_000)
        assert r.status == 204 and header(r, "Access-Control-Allow-Methods") is None
        r = preflight(gw, headers="x-a" + ", x-a" * 30_000)
        assert r.status == 204
    # raw bytes as the HTTP server hands them over: invalid UTF-8 in Origin
    gw = built[0]
    r = asyncio.run(gw.handle_async("GET", "/api", [(b"origin", b"https://\xc3\x28.example.com")]))
    assert r.status == 200 and header(r, "Access-Control-Allow-Origin") is None
    # the very long allowed-pattern origin is refused (longer than any real origin)
    r = gw.handle("GET", "/api", {"Origin": long})
    assert header(r, "Access-Control-Allow-Origin") is None


# ------------------------------------------------------------------------ routing


def test_route_cors_needs_options_among_the_route_methods(make: Any) -> None:
    """A CORS middleware on a route sees only the methods that route lists: the router
    answers a preflight to a route without OPTIONS (or ALL) with 405 and Allow."""
    gw = make({"allowOrigins": APP})
    r = preflight(gw, path="/plain")
    assert r.status == 405 and cors_headers(r) == {}
    assert header(r, "Allow") == "GET, HEAD, POST"
    assert preflight(gw, path="/api").status == 204
    r = preflight(gw, path="/all/1")
    assert r.status == 204 and header(r, "Access-Control-Allow-Origin") == APP
    r = gw.handle("POST", "/plain", {"Origin": APP})  # the actual request is fine
    assert r.status == 200 and header(r, "Access-Control-Allow-Origin") == APP


def test_global_cors_answers_preflights_for_every_route(make: Any) -> None:
    """Global middlewares see every request, as Fiber's app.Use ones do: a global CORS
    answers the preflight of a route that does not list OPTIONS, and even of an unknown
    path; other unrouted requests still get their 404 / 405 (with Allow), now with the
    response phase of the global middlewares (CORS headers) on them."""
    gw = make({"allowOrigins": APP}, global_mws=("Cors",), route_mw="")
    for path in ("/plain", "/api", "/all/1", "/nowhere"):
        r = preflight(gw, path=path)
        assert r.status == 204 and header(r, "Access-Control-Allow-Origin") == APP, path
    r = gw.handle("DELETE", "/plain", {"Origin": APP})
    assert r.status == 405 and header(r, "Allow") == "GET, HEAD, POST"
    assert json.loads(r.body) == {"error": "method not allowed", "status": 405}
    assert header(r, "Access-Control-Allow-Origin") == APP
    r = gw.handle("GET", "/nowhere", {"Origin": APP})
    assert r.status == 404 and json.loads(r.body) == {"error": "not found", "status": 404}
    assert header(r, "Access-Control-Allow-Origin") == APP
    assert gw.handle("POST", "/plain", {"Origin": APP}).status == 200


# ------------------------------------------------------------------------ over HTTP


def test_cors_over_real_http(tmp_path: Path, test_plugin_dir: Path) -> None:
    folder = write_gateway(
        tmp_path / "config",
        test_plugin_dir,
        mw_yaml(
            {
                "allowOrigins": [APP],
                "allowCredentials": True,
                "allowHeaders": "Content-Type",
                "maxAge": "10m",
                "exposeHeaders": "X-Trace-Response",
            }
        ),
        global_mws=("Cors",),
        route_mw="",
    )
    with Server("--config", str(folder)) as server:
        status, headers, body = server.request(
            "OPTIONS",
            "/api",
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert status == 204 and body == b""
        assert headers["Access-Control-Allow-Origin"] == APP
        assert headers["Access-Control-Allow-Credentials"] == "true"
        assert headers["Access-Control-Allow-Headers"] == "Content-Type"
        assert headers["Access-Control-Max-Age"] == "600"
        status, headers, body = server.request(
            "POST", "/api", body=b"{}", headers={"Origin": APP, "Content-Type": "application/json"}
        )
        assert status == 200 and body.startswith(b"POST /api")
        assert headers["Access-Control-Allow-Origin"] == APP
        assert headers["Access-Control-Expose-Headers"] == "X-Trace-Response"
        assert headers["Vary"] == "Origin"
        status, headers, _ = server.request("GET", "/api", headers={"Origin": "https://x.test"})
        assert status == 200 and "Access-Control-Allow-Origin" not in headers
        status, headers, _ = server.request(
            "OPTIONS",
            "/api",
            headers={"Origin": "https://x.test", "Access-Control-Request-Method": "POST"},
        )
        assert status == 204 and "Access-Control-Allow-Origin" not in headers
        # global: also the preflight of a route that lists no OPTIONS
        status, headers, _ = server.request(
            "OPTIONS", "/plain", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
        )
        assert status == 204 and headers["Access-Control-Allow-Origin"] == APP
        # hostile Origins over the wire: invalid UTF-8 bytes, 8 KB of garbage
        for origin in ("https://\xff\xfe\xc3(.example", "x" * 8192, APP + "\x80"):
            status, headers, _ = server.request("GET", "/api", headers={"Origin": origin})
            assert status == 200 and "Access-Control-Allow-Origin" not in headers
            status, headers, _ = server.request(
                "OPTIONS",
                "/api",
                headers={"Origin": origin, "Access-Control-Request-Method": "\xff" * 4096},
            )
            assert status == 204 and "Access-Control-Allow-Origin" not in headers
        assert server.alive()
    out = server.output()
    assert "Traceback" not in out and "ERROR" not in out, out
