"""The csrf plugin (plugins.csrf.middlewares.CSRFMiddleware): in-process with the memory
storage and with a real Valkey, in front of the trace plugin's echo action."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from plughost.errors import ConfigError
from plughost import Gateway

from valkey_support import ValkeyServer, command

from gateway_support import gateways, header_values, set_cookie, storages_yaml

CSRF = "plugins.csrf.middlewares.CSRFMiddleware"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def cookie_token(cookie: str, name: str = "csrf_token") -> str:
    key, _, value = cookie.split(";")[0].partition("=")
    assert key == name
    assert HEX32.match(value), value
    return value


def csrf_config(
    folder: Path,
    plugin_dir: Path,
    config: dict[str, Any],
    *,
    valkey_port: int | None = None,
    memory: dict[str, Any] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugins.yaml").write_text(
        "plugins:\n"
        + "".join(
            f"  - path: {plugin_dir / name}.so\n" for name in ["memory", "valkey", "trace", "csrf"]
        )
    )
    (folder / "storages.yaml").write_text(storages_yaml("Tokens", memory, valkey_port=valkey_port))
    (folder / "middlewares.yaml").write_text(
        f"middlewares:\n  CSRF:\n    use: {CSRF}\n    config: {json.dumps(config)}\n"
    )
    (folder / "actions.yaml").write_text(
        "actions:\n  Echo:\n    use: plugins.trace.actions.EchoAction\n"
    )
    (folder / "routes.yaml").write_text("""\
routes:
  Form:
    gatewayPath: /form/*
    methods: [GET, HEAD, OPTIONS, POST, PUT, DELETE, PATCH]
    middlewares: [CSRF]
    action: Echo
""")
    return folder


@pytest.fixture
def make(tmp_path: Path, test_plugin_dir: Path) -> Iterator[Any]:
    with gateways(tmp_path, csrf_config, test_plugin_dir) as build:
        yield build


def forbidden(response: Any) -> None:
    assert response.status == 403, (response.status, response.body)
    assert json.loads(response.body)["status"] == 403
    assert header_values(response, "Set-Cookie") == []


def post(gw: Gateway, token: str, sent: str | None = None, **kw: Any) -> Any:
    hdrs = {"Cookie": f"theme=dark; csrf_token={token}"}
    if sent is not None:
        hdrs["X-Csrf-Token"] = sent
    return gw.handle("POST", "/form/x", hdrs, b"a=1", **kw)


def test_safe_method_gets_token_cookie_with_seam_defaults(make: Any) -> None:
    gw = make({"storage": "Tokens"})
    r = gw.handle("GET", "/form/x")
    assert r.status == 200
    cookie = set_cookie(r)
    token = cookie_token(cookie)
    attrs = [a.strip() for a in cookie.split(";")[1:]]
    assert "Max-Age=3600" in attrs  # cookieExpiration 0 -> 1h
    assert any(a.startswith("Expires=") and a.endswith("GMT") for a in attrs)
    assert "Path=/" in attrs and "SameSite=Lax" in attrs
    assert "Secure" not in attrs and "HttpOnly" not in attrs
    assert not any(a.startswith("Domain=") for a in attrs)
    assert gw.storage("Tokens").get(f"csrf:{token}".encode()) is not None
    for method in ("HEAD", "OPTIONS"):
        assert cookie_token(set_cookie(gw.handle(method, "/form/x")))


def test_safe_method_keeps_a_known_token(make: Any) -> None:
    gw = make({"storage": "Tokens"})
    token = cookie_token(set_cookie(gw.handle("GET", "/form/x")))
    r = gw.handle("GET", "/form/x", {"Cookie": f"csrf_token={token}"})
    assert cookie_token(set_cookie(r)) == token
    # an unknown (forged) token is not adopted
    forged = "ab" * 16
    r = gw.handle("GET", "/form/x", {"Cookie": f"csrf_token={forged}"})
    assert cookie_token(set_cookie(r)) != forged
    assert gw.storage("Tokens").get(f"csrf:{forged}".encode()) is None


def test_tokens_per_client_are_capped(make: Any, caplog: Any) -> None:
    """A flood of cookieless GETs from one address (10x the storage's maxEntries) stores at
    most maxTokensPerClient tokens: the flooder's GETs still pass, without a token; visitors
    holding a token, and new visitors from other addresses, are served as before."""
    gw = make({"storage": "Tokens", "maxTokensPerClient": 10}, memory={"maxEntries": 30})
    returning = cookie_token(set_cookie(gw.handle("GET", "/form/x", client_ip="192.0.2.7")))
    issued = 0
    with caplog.at_level(logging.WARNING, logger="plughost.plugin"):
        for _ in range(300):
            r = gw.handle("GET", "/form/x", client_ip="198.51.100.1")
            assert r.status == 200, r.body
            issued += len(header_values(r, "Set-Cookie"))
    assert issued == 10
    assert any("maxTokensPerClient (10)" in rec.getMessage() for rec in caplog.records)
    r = gw.handle("GET", "/form/x", {"Cookie": f"csrf_token={returning}"}, client_ip="192.0.2.7")
    assert cookie_token(set_cookie(r)) == returning
    assert post(gw, returning, returning, client_ip="192.0.2.7").status == 200
    fresh = cookie_token(set_cookie(gw.handle("GET", "/form/x", client_ip="203.0.113.5")))
    assert post(gw, fresh, fresh, client_ip="203.0.113.5").status == 200


def test_no_cap_with_zero(make: Any) -> None:
    gw = make({"storage": "Tokens", "maxTokensPerClient": 0})
    assert all(header_values(gw.handle("GET", "/form/x"), "Set-Cookie") for _ in range(1100))


def test_tokens_are_random(make: Any) -> None:
    gw = make({"storage": "Tokens"})
    assert len({cookie_token(set_cookie(gw.handle("GET", "/form/x"))) for _ in range(50)}) == 50


def test_post_without_token_is_forbidden(make: Any) -> None:
    gw = make({"storage": "Tokens"})
    forbidden(gw.handle("POST", "/form/x", body=b"a=1"))
    token = cookie_token(set_cookie(gw.handle("GET", "/form/x")))
    forbidden(post(gw, token))  # cookie only
    forbidden(gw.handle("POST", "/form/x", {"X-Csrf-Token": token}))  # header only


def test_mismatching_token_is_forbidden(make: Any) -> None:
    gw = make({"storage": "Tokens"})
    token = cookie_token(set_cookie(gw.handle("GET", "/form/x")))
    other = cookie_token(set_cookie(gw.handle("GET", "/form/x")))
    forbidden(post(gw, token, other))
    forbidden(post(gw, token, token.upper()))
    forbidden(post(gw, token, token[:-1]))


def test_matching_token_in_storage_passes(make: Any) -> None:
    gw = make({"storage": "Tokens"})
    token = cookie_token(set_cookie(gw.handle("GET", "/form/x")))
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = gw.handle(
            method, "/form/x", {"Cookie": f"csrf_token={token}", "X-Csrf-Token": token}, b"a=1"
        )
        assert r.status == 200, (method, r.body)
        assert r.body.startswith(method.encode())
        assert cookie_token(set_cookie(r)) == token  # reusable, cookie slides


def test_token_not_in_storage_is_forbidden(make: Any) -> None:
    gw = make({"storage": "Tokens"})
    forged = "cd" * 16
    forbidden(post(gw, forged, forged))
    token = cookie_token(set_cookie(gw.handle("GET", "/form/x")))
    assert gw.storage("Tokens").delete(f"csrf:{token}".encode())  # expired / revoked
    forbidden(post(gw, token, token))


def test_expired_token_is_forbidden(make: Any) -> None:
    gw = make({"storage": "Tokens", "cookieExpiration": "1s"})
    token = cookie_token(set_cookie(gw.handle("GET", "/form/x")))
    assert "Max-Age=1" in set_cookie(gw.handle("GET", "/form/x", {"Cookie": f"csrf_token={token}"}))
    # expire it the way the storage would: same key, already-elapsed lifetime
    gw.storage("Tokens").set(f"csrf:{token}".encode(), b"1", ttl=0.001)
    time.sleep(0.05)
    forbidden(post(gw, token, token))


def test_single_use_token(make: Any) -> None:
    gw = make({"storage": "Tokens", "singleUseToken": True})
    token = cookie_token(set_cookie(gw.handle("GET", "/form/x")))
    r = post(gw, token, token)
    assert r.status == 200, r.body
    fresh = cookie_token(set_cookie(r))
    assert fresh != token
    assert gw.storage("Tokens").get(f"csrf:{token}".encode()) is None
    forbidden(post(gw, token, token))
    assert post(gw, fresh, fresh).status == 200


def test_cookie_attributes_and_other_lookups(make: Any) -> None:
    gw = make(
        {
            "storage": "Tokens",
            "keyLookup": "query:_csrf",
            "cookieName": "xsrf",
            "cookieDomain": "example.com",
            "cookiePath": "/form",
            "cookieSecure": True,
            "cookieHTTPOnly": True,
            "cookieSameSite": "strict",
            "cookieExpiration": 86400,
        }
    )
    cookie = set_cookie(gw.handle("GET", "/form/x"))
    token = cookie_token(cookie, "xsrf")
    attrs = [a.strip() for a in cookie.split(";")[1:]]
    for a in (
        "Max-Age=86400",
        "Domain=example.com",
        "Path=/form",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    ):
        assert a in attrs, (a, cookie)
    hdrs = {"Cookie": f"xsrf={token}"}
    assert gw.handle("POST", "/form/x", hdrs, query=f"a=1&_csrf={token}").status == 200
    forbidden(gw.handle("POST", "/form/x", {**hdrs, "X-Csrf-Token": token}))
    forbidden(gw.handle("POST", "/form/x", hdrs, query=f"_csrf={'0' * 32}"))

    gw = make({"storage": "Tokens", "keyLookup": "cookie:csrf_copy", "cookieSessionOnly": True})
    cookie = set_cookie(gw.handle("GET", "/form/x"))
    assert "Max-Age" not in cookie and "Expires" not in cookie
    token = cookie_token(cookie)
    ok = gw.handle("POST", "/form/x", {"Cookie": f"csrf_token={token}; csrf_copy={token}"})
    assert ok.status == 200


@pytest.mark.parametrize(
    "config, words",
    [
        (
            {},
            [
                "middlewares.yaml:4: middlewares.CSRF.config.storage: 'storage' is missing, and "
                f"{CSRF} needs it"
            ],
        ),
        ({"storage": "Nope"}, ["storage", "Nope"]),
        ({"storage": "Tokens", "keyLookup": "form:_csrf"}, ["keyLookup", "form:_csrf"]),
        ({"storage": "Tokens", "keyLookup": "header:"}, ["keyLookup", "valid name"]),
        ({"storage": "Tokens", "keyLookup": "header:bad name"}, ["keyLookup", "bad name"]),
        ({"storage": "Tokens", "keyLookup": "cookie:csrf_token"}, ["keyLookup", "cookieName"]),
        ({"storage": "Tokens", "cookieName": "a;b"}, ["cookieName", "a;b"]),
        ({"storage": "Tokens", "cookieSameSite": "Sometimes"}, ["cookieSameSite", "Sometimes"]),
        ({"storage": "Tokens", "cookieSameSite": "None"}, ["cookieSameSite", "cookieSecure"]),
        ({"storage": "Tokens", "cookieExpiration": -5}, ["cookieExpiration"]),
        ({"storage": "Tokens", "cookieExpiration": "soon"}, ["cookieExpiration"]),
        ({"storage": "Tokens", "cookiePath": "/a b"}, ["cookiePath"]),
        ({"storage": "Tokens", "cookieDomain": "ex ample.com"}, ["cookieDomain"]),
        ({"storage": "Tokens", "cookieSecure": "maybe"}, ["cookieSecure"]),
        ({"storage": "Tokens", "singleUseToken": "twice"}, ["singleUseToken"]),
        (
            {"storage": "Tokens", "maxTokensPerClient": -1},
            [
                "middlewares.yaml:4: middlewares.CSRF.config.maxTokensPerClient: 'maxTokensPerClient' is "
                "the number -1: it must be at least 0"
            ],
        ),
        ({"storage": "Tokens", "maxTokensPerClient": "many"}, ["maxTokensPerClient"]),
    ],
)
def test_config_errors_name_the_key(make: Any, config: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        make(config)
    text = str(exc.value)
    for word in words:
        assert word in text, text


def test_option_schema_refuses_a_misspelt_option_and_matches_names_ignoring_case(make: Any) -> None:
    """CSRFMiddleware declares its options (ABI 1.2): a misspelt option is refused before
    create runs, at its file, line and key, with the option it resembles; an option written
    in another case is the option itself."""
    with pytest.raises(ConfigError) as exc:
        make({"storage": "Tokens", "maxTokensPerClent": 1})
    assert (
        "middlewares.yaml:4: middlewares.CSRF.config.maxTokensPerClent: "
        f"{CSRF} has no option 'maxTokensPerClent': did you mean 'maxTokensPerClient'?"
        in str(exc.value)
    ), str(exc.value)

    gw = make({"Storage": "Tokens", "maxtokensperclient": 1, "COOKIENAME": "xsrf"})
    cookie_token(set_cookie(gw.handle("GET", "/form/x")), "xsrf")  # cookieName took effect
    # maxTokensPerClient took effect: a second cookieless GET from the address gets no token
    assert header_values(gw.handle("GET", "/form/x"), "Set-Cookie") == []


def test_valkey_storage(make: Any, tmp_path: Path) -> None:
    with ValkeyServer(tmp_path / "valkey") as valkey:
        gw = make(
            {"storage": "Valkey", "singleUseToken": True, "cookieExpiration": "10m"},
            valkey_port=valkey.port,
        )
        token = cookie_token(set_cookie(gw.handle("GET", "/form/x")))
        ttl = int(command(valkey.port, b"TTL", f"st:csrf:{token}".encode())[1:])
        assert 590 < ttl <= 600
        # a second gateway on the same Valkey accepts the token, once
        gw2 = make({"storage": "Valkey", "singleUseToken": True}, valkey_port=valkey.port)
        assert post(gw2, token, token).status == 200
        forbidden(post(gw, token, token))
        valkey.kill()
        r = gw.handle("GET", "/form/x")
        assert r.status == 503
        assert json.loads(r.body)["status"] == 503
