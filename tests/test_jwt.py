"""The jwt plugin (plugins.jwt.middlewares.JWTValidationMiddleware): tokens signed here with
PyJWT and cryptography for every algorithm, time and audience claims, attacks (alg none,
algorithm confusion, wrong keys, garbage of every kind), JWK sets served by a real local HTTP
server (kid selection, periodic and unknown-kid refresh, failures), configuration errors, and
one run through a real `plughost serve`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from plughost import Gateway
from plughost.sdk.pyelements import PythonAction

from gateway_support import Server, gateways, header

JWT = "plugins.jwt.middlewares.JWTValidationMiddleware"
SECRET = "a-shared-secret-of-at-least-64-bytes-for-hs512-0123456789abcdef0123456789"
INVALID = {"error": "invalid token", "status": 401}
MISSING = {"error": "missing bearer token", "status": 401}


# ----------------------------------------------------------------------------- helpers


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem(public_key: Any) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


class Keys:
    """One key pair per algorithm family, made once per session."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.p256 = ec.generate_private_key(ec.SECP256R1())
        self.p256b = ec.generate_private_key(ec.SECP256R1())
        self.p384 = ec.generate_private_key(ec.SECP384R1())
        self.p521 = ec.generate_private_key(ec.SECP521R1())
        self.ed25519 = ed25519.Ed25519PrivateKey.generate()
        self.ed448 = ed448.Ed448PrivateKey.generate()

    def for_alg(self, alg: str) -> Any:
        return {
            "RS256": self.rsa,
            "RS384": self.rsa,
            "RS512": self.rsa,
            "ES256": self.p256,
            "ES384": self.p384,
            "ES512": self.p521,
            "EdDSA": self.ed25519,
        }[alg]


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


def sign(claims: dict[str, Any], key: Any, alg: str, **headers: Any) -> str:
    return pyjwt.encode(claims, key, algorithm=alg, headers=headers or None)


def forge(
    header_obj: Any,
    claims: Any,
    secret: bytes | None = None,
    alg: str = "sha256",
    raw_header: bytes | None = None,
    raw_claims: bytes | None = None,
) -> str:
    """A token built by hand (for what PyJWT refuses to make), HMAC-signed with secret."""
    h = b64(raw_header if raw_header is not None else json.dumps(header_obj).encode())
    p = b64(raw_claims if raw_claims is not None else json.dumps(claims).encode())
    signing_input = f"{h}.{p}".encode()
    sig = b"" if secret is None else hmac.new(secret, signing_input, getattr(hashlib, alg)).digest()
    return f"{h}.{p}.{b64(sig)}"


class Locals(PythonAction):
    """Answers 200 with the request's locals as JSON, to see what the middleware set."""

    def handle(self, ex: Any) -> None:
        body = json.dumps({k: v.decode() for k, v in ex.locals.items()}).encode()
        ex.respond(200, body, "application/json")


def write_config(
    folder: Path, plugin_dir: Path, middlewares: dict[str, dict[str, Any]], action: str = "Locals"
) -> Path:
    """gateway.yaml: the jwt and static plugins, one middleware per entry and a route
    /<name> behind it that ends in ``action``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = {
        "plugins": [{"path": str(plugin_dir / "jwt.so")}, {"path": str(plugin_dir / "static.so")}],
        "middlewares": {name: {"use": JWT, "config": cfg} for name, cfg in middlewares.items()},
        "actions": {"Ok": {"use": "plugins.static.actions.StaticAction", "config": {"body": "ok"}}},
        "routes": {
            f"R{name}": {
                "gatewayPath": f"/{name}",
                "methods": ["GET"],
                "middlewares": [name],
                "action": action,
            }
            for name in middlewares
        },
    }
    path = folder / "gateway.yaml"
    path.write_text(json.dumps(text, indent=1))  # JSON is YAML
    return path


@pytest.fixture
def gateway_factory(tmp_path: Path, test_plugin_dir: Path) -> Iterator[Any]:
    """make(middlewares): a gateway of write_config(middlewares) with the Locals action."""
    with gateways(
        tmp_path, write_config, test_plugin_dir, python_elements={"Locals": Locals()}
    ) as make:
        yield make


def call(
    gw: Gateway, path: str, token: str | None = None, *, authorization: str | None = None
) -> Any:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return gw.handle("GET", path, headers)


def assert_accepted(r: Any) -> dict[str, str]:
    assert r.status == 200, (r.status, r.body)
    return json.loads(r.body)


def assert_invalid(r: Any) -> None:
    assert r.status == 401, (r.status, r.body)
    assert header(r, "WWW-Authenticate") == 'Bearer error="invalid_token"'
    assert header(r, "Content-Type") == "application/json"
    assert json.loads(r.body) == INVALID


def assert_missing(r: Any) -> None:
    assert r.status == 401, (r.status, r.body)
    assert header(r, "WWW-Authenticate") == "Bearer"
    assert json.loads(r.body) == MISSING


def static_config(keys: Keys, alg: str, **extra: Any) -> dict[str, Any]:
    if alg.startswith("HS"):
        key = SECRET
    elif alg == "EdDSA448":
        key = pem(keys.ed448.public_key())
        alg = "EdDSA"
    else:
        key = pem(keys.for_alg(alg).public_key())
    return {"signingKey": {"algorithm": alg, "key": key}, **extra}


def signing_key(keys: Keys, alg: str) -> Any:
    if alg.startswith("HS"):
        return SECRET
    if alg == "EdDSA448":
        return keys.ed448
    return keys.for_alg(alg)


# ------------------------------------------------------------------ every algorithm


ALGS = [
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "EdDSA448",
]


@pytest.mark.parametrize("alg", ALGS)
def test_every_algorithm_accepts_its_tokens_and_sets_locals(
    gateway_factory: Any, keys: Keys, alg: str
) -> None:
    gw = gateway_factory({"J": static_config(keys, alg)})
    jose_alg = "EdDSA" if alg.startswith("EdDSA") else alg
    claims = {"sub": "alice", "exp": int(time.time()) + 60, "roles": ["a", "b"], "n": 1.5}
    token = sign(claims, signing_key(keys, alg), jose_alg)
    got = assert_accepted(call(gw, "/J", token))
    assert got["jwt.sub"] == "alice"
    assert json.loads(got["jwt.claims"]) == claims
    assert json.loads(got["jwt.header"])["alg"] == jose_alg


@pytest.mark.parametrize("alg", ALGS)
def test_every_algorithm_refuses_wrong_keys_and_tampering(
    gateway_factory: Any, keys: Keys, alg: str
) -> None:
    gw = gateway_factory({"J": static_config(keys, alg)})
    jose_alg = "EdDSA" if alg.startswith("EdDSA") else alg
    other = {
        "HS": "another-secret-another-secret-another-secret-another-secret-xyz0",
        "RS": keys.rsa2,
        "ES": ec.generate_private_key(keys.for_alg(jose_alg).curve)
        if jose_alg.startswith("ES")
        else None,
        "Ed": (
            ed448.Ed448PrivateKey.generate()
            if alg == "EdDSA448"
            else ed25519.Ed25519PrivateKey.generate()
        ),
    }[jose_alg[:2]]
    claims = {"sub": "alice"}
    assert_invalid(call(gw, "/J", sign(claims, other, jose_alg)))
    good = sign(claims, signing_key(keys, alg), jose_alg)
    h, p, s = good.split(".")
    tampered = b64(json.dumps({"sub": "mallory"}).encode())
    assert_invalid(call(gw, "/J", f"{h}.{tampered}.{s}"))
    sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    sig[len(sig) // 2] ^= 1
    assert_invalid(call(gw, "/J", f"{h}.{p}.{b64(bytes(sig))}"))
    assert_invalid(call(gw, "/J", f"{h}.{p}.{b64(bytes(sig[:-1]))}"))  # one byte short
    assert_accepted(call(gw, "/J", good))


def test_ecdsa_der_signature_instead_of_jose_is_refused(gateway_factory: Any, keys: Keys) -> None:
    from cryptography.hazmat.primitives import hashes

    gw = gateway_factory({"J": static_config(keys, "ES256")})
    h = b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    p = b64(json.dumps({"sub": "x"}).encode())
    der = keys.p256.sign(f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))
    assert_invalid(call(gw, "/J", f"{h}.{p}.{b64(der)}"))


# ------------------------------------------------------------------- attacks on alg


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
def test_alg_none_is_refused(gateway_factory: Any, keys: Keys, alg: str) -> None:
    gw = gateway_factory({"H": static_config(keys, "HS256"), "R": static_config(keys, "RS256")})
    unsigned = forge({"alg": alg, "typ": "JWT"}, {"sub": "admin"})
    for path in ("/H", "/R"):
        assert_invalid(call(gw, path, unsigned))  # empty signature
        assert_invalid(call(gw, path, unsigned + "AAAA"))  # some signature
    assert_invalid(call(gw, "/H", forge({"alg": alg}, {"sub": "admin"}, SECRET.encode())))
    if alg == "none":
        assert_invalid(call(gw, "/H", pyjwt.encode({"sub": "admin"}, None, algorithm="none")))


def test_algorithm_confusion_is_refused(gateway_factory: Any, keys: Keys) -> None:
    """An HS256 token whose HMAC key is the server's RSA public key (PEM), and tokens of
    other asymmetric algorithms, against a middleware configured for RS256."""
    public_pem = pem(keys.rsa.public_key())
    gw = gateway_factory(
        {
            "R": {"signingKey": {"algorithm": "RS256", "key": public_pem}},
            "E": static_config(keys, "ES256"),
        }
    )
    claims = {"sub": "admin"}
    for secret in (public_pem.encode(), public_pem.strip().encode()):
        for alg, digest in (("HS256", "sha256"), ("HS384", "sha384"), ("HS512", "sha512")):
            assert_invalid(
                call(gw, "/R", forge({"alg": alg, "typ": "JWT"}, claims, secret, digest))
            )
    assert_invalid(call(gw, "/R", sign(claims, keys.rsa, "RS384")))  # same key, other alg
    assert_invalid(call(gw, "/R", sign(claims, keys.rsa, "PS256")))  # unsupported alg
    assert_invalid(call(gw, "/R", sign(claims, keys.p256, "ES256")))
    assert_invalid(call(gw, "/E", sign(claims, keys.rsa, "RS256")))
    ec_pem = pem(keys.p256.public_key()).encode()
    assert_invalid(call(gw, "/E", forge({"alg": "HS256"}, claims, ec_pem)))
    assert_accepted(call(gw, "/R", sign(claims, keys.rsa, "RS256")))


def test_header_extensions_and_bad_kid_are_refused(gateway_factory: Any, keys: Keys) -> None:
    gw = gateway_factory({"H": static_config(keys, "HS256")})
    s = SECRET.encode()
    assert_invalid(call(gw, "/H", forge({"alg": "HS256", "crit": ["exp"], "exp": 1}, {}, s)))
    assert_invalid(call(gw, "/H", forge({"alg": "HS256", "b64": False, "crit": ["b64"]}, {}, s)))
    assert_invalid(call(gw, "/H", forge({"alg": "HS256", "kid": 7}, {}, s)))
    assert_invalid(call(gw, "/H", forge({"typ": "JWT"}, {}, s)))  # no alg
    assert_invalid(call(gw, "/H", forge({"alg": ["HS256"]}, {}, s)))
    # a jku/jwk in the token header is never followed or trusted
    assert_invalid(
        call(gw, "/H", forge({"alg": "HS256", "jku": "http://127.0.0.1:9/"}, {}, b"other"))
    )
    assert_accepted(call(gw, "/H", forge({"alg": "HS256", "kid": "any", "typ": "JWT"}, {}, s)))


# ------------------------------------------------------------------ time and audience


def test_exp_nbf_iat_and_leeway(gateway_factory: Any, keys: Keys) -> None:
    gw = gateway_factory(
        {
            "Strict": static_config(keys, "HS256"),
            "Lenient": static_config(keys, "HS256", leeway="30s"),
        }
    )
    now = int(time.time())

    def tok(**claims: Any) -> str:
        return sign({"sub": "a", **claims}, SECRET, "HS256")

    assert_accepted(call(gw, "/Strict", tok()))  # no time claims at all
    assert_accepted(call(gw, "/Strict", tok(exp=now + 60, nbf=now - 5, iat=now - 5)))
    assert_accepted(call(gw, "/Strict", tok(exp=now + 60.5)))  # NumericDate may be fractional
    for bad in (
        dict(exp=now - 10),
        dict(nbf=now + 10),
        dict(iat=now + 10),
        dict(exp=now),
        dict(exp=now - 10, nbf=now - 20),
    ):
        assert_invalid(call(gw, "/Strict", tok(**bad)))
        assert_accepted(call(gw, "/Lenient", tok(**bad)))
    for bad in (dict(exp=now - 40), dict(nbf=now + 40), dict(iat=now + 40)):
        assert_invalid(call(gw, "/Lenient", tok(**bad)))
    for bad in (dict(exp=str(now + 60)), dict(nbf=None), dict(iat=[now]), dict(exp=True)):
        assert_invalid(
            call(gw, "/Lenient", forge({"alg": "HS256"}, {"sub": "a", **bad}, SECRET.encode()))
        )


def test_issuer_and_audience(gateway_factory: Any, keys: Keys) -> None:
    gw = gateway_factory(
        {
            "Iss": static_config(keys, "HS256", issuer="https://issuer.example"),
            "Aud": static_config(keys, "HS256", audience="api"),
            "Auds": static_config(
                keys, "HS256", audience=["api", "web"], issuer="https://issuer.example"
            ),
        }
    )

    def tok(**claims: Any) -> str:
        return forge({"alg": "HS256"}, {"sub": "a", **claims}, SECRET.encode())

    assert_accepted(call(gw, "/Iss", tok(iss="https://issuer.example")))
    for bad in (
        {},
        {"iss": "https://evil.example"},
        {"iss": ["https://issuer.example"]},
        {"iss": "https://issuer.example/"},
    ):
        assert_invalid(call(gw, "/Iss", tok(**bad)))
    assert_accepted(call(gw, "/Aud", tok(aud="api")))
    assert_accepted(call(gw, "/Aud", tok(aud=["other", "api"])))
    for bad in (
        {},
        {"aud": "web"},
        {"aud": []},
        {"aud": ["web", "x"]},
        {"aud": ["api", 7]},
        {"aud": {"api": 1}},
        {"aud": "API"},
    ):
        assert_invalid(call(gw, "/Aud", tok(**bad)))
    iss = "https://issuer.example"
    assert_accepted(call(gw, "/Auds", tok(aud="web", iss=iss)))
    assert_accepted(call(gw, "/Auds", tok(aud=["x", "api"], iss=iss)))
    assert_invalid(call(gw, "/Auds", tok(aud="web")))
    assert_invalid(call(gw, "/Auds", tok(aud="mobile", iss=iss)))


# ------------------------------------------------------------------------ bad input


def test_missing_or_malformed_authorization(gateway_factory: Any, keys: Keys) -> None:
    gw = gateway_factory({"H": static_config(keys, "HS256")})
    good = sign({"sub": "a"}, SECRET, "HS256")
    assert_missing(call(gw, "/H"))
    for value in (
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        f"Basic {good}",
        f"Bearer{good}",
        f"Token {good}",
        "Basic dXNlcjpwYXNz",
        f"MAC {good}",
        f"Bearerx {good}",
    ):
        assert_missing(call(gw, "/H", authorization=value))
    for value in (
        f"bearer {good}",
        f"BEARER {good}",
        f"Bearer  {good}",
        f"Bearer {good} ",
        f"Bearer\t{good}",
    ):
        assert_accepted(call(gw, "/H", authorization=value))
    for value in (
        f"Bearer {good} extra",
        f"Bearer {good},{good}",
        f"Bearer {good}={good}",
        f'Bearer "{good}"',
    ):
        assert_invalid(call(gw, "/H", authorization=value))


def test_garbage_tokens_are_refused_cleanly(gateway_factory: Any, keys: Keys) -> None:
    gw = gateway_factory({"H": static_config(keys, "HS256"), "E": static_config(keys, "ES256")})
    s = SECRET.encode()
    good = sign({"sub": "a"}, SECRET, "HS256")
    h, p, sig = good.split(".")
    cases = [
        "x",
        ".",
        "..",
        "...",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        f"{h}.{p}",
        f"{h}.{p}.",
        f".{p}.{sig}",
        f"{h}..{sig}",
        f"{h}.{p}.{sig}.",
        f"{h}.{p}.{sig}.{sig}",
        f"{h}.{p}.{sig}=",
        f"{h}=.{p}.{sig}",
        f"{h}.{p}.{sig[:-1]}",
        f"{h}.{p}.{sig[:-2]}",
        good[:-1],
        good[: len(good) // 2],
        f"{h}.{p}.{sig}A",
        f"{h}.{p}.{sig}AAAA",
        f"{h}.{p}.{sig.replace('_', '/').replace('-', '+')}a+/",
        f"{h}!.{p}.{sig}",
        f"{h}.{p}%.{sig}",
        f"{h[:-1]}.{p}.{sig}",
        h + "A" * 5 + "." + p + "." + sig,  # 4k+1 characters
        b64(b"\x00\x01\x02") + "." + p + "." + sig,  # binary header
        b64(b"[1,2]") + "." + p + "." + sig,  # JSON, not an object
        b64(b'"HS256"') + "." + p + "." + sig,
        b64(b"null") + "." + p + "." + sig,
        b64(b"{") + "." + p + "." + sig,
        forge(None, None, s, raw_header=b'{"alg":"HS256\xff"}', raw_claims=b"{}"),  # bad UTF-8
        forge(None, None, s, raw_header=b'{"alg":"HS256","x":"\\ud800"}', raw_claims=b"{}"),
        forge(None, None, s, raw_header=b'{"alg":"HS256","x":"a\\u0000b"}', raw_claims=b"{}"),
        forge(None, None, s, raw_header=b'{"alg":"HS256","alg":"none"}', raw_claims=b"{}"),
        forge(None, None, s, raw_header=b'{"alg":"HS256"} trailing', raw_claims=b"{}"),
        forge(None, None, s, raw_header=b'{"alg":"HS256","n":1e999}', raw_claims=b"{}"),
        forge(
            None,
            None,
            s,
            raw_header=b'{"alg":"HS256","n":123456789012345678901234}',
            raw_claims=b"{}",
        ),
        forge(None, None, s, raw_header=b'\xef\xbb\xbf{"alg":"HS256"}', raw_claims=b"{}"),
        # signed correctly, but the claims are not a JSON object / not JSON / duplicated
        forge({"alg": "HS256"}, None, s, raw_claims=b"[]"),
        forge({"alg": "HS256"}, None, s, raw_claims=b"not json"),
        forge({"alg": "HS256"}, None, s, raw_claims=b'{"sub":"a","sub":"b"}'),
        forge({"alg": "HS256"}, None, s, raw_claims=b'{"sub":"\xc3\x28"}'),
        forge({"alg": "HS256"}, None, s, raw_claims=b""),
        "é.é.é",
        "\u00ff" * 10,
    ]
    for token in cases:
        r = call(gw, "/H", authorization="Bearer " + token)
        assert r.status == 401, (token, r.status, r.body)
        assert_invalid(r)
        assert_invalid(call(gw, "/E", authorization="Bearer " + token))
    # the ECDSA signature must be exactly 2 x 32 bytes
    es = sign({"sub": "a"}, keys.p256, "ES256")
    eh, ep, esig = es.split(".")
    raw = base64.urlsafe_b64decode(esig + "=" * (-len(esig) % 4))
    for bad in (raw[:-1], raw + b"\x00", b"\x00" * 64, b"\xff" * 64, b"", raw[:32]):
        assert_invalid(call(gw, "/E", f"{eh}.{ep}.{b64(bad)}" if bad else f"{eh}.{ep}.A"))
    assert_accepted(call(gw, "/E", es))
    assert_accepted(call(gw, "/H", good))


def test_huge_tokens_and_nesting_bombs(gateway_factory: Any, keys: Keys) -> None:
    gw = gateway_factory(
        {
            "H": static_config(keys, "HS256"),
            "Small": static_config(keys, "HS256", maxTokenSize=256),
            "Big": static_config(keys, "HS256", maxTokenSize=65536),
        }
    )
    s = SECRET.encode()
    big = sign({"sub": "a", "pad": "x" * 9000}, SECRET, "HS256")
    assert_invalid(call(gw, "/H", big))
    assert_invalid(call(gw, "/H", "A" * 100_000))
    assert_invalid(call(gw, "/H", "A" * 5000 + "." + "A" * 5000 + "." + "A" * 5000))
    fits = sign({"sub": "a", "pad": "x" * 5000}, SECRET, "HS256")
    assert 6000 < len(fits) < 8192
    assert_accepted(call(gw, "/H", fits))
    assert_invalid(call(gw, "/Small", fits))
    assert_accepted(call(gw, "/Small", sign({"sub": "a"}, SECRET, "HS256")))
    # nesting deeper than 64 levels, in the header and in correctly signed claims: up to
    # 2900 levels fit in 8 KiB, 24000 in the largest maxTokenSize (jansson alone would
    # recurse 2048 deep, more stack than a musl thread has)
    for path, depth in (("/H", 65), ("/H", 2100), ("/H", 2900), ("/Big", 24000)):
        bomb = b"[" * depth + b"]" * depth
        assert_invalid(
            call(
                gw,
                path,
                forge(
                    None, None, s, raw_header=b'{"alg":"HS256","x":' + bomb + b"}", raw_claims=b"{}"
                ),
            )
        )
        assert_invalid(
            call(gw, path, forge({"alg": "HS256"}, None, s, raw_claims=b'{"x":' + bomb + b"}"))
        )
    obj_bomb = b'{"a":' * 7000 + b"1" + b"}" * 7000
    assert_invalid(call(gw, "/Big", forge({"alg": "HS256"}, None, s, raw_claims=obj_bomb)))
    # 64 levels in all pass; brackets inside strings do not count
    deep_ok = b'{"x":' + b"[" * 63 + b"]" * 63 + b',"s":"' + b"[{" * 500 + b'\\"[[["}'
    for path in ("/H", "/Big"):
        got = assert_accepted(call(gw, path, forge({"alg": "HS256"}, None, s, raw_claims=deep_ok)))
        assert json.loads(got["jwt.claims"])["s"].endswith('"[[[')


def test_base64url_decoding_is_strict(gateway_factory: Any, keys: Keys) -> None:
    """Padding, the standard alphabet, non-canonical trailing bits: all refused."""
    gw = gateway_factory({"H": static_config(keys, "HS256")})
    s = SECRET.encode()
    # a header whose base64url has a length of 4k+2 and 4k+3 (1 and 2 bytes over)
    for extra in ("", " ", "  "):
        hdr = json.dumps({"alg": "HS256", "p": extra}).encode()
        claims = b'{"sub":"a"}'
        assert_accepted(call(gw, "/H", forge(None, None, s, raw_header=hdr, raw_claims=claims)))
        token = forge(None, None, s, raw_header=hdr, raw_claims=claims)
        h, p, sig = token.split(".")
        if len(h) % 4:
            # standard base64 with padding: same bytes, not base64url
            padded = h + "=" * (-len(h) % 4)
            assert_invalid(call(gw, "/H", f"{padded}.{p}.{sig}"))
            # flip the unused low bits of the last character: decodes to the same bytes in
            # lenient decoders, must be refused here (and the signature would not match)
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            last = alphabet.index(h[-1])
            noncanon = h[:-1] + alphabet[last | (1 if len(h) % 4 == 3 else 3)]
            if noncanon != h:
                assert_invalid(call(gw, "/H", f"{noncanon}.{p}.{sig}"))
    # '+' and '/' of standard base64 in the signature
    tok = sign({"sub": "a"}, SECRET, "HS256")
    h, p, sig = tok.split(".")
    std = sig.replace("-", "+").replace("_", "/")
    if std != sig:
        assert_invalid(call(gw, "/H", f"{h}.{p}.{std}"))


# ------------------------------------------------------------------------ JWK sets


def jwk(public_key: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    if isinstance(public_key, rsa.RSAPublicKey):
        obj = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        obj = ECAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        obj = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    if kid is not None:
        obj["kid"] = kid
    obj.update(extra)
    return obj


class JwksServer:
    """A real HTTP server on a free loopback port, serving ``self.body`` (JSON) with
    ``self.status`` at every path; counts the requests it answered."""

    def __init__(self, port: int = 0) -> None:
        self.body: Any = {"keys": []}
        self.status = 200
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                data = (
                    outer.body if isinstance(outer.body, bytes) else json.dumps(outer.body).encode()
                )
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def set_keys(self, *keys: dict[str, Any]) -> None:
        self.body = {"keys": list(keys)}
        self.status = 200

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    try:
        yield server
    finally:
        server.close()


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_jwks_kid_selection(gateway_factory: Any, keys: Keys, jwks: JwksServer) -> None:
    jwks.set_keys(
        jwk(keys.rsa.public_key(), "r1"),
        jwk(keys.p256.public_key(), "e1"),
        jwk(keys.ed25519.public_key(), "o1"),
        jwk(keys.p384.public_key(), "e2", alg="ES384", use="sig"),
        jwk(keys.rsa2.public_key(), "r2", alg="RS512"),
        {"kty": "oct", "kid": "hs", "k": b64(SECRET.encode())},  # skipped: never from a URL
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},  # skipped
        jwk(keys.p521.public_key(), "enc", use="enc"),  # skipped: not for signing
        {
            "kty": "EC",
            "kid": "offcurve",
            "crv": "P-256",
            "x": b64(b"\x01" * 32),
            "y": b64(b"\x02" * 32),
        },  # skipped: not on the curve
    )
    gw = gateway_factory({"J": {"jwkUrls": [jwks.url]}})
    claims = {"sub": "bob"}
    assert (
        assert_accepted(call(gw, "/J", sign(claims, keys.rsa, "RS256", kid="r1")))["jwt.sub"]
        == "bob"
    )
    assert_accepted(call(gw, "/J", sign(claims, keys.rsa, "RS512", kid="r1")))
    assert_accepted(call(gw, "/J", sign(claims, keys.p256, "ES256", kid="e1")))
    assert_accepted(call(gw, "/J", sign(claims, keys.ed25519, "EdDSA", kid="o1")))
    assert_accepted(call(gw, "/J", sign(claims, keys.p384, "ES384", kid="e2")))
    assert_accepted(call(gw, "/J", sign(claims, keys.rsa2, "RS512", kid="r2")))
    # the key's "alg" pins it
    assert_invalid(call(gw, "/J", sign(claims, keys.rsa2, "RS256", kid="r2")))
    # a valid signature by a key of the set, under another key's kid
    assert_invalid(call(gw, "/J", sign(claims, keys.rsa2, "RS256", kid="r1")))
    assert_invalid(call(gw, "/J", sign(claims, keys.p256, "ES256", kid="r1")))  # confusion
    assert_invalid(call(gw, "/J", sign(claims, keys.rsa, "RS256", kid="e1")))
    assert_invalid(call(gw, "/J", forge({"alg": "HS256", "kid": "hs"}, claims, SECRET.encode())))
    assert_invalid(
        call(
            gw,
            "/J",
            forge({"alg": "HS256", "kid": "r1"}, claims, pem(keys.rsa.public_key()).encode()),
        )
    )
    for kid in ("broken", "enc", "offcurve", "nope", ""):
        assert_invalid(call(gw, "/J", sign(claims, keys.p521, "ES512", kid=kid)))
    assert_invalid(call(gw, "/J", sign(claims, keys.rsa, "RS256")))  # no kid, several keys


def test_jwks_single_key_without_kid_and_with_signing_key(
    gateway_factory: Any, keys: Keys, jwks: JwksServer
) -> None:
    jwks.set_keys(jwk(keys.ed25519.public_key(), None))
    gw = gateway_factory(
        {
            "Only": {"jwkUrls": [jwks.url]},
            "Both": {"jwkUrls": [jwks.url], "signingKey": {"algorithm": "HS256", "key": SECRET}},
        }
    )
    assert_accepted(call(gw, "/Only", sign({"sub": "a"}, keys.ed25519, "EdDSA")))
    assert_invalid(call(gw, "/Only", sign({"sub": "a"}, keys.ed448, "EdDSA")))
    # with both, a token without a kid goes to signingKey
    assert_accepted(call(gw, "/Both", sign({"sub": "a"}, SECRET, "HS256")))
    assert_invalid(call(gw, "/Both", sign({"sub": "a"}, keys.ed25519, "EdDSA")))
    # and one with an unknown kid too
    assert_accepted(call(gw, "/Both", sign({"sub": "a"}, SECRET, "HS256", kid="x")))


def test_jwks_periodic_refresh_and_failures_keep_the_last_good_set(
    gateway_factory: Any, keys: Keys, jwks: JwksServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plughost")
    jwks.set_keys(jwk(keys.rsa.public_key(), "old"))
    gw = gateway_factory(
        {"J": {"jwkUrls": [jwks.url], "jwkRefreshInterval": "1s", "jwkMinRefreshInterval": "1h"}}
    )
    old = sign({"sub": "a"}, keys.rsa, "RS256", kid="old")
    new = sign({"sub": "a"}, keys.p256, "ES256", kid="new")
    assert_accepted(call(gw, "/J", old))
    assert_invalid(call(gw, "/J", new))
    # the server's set changes: the next refresh picks it up, and drops the old key
    jwks.set_keys(jwk(keys.p256.public_key(), "new"))
    wait_until(lambda: call(gw, "/J", new).status == 200)
    assert_invalid(call(gw, "/J", old))
    # failures (an error status, then garbage) keep the last good keys
    for status, body in ((500, {"error": "down"}), (200, b"<html>not json"), (200, {"keys": "no"})):
        jwks.status, jwks.body = status, body
        hits = jwks.hits
        wait_until(lambda hits=hits: jwks.hits >= hits + 2)
        assert_accepted(call(gw, "/J", new))
    jwks.status, jwks.body = 200, b'{"keys":' + b"[" * 5000 + b"]" * 5000 + b"}"
    hits = jwks.hits
    wait_until(lambda hits=hits: jwks.hits >= hits + 2)
    assert_accepted(call(gw, "/J", new))
    assert "fetching the JWK set" in caplog.text and "keeping its last good keys" in caplog.text
    assert "nested more than 64 deep" in caplog.text
    # and a server that went away altogether
    jwks.close()
    time.sleep(1.5)
    assert_accepted(call(gw, "/J", new))


def test_jwks_unknown_kid_refreshes_early(
    gateway_factory: Any, keys: Keys, jwks: JwksServer
) -> None:
    jwks.set_keys(jwk(keys.rsa.public_key(), "k1"))
    gw = gateway_factory(
        {"J": {"jwkUrls": [jwks.url], "jwkRefreshInterval": "1h", "jwkMinRefreshInterval": "0s"}}
    )
    hits = jwks.hits
    jwks.set_keys(jwk(keys.rsa.public_key(), "k1"), jwk(keys.rsa2.public_key(), "k2"))
    token = sign({"sub": "a"}, keys.rsa2, "RS256", kid="k2")
    assert_invalid(call(gw, "/J", token))  # refused at once, and a refresh is asked for
    wait_until(lambda: call(gw, "/J", token).status == 200, timeout=5)
    assert jwks.hits > hits
    # rate limit: with a long minimum interval, unknown kids do not hammer the server
    gw2 = gateway_factory(
        {"L": {"jwkUrls": [jwks.url], "jwkRefreshInterval": "1h", "jwkMinRefreshInterval": "1h"}}
    )
    hits = jwks.hits
    for i in range(50):
        assert_invalid(call(gw2, "/L", sign({"sub": "a"}, keys.rsa, "RS256", kid=f"x{i}")))
    time.sleep(0.5)
    assert jwks.hits == hits


def test_concurrent_requests_while_the_key_set_rotates(
    gateway_factory: Any, keys: Keys, jwks: JwksServer
) -> None:
    """Threads verify tokens while the refresher swaps key sets under them."""
    from concurrent.futures import ThreadPoolExecutor

    stable = jwk(keys.rsa.public_key(), "stable")
    rotating = jwk(keys.p256.public_key(), "rotating")
    jwks.set_keys(stable, rotating)
    gw = gateway_factory(
        {"J": {"jwkUrls": [jwks.url], "jwkRefreshInterval": "1s", "jwkMinRefreshInterval": "0s"}}
    )
    good = sign({"sub": "a"}, keys.rsa, "RS256", kid="stable")
    flapping = sign({"sub": "a"}, keys.p256, "ES256", kid="rotating")
    stop = threading.Event()

    def rotate() -> None:
        while not stop.is_set():
            jwks.set_keys(stable)
            time.sleep(0.1)
            jwks.set_keys(stable, rotating)
            time.sleep(0.1)

    def worker(i: int) -> tuple[int, int]:
        ok = other = 0
        for _ in range(150):
            ok += call(gw, "/J", good).status == 200
            other += call(gw, "/J", flapping).status in (200, 401)
        return ok, other

    rotator = threading.Thread(target=rotate)
    rotator.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(worker, range(4)))
    finally:
        stop.set()
        rotator.join()
    assert results == [(150, 150)] * 4


def test_jwks_unreachable_at_start_then_recovers(
    gateway_factory: Any, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plughost")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/jwks.json"
    gw = gateway_factory(
        {"J": {"jwkUrls": [url], "jwkRefreshInterval": "1s", "jwkTimeout": "500ms"}}
    )
    assert "no JWK set could be loaded yet" in caplog.text
    token = sign({"sub": "a"}, keys.p256, "ES256", kid="e")
    assert_invalid(call(gw, "/J", token))
    # a server appears on that port
    server = JwksServer(port)
    try:
        server.set_keys(jwk(keys.p256.public_key(), "e"))
        wait_until(lambda: call(gw, "/J", token).status == 200)
    finally:
        server.close()


def test_jwks_close_does_not_wait_for_a_hanging_server(
    tmp_path: Path, test_plugin_dir: Path, keys: Keys
) -> None:
    """A server that accepts and never answers: create gives up after jwkTimeout, and
    closing the gateway stops the refresher without waiting for its transfer to time out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/jwks"
        path = write_config(
            tmp_path / "c",
            test_plugin_dir,
            {"J": {"jwkUrls": [url], "jwkRefreshInterval": "1s", "jwkTimeout": "700ms"}},
        )
        gw = Gateway.from_config(path, python_elements={"Locals": Locals()})
        time.sleep(1.2)  # the refresher is inside its next (hanging) fetch now
        started = time.monotonic()
        gw.close()
        assert time.monotonic() - started < 1.5
    finally:
        listener.close()


# ------------------------------------------------------------------- configuration


def config_error(gateway_factory: Any, cfg: dict[str, Any]) -> str:
    with pytest.raises(Exception) as exc:
        gateway_factory({"J": cfg})
    return str(exc.value)


@pytest.mark.parametrize(
    "make_cfg, key, words",
    [
        (lambda k: {}, "", "signingKey"),
        (
            lambda k: {"signingKey": {"algorithm": "HS999", "key": "x"}},
            "signingKey.algorithm",
            "'algorithm' is 'HS999', not one of 'HS256'",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "hs256", "key": "x"}},
            "signingKey.algorithm",
            "case-sensitive",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "none", "key": "x"}},
            "signingKey.algorithm",
            "'algorithm' is 'none', not one of",
        ),
        (lambda k: {"signingKey": {"key": "x"}}, "signingKey.algorithm", "required"),
        (lambda k: {"signingKey": {"algorithm": "HS256"}}, "signingKey.key", "required"),
        (
            lambda k: {"signingKey": {"algorithm": "HS256", "key": ""}},
            "signingKey.key",
            "is empty: give it a string",
        ),
        (lambda k: {"signingKey": "HS256"}, "signingKey", ""),
        (
            lambda k: {"signingKey": {"algorithm": "HS256", "key": "x", "kid": "a"}},
            "signingKey.kid",
            "'signingKey' has no key 'kid'",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "RS256", "key": pem(k.p256.public_key())}},
            "signingKey.key",
            "EC key on P-256, which cannot verify RS256",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "ES384", "key": pem(k.p256.public_key())}},
            "signingKey.key",
            "cannot verify ES384",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "ES256", "key": pem(k.rsa.public_key())}},
            "signingKey.key",
            "RSA key of 2048 bits, which cannot verify ES256",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "EdDSA", "key": pem(k.rsa.public_key())}},
            "signingKey.key",
            "cannot verify EdDSA",
        ),
        (
            lambda k: {
                "signingKey": {
                    "algorithm": "RS256",
                    "key": pem(
                        rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
                    ),
                }
            },
            "signingKey.key",
            "at least 2048 bits",
        ),
        (
            lambda k: {
                "signingKey": {
                    "algorithm": "RS256",
                    "key": k.rsa.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode(),
                }
            },
            "signingKey.key",
            "private key",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "RS256", "key": "/etc/keys/public.pem"}},
            "signingKey.key",
            "not PEM text",
        ),
        (
            lambda k: {
                "signingKey": {
                    "algorithm": "RS256",
                    "key": "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n",
                }
            },
            "signingKey.key",
            "not a readable PEM",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "HS256", "key": pem(k.rsa.public_key())}},
            "signingKey.key",
            "shared secret",
        ),
        (lambda k: {"jwkUrls": "https://x.example/jwks"}, "jwkUrls", "must be a list of strings"),
        (lambda k: {"jwkUrls": []}, "jwkUrls", "has 0 items: it must have at least 1"),
        (lambda k: {"jwkUrls": ["ftp://x.example/jwks"]}, "jwkUrls", "http(s)://"),
        (
            lambda k: {"jwkUrls": [{"url": "https://x"}]},
            "jwkUrls[0]",
            "must be a string, not a map",
        ),
        (lambda k: {"jwkUrls": ["https://x.example/a b"]}, "jwkUrls", "without spaces"),
        (
            lambda k: {"signingKey": {"algorithm": "HS256", "key": "k"}, "leeway": "-5s"},
            "leeway",
            "negative",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "HS256", "key": "k"}, "leeway": "soon"},
            "leeway",
            "",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "HS256", "key": "k"}, "maxTokenSize": 10},
            "maxTokenSize",
            "must be at least 256 and at most 65536",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "HS256", "key": "k"}, "issuer": ""},
            "issuer",
            "empty",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "HS256", "key": "k"}, "audience": []},
            "audience",
            "has 0 items: it must have at least 1",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "HS256", "key": "k"}, "audience": [1]},
            "audience",
            "string",
        ),
        (
            lambda k: {"signingKey": {"algorithm": "HS256", "key": "k"}, "tokenLookup": "x"},
            "tokenLookup",
            f"{JWT} has no option 'tokenLookup'",
        ),
        (
            lambda k: {"jwkUrls": ["http://127.0.0.1:9/"], "jwkRefreshInterval": "10ms"},
            "jwkRefreshInterval",
            "at least",
        ),
        (lambda k: {"jwkUrls": ["http://127.0.0.1:9/"], "jwkTimeout": 0}, "jwkTimeout", "at least"),
    ],
)
def test_config_errors_name_the_key(
    gateway_factory: Any, keys: Keys, make_cfg: Any, key: str, words: str
) -> None:
    message = config_error(gateway_factory, make_cfg(keys))
    where = "middlewares.J.config" + (f".{key}:" if key else ":")
    assert where in message, message
    assert words in message, message


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` where ``text`` first appears."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} is not in {path}")


def test_option_names_are_checked_by_the_schema_and_ignore_case(
    tmp_path: Path, test_plugin_dir: Path, gateway_factory: Any
) -> None:
    # a misspelt option: refused before create runs, at its own file, line and key
    path = write_config(
        tmp_path / "typo",
        test_plugin_dir,
        {"J": {"signingKey": {"algorithm": "HS256", "key": SECRET}, "maxTokenSise": 4096}},
    )
    with pytest.raises(Exception) as exc:
        Gateway.from_config(path, python_elements={"Locals": Locals()})
    line = line_of(path, '"maxTokenSise"')
    assert (
        f"{path}:{line}: middlewares.J.config.maxTokenSise: {JWT} has no option "
        "'maxTokenSise': did you mean 'maxTokenSize'?"
    ) in str(exc.value), str(exc.value)

    # the same options written in other case are accepted and take effect
    gw = gateway_factory(
        {
            "J": {
                "SigningKey": {"Algorithm": "HS256", "KEY": SECRET},
                "LEEWAY": "30s",
                "maxtokensize": 256,
            }
        }
    )
    now = int(time.time())
    assert_accepted(call(gw, "/J", sign({"sub": "a", "exp": now - 10}, SECRET, "HS256")))
    assert_invalid(call(gw, "/J", sign({"sub": "a", "exp": now - 40}, SECRET, "HS256")))
    big = sign({"sub": "a", "pad": "x" * 300}, SECRET, "HS256")
    assert len(big) > 256
    assert_invalid(call(gw, "/J", big))  # over maxtokensize, though correctly signed


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # PyJWT agrees: too short
def test_certificate_or_pkcs1_as_key_and_short_secret_warning(
    gateway_factory: Any, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(keys.rsa.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(keys.rsa, hashes.SHA256())
    )
    caplog.set_level(logging.INFO, logger="plughost")
    gw = gateway_factory(
        {
            "Cert": {
                "signingKey": {
                    "algorithm": "RS256",
                    "key": cert.public_bytes(serialization.Encoding.PEM).decode(),
                }
            },
            "Short": {"signingKey": {"algorithm": "HS256", "key": "my-secret-key"}},
            "Pkcs1": {
                "signingKey": {
                    "algorithm": "RS256",
                    "key": keys.rsa.public_key()
                    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
                    .decode(),
                }
            },
        }
    )
    assert_accepted(call(gw, "/Pkcs1", sign({"sub": "a"}, keys.rsa, "RS256")))
    assert_accepted(call(gw, "/Cert", sign({"sub": "a"}, keys.rsa, "RS256")))
    assert_accepted(call(gw, "/Short", sign({"sub": "a"}, "my-secret-key", "HS256")))
    assert "shorter than the 32" in caplog.text


def test_refusal_reason_is_logged_but_not_sent(
    gateway_factory: Any, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plughost")
    gw = gateway_factory({"J": static_config(keys, "HS256")})
    expired = sign({"sub": "a", "exp": int(time.time()) - 100}, SECRET, "HS256")
    bad_sig = sign({"sub": "a"}, "wrong-secret-wrong-secret-wrong-secret!!", "HS256")
    bodies = {call(gw, "/J", t).body for t in (expired, bad_sig, "garbage", "a.b.c")}
    assert bodies == {json.dumps(INVALID, separators=(",", ":")).encode()}
    assert "expired (exp)" in caplog.text and "bad signature" in caplog.text
    assert expired not in caplog.text


# --------------------------------------------------------------------- real server


def test_serve_end_to_end(
    tmp_path: Path, test_plugin_dir: Path, keys: Keys, jwks: JwksServer
) -> None:
    jwks.set_keys(jwk(keys.p256.public_key(), "k"))
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "plugins.yaml").write_text(
        f"plugins:\n  - path: {test_plugin_dir / 'jwt.so'}\n"
        f"  - path: {test_plugin_dir / 'static.so'}\n"
    )
    (folder / "middlewares.yaml").write_text(f"""\
middlewares:
  JWTValidationMiddleware:
    use: {JWT}
    config:
      jwkUrls:
        - "{jwks.url}"
      signingKey:
        algorithm: HS256
        key: "${{JWT_TEST_SECRET}}"
      issuer: https://issuer.example
      leeway: 5s
""")
    (folder / "actions.yaml").write_text("""\
actions:
  Hello:
    use: plugins.static.actions.StaticAction
    config: {body: secret stuff}
""")
    (folder / "routes.yaml").write_text("""\
routes:
  Protected:
    gatewayPath: /protected
    methods: [GET]
    middlewares: [JWTValidationMiddleware]
    action: Hello
""")
    server = Server("--config", str(folder), env={"JWT_TEST_SECRET": SECRET})
    try:
        claims = {"sub": "a", "iss": "https://issuer.example", "exp": int(time.time()) + 60}
        for token in (sign(claims, keys.p256, "ES256", kid="k"), sign(claims, SECRET, "HS256")):
            status, _, body = server.get("/protected", headers={"Authorization": f"Bearer {token}"})
            assert (status, body) == (200, b"secret stuff")
        status, headers, body = server.get("/protected")
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert json.loads(body) == MISSING
        bad = sign({**claims, "iss": "https://evil.example"}, SECRET, "HS256")
        status, headers, body = server.get("/protected", headers={"Authorization": f"Bearer {bad}"})
        assert status == 401 and headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert json.loads(body) == INVALID
        status, _, _ = server.get("/protected", headers={"Authorization": "Bearer " + "A" * 20000})
        assert status in (401, 431)
        assert server.alive()
    finally:
        output = server.stop()
    assert "Traceback" not in output
