"""The basicauth plugin (plugins.basicauth.middlewares.BasicAuthMiddleware): in-process through
Gateway.handle with plain passwords and crypt(3) hashes, malformed input, configuration errors,
timing of unknown users, and one request through a real `plughost serve`."""

from __future__ import annotations

import base64
import json
import statistics
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest

from gateway_support import Server, gateways, header

with warnings.catch_warnings():  # deprecated in 3.11, removed in 3.13: only to make hashes
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

BASICAUTH = "plugins.basicauth.middlewares.BasicAuthMiddleware"
CHALLENGE = 'Basic realm="Restricted", charset="UTF-8"'
BODY_401 = {"error": "unauthorized", "status": 401}


def make_hash(password: str, setting: str) -> str:
    """A crypt(3) hash made by libxcrypt through Python's crypt module."""
    value = crypt.crypt(password, setting)
    assert value and not value.startswith("*"), setting
    return value


def salt(method: str) -> str:
    return {
        "yescrypt": "$y$j9T$" + "a1b2c3d4e5f6g7h8i9j0k1",  # low cost factor: fast tests
        "bcrypt": "$2b$05$abcdefghijklmnopqrstuu",
        "sha512": "$6$rounds=5000$saltsaltsalt",
        "sha256": "$5$rounds=5000$saltsaltsalt",
    }[method]


def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (
        (user.encode() if isinstance(user, str) else user)
        + b":"
        + (password.encode() if isinstance(password, str) else password)
    )
    return "Basic " + base64.b64encode(raw).decode()


def write_config(
    folder: Path,
    plugin_dir: Path,
    auths: dict[str, dict[str, Any]],
    *,
    logger: dict[str, Any] | None = None,
) -> Path:
    """A Seam config folder: one BasicAuthMiddleware per entry of ``auths`` guarding
    /<name> (EchoAction: shows the local 'requestId'), optionally a LoggerMiddleware before
    it."""
    folder.mkdir(parents=True, exist_ok=True)
    plugins = ["static", "trace", "basicauth", "logger"]
    (folder / "plugins.yaml").write_text(
        "plugins:\n" + "".join(f"  - path: {plugin_dir / name}.so\n" for name in plugins)
    )
    middlewares = "middlewares:\n" + "".join(
        f"  {name}:\n    use: {BASICAUTH}\n    config: {json.dumps(cfg)}\n"
        for name, cfg in auths.items()
    )
    chain_head = []
    if logger is not None:
        middlewares += (
            "  Log:\n    use: plugins.logger.middlewares.LoggerMiddleware\n"
            f"    config: {json.dumps(logger)}\n"
        )
        chain_head = ["Log"]
    (folder / "middlewares.yaml").write_text(middlewares)
    (folder / "actions.yaml").write_text(
        "actions:\n  Echo:\n    use: plugins.trace.actions.EchoAction\n"
    )
    (folder / "routes.yaml").write_text(
        "routes:\n"
        + "".join(
            f"  {name}:\n    gatewayPath: /{name}\n    methods: [GET, POST]\n"
            f"    middlewares: {json.dumps(chain_head + [name])}\n    action: Echo\n"
            for name in auths
        )
    )
    return folder


@pytest.fixture
def gateway_factory(tmp_path: Path, test_plugin_dir: Path) -> Iterator[Any]:
    with gateways(tmp_path, write_config, test_plugin_dir) as make:
        yield make


def assert_401(response: Any, challenge: str = CHALLENGE) -> None:
    assert response.status == 401, (response.status, response.body)
    assert header(response, "WWW-Authenticate") == challenge
    assert header(response, "Content-Type") == "application/json"
    assert json.loads(response.body) == BODY_401


# ------------------------------------------------------------------------- behaviour


def test_plain_password_lets_the_user_in_and_sets_the_local(gateway_factory: Any) -> None:
    gw = gateway_factory(
        {"A": {"users": {"admin": "s3cret", "bob": "hunter2"}, "contextUsernameKey": "requestId"}}
    )
    r = gw.handle("GET", "/A", headers={"Authorization": basic("admin", "s3cret")})
    assert r.status == 200, r.body
    assert b"local=admin " in r.body  # EchoAction prints the local 'requestId'
    r = gw.handle("GET", "/A", headers={"Authorization": basic("bob", "hunter2")})
    assert r.status == 200 and b"local=bob " in r.body


def test_no_credentials_answer_401_with_the_default_challenge(gateway_factory: Any) -> None:
    gw = gateway_factory({"A": {"users": {"admin": "s3cret"}}})
    assert_401(gw.handle("GET", "/A"))
    assert_401(gw.handle("POST", "/A", body=b"data"))


def test_custom_realm(gateway_factory: Any) -> None:
    gw = gateway_factory({"A": {"users": {"admin": "s3cret"}, "realm": "Admin area (v2)"}})
    assert_401(gw.handle("GET", "/A"), 'Basic realm="Admin area (v2)", charset="UTF-8"')


@pytest.mark.parametrize(
    "user, password",
    [
        ("admin", "wrong"),
        ("admin", ""),
        ("admin", "s3cret "),
        ("admin", "S3CRET"),
        ("Admin", "s3cret"),
        ("nobody", "s3cret"),
        ("", "s3cret"),
        ("admin", "s3cre"),
        ("admin", "s3cret" * 100),
    ],
)
def test_wrong_credentials(gateway_factory: Any, user: str, password: str) -> None:
    gw = gateway_factory({"A": {"users": {"admin": "s3cret"}}})
    assert_401(gw.handle("GET", "/A", headers={"Authorization": basic(user, password)}))


@pytest.mark.parametrize("method", ["yescrypt", "bcrypt", "sha512", "sha256"])
def test_crypt_hashes(gateway_factory: Any, method: str) -> None:
    hashed = make_hash("pa:ss wörd", salt(method))
    gw = gateway_factory(
        {"A": {"users": {"carol": hashed, "plain": "x"}, "contextUsernameKey": "requestId"}}
    )
    r = gw.handle("GET", "/A", headers={"Authorization": basic("carol", "pa:ss wörd")})
    assert r.status == 200 and b"local=carol " in r.body
    for wrong in ("pa:ss word", "", "pa:ss wörd!", hashed):
        assert_401(gw.handle("GET", "/A", headers={"Authorization": basic("carol", wrong)}))
    assert_401(gw.handle("GET", "/A", headers={"Authorization": basic("dave", "pa:ss wörd")}))
    # a plain user next to hashed ones still works
    assert gw.handle("GET", "/A", headers={"Authorization": basic("plain", "x")}).status == 200


def test_password_with_colon_and_utf8_user(gateway_factory: Any) -> None:
    gw = gateway_factory({"A": {"users": {"jürgen": "a:b:c"}, "contextUsernameKey": "requestId"}})
    r = gw.handle("GET", "/A", headers={"Authorization": basic("jürgen", "a:b:c")})
    assert r.status == 200
    assert "local=jürgen ".encode() in r.body


def test_scheme_is_case_insensitive_and_spaces_are_tolerated(gateway_factory: Any) -> None:
    gw = gateway_factory({"A": {"users": {"admin": "s3cret"}}})
    token = base64.b64encode(b"admin:s3cret").decode()
    for value in (f"basic {token}", f"BASIC {token}", f"Basic   {token}", f"Basic {token}  "):
        assert gw.handle("GET", "/A", headers={"Authorization": value}).status == 200, value


B64 = base64.b64encode


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Basic",
        "Basic ",
        "Basic    ",
        "Bearer " + B64(b"admin:s3cret").decode(),
        "Digest username=admin",
        "Basicx " + B64(b"admin:s3cret").decode(),
        "Basic" + B64(b"admin:s3cret").decode(),  # no space after the scheme
        "Basic !!!!" + B64(b"admin:s3cret").decode(),  # not base64
        "Basic cGFkOnMzY3I",  # "pad:s3cr", padding missing
        "Basic cGFkOnMzY3I==",  # too much padding
        "Basic cGFkOnMzY3J=",  # non-canonical padding bits
        "Basic cGFk=OnMzY3I=",  # padding inside
        "Basic " + B64(b"admin:s3cret").decode() + " x",  # trailing garbage
        "Basic " + B64(b"admins3cret").decode(),  # no colon
        "Basic " + B64(b":s3cret").decode(),  # empty user
        "Basic " + B64(b"adm\x00in:s3cret").decode(),  # NUL in the user
        "Basic " + B64(b"admin:s3c\x00ret").decode(),  # NUL in the password
        "Basic " + B64(b"adm\x01in:s3cret").decode(),  # control character in the user
        "Basic " + B64(b"admin\xff:s3cret").decode(),  # invalid UTF-8 in the user
        "Basic " + B64(b"admin:s3cret\xc3").decode(),  # truncated UTF-8 in the password
        "Basic " + B64(b"admin:\xed\xa0\x80").decode(),  # a surrogate
        "Basic " + B64(b"admin:\xc0\xaf").decode(),  # overlong
        "Basic " + B64(b"admin:" + b"x" * 5000).decode(),  # over 4096 bytes
        "Basic " + "A" * 100_000,  # huge header
        "Basic " + B64(b"\n:s3cret").decode(),
    ],
)
def test_malformed_authorization_answers_401(gateway_factory: Any, value: str) -> None:
    gw = gateway_factory({"A": {"users": {"admin": "s3cret", "pad": "s3cr"}}})
    assert_401(gw.handle("GET", "/A", headers={"Authorization": value}))
    # and the gateway still works, also with a padded value
    assert gw.handle("GET", "/A", headers={"Authorization": basic("admin", "s3cret")}).status == 200
    assert gw.handle("GET", "/A", headers={"Authorization": "Basic cGFkOnMzY3I="}).status == 200


def test_password_local_is_opt_in(gateway_factory: Any, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    fmt = "u=${locals:basicAuthUsername} p=${locals:basicAuthPassword} q=${locals:pw}"
    gw = gateway_factory(
        {
            "A": {"users": {"admin": "s3cret"}},
            "B": {"users": {"admin": "s3cret"}, "contextPasswordKey": "pw"},
        },
        logger={"format": fmt, "output": str(log)},
    )
    assert gw.handle("GET", "/A", headers={"Authorization": basic("admin", "s3cret")}).status == 200
    assert gw.handle("GET", "/B", headers={"Authorization": basic("admin", "s3cret")}).status == 200
    assert gw.handle("GET", "/A").status == 401
    gw.close()  # the logger's destroy flushes the file
    assert log.read_text().splitlines() == [
        "u=admin p= q=",  # Seam's default username key; no password local by default
        "u=admin p= q=s3cret",  # contextPasswordKey names the password's local
        "u= p= q=",  # refused: nothing set
    ]


def test_unknown_users_cost_as_much_as_known_ones(gateway_factory: Any) -> None:
    """An unknown user name is verified against a dummy hash of the same cost."""
    hashed = make_hash("right", "$2b$08$abcdefghijklmnopqrstuu")  # ~15 ms per verification
    gw = gateway_factory({"A": {"users": {"alice": hashed}}})

    def timed(user: str) -> float:
        start = time.perf_counter()
        r = gw.handle("GET", "/A", headers={"Authorization": basic(user, "wrong")})
        assert r.status == 401
        return time.perf_counter() - start

    known, unknown = [], []
    for _ in range(9):
        known.append(timed("alice"))
        unknown.append(timed("mallory"))
    # without the dummy an unknown user would answer in ~0.05 ms, ~300 times faster
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, (known, unknown)
    assert statistics.median(unknown) > 0.003  # really hashed


def test_concurrent_requests_with_hashes(gateway_factory: Any) -> None:
    """crypt_rn is reentrant: many threads verify at once with the right answers."""
    hashed = make_hash("pw", "$2b$04$abcdefghijklmnopqrstuu")
    gw = gateway_factory({"A": {"users": {"u1": hashed, "u2": "plain"}}})
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for j in range(10):
            good = (i + j) % 2 == 0
            auth = (
                basic("u1", "pw" if good else "nope")
                if i % 2
                else basic("u2", "plain" if good else "nope")
            )
            status = gw.handle("GET", "/A", headers={"Authorization": auth}).status
            with lock:
                results.append((200 if good else 401, status))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 60
    assert all(want == got for want, got in results), results


# -------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({}, "users"),
        ({"users": {}}, "users"),
        ({"users": None}, "users"),
        ({"users": ["admin", "s3cret"]}, "users"),
        ({"users": "admin:s3cret"}, "users"),
        ({"users": {"admin": ""}}, "users.admin"),
        ({"users": {"admin": None}}, "users.admin"),
        ({"users": {"admin": ["x"]}}, "users.admin"),
        ({"users": {"ad:min": "x"}}, "users.ad:min"),
        ({"users": {"admin": "$apr1$salt$0123456789abcdefghijkl"}}, "users.admin"),
        ({"users": {"admin": "$7$whatever"}}, "users.admin"),
        ({"users": {"admin": "$y$j9T$broken"}}, "users.admin"),
        ({"users": {"admin": "$2b$05$tooshort"}}, "users.admin"),
        ({"users": {"admin": "$1$abc$OGyl6dDvZCDiGmIVbeuCq/"}}, "users.admin"),  # MD5: broken
        ({"users": {"admin": "$"}}, "users.admin"),
        ({"users": {"admin": "x"}, "realm": 'say "hi"'}, "realm"),
        ({"users": {"admin": "x"}, "realm": "a\r\nSet-Cookie: x=y"}, "realm"),
        ({"users": {"admin": "x"}, "realm": "back\\slash"}, "realm"),
        ({"users": {"admin": "x"}, "realm": "tab\there"}, "realm"),
        ({"users": {"admin": "x"}, "realm": ["list"]}, "realm"),
        ({"users": {"admin": "x"}, "contextUsernameKey": ""}, "contextUsernameKey"),
        (
            {"users": {"admin": "x"}, "contextPasswordKey": "basicAuthUsername"},
            "contextPasswordKey",
        ),
    ],
)
def test_config_errors_name_the_key(gateway_factory: Any, cfg: dict[str, Any], key: str) -> None:
    with pytest.raises(Exception) as exc:
        gateway_factory({"A": cfg})
    assert f"middlewares.A.config.{key}:" in str(exc.value), str(exc.value)


def test_options_are_checked_by_name_ignoring_case(gateway_factory: Any) -> None:
    """A misspelt option is refused before create runs, at its file, line and key; an option
    written in other case is Seam's option all the same."""
    from plughost.config import ConfigErrors

    with pytest.raises(ConfigErrors) as exc:
        gateway_factory({"A": {"users": {"admin": "s3cret"}, "contextUsernameKy": "requestId"}})
    (problem,) = exc.value.problems
    # middlewares.yaml: line 4 is the instance's `config: {...}` (one line of JSON)
    assert (Path(problem.where.file).name, problem.where.line, problem.where.key) == (
        "middlewares.yaml",
        4,
        "middlewares.A.config.contextUsernameKy",
    )
    assert problem.message == (
        f"{BASICAUTH} has no option 'contextUsernameKy': did you mean 'contextUsernameKey'?"
    )

    gw = gateway_factory(
        {"A": {"USERS": {"admin": "s3cret"}, "Realm": "Other", "contextusernamekey": "requestId"}}
    )
    r = gw.handle("GET", "/A", headers={"Authorization": basic("admin", "s3cret")})
    assert r.status == 200 and b"local=admin " in r.body
    assert_401(gw.handle("GET", "/A"), 'Basic realm="Other", charset="UTF-8"')


def test_unknown_hash_error_says_what_is_supported(gateway_factory: Any) -> None:
    with pytest.raises(Exception) as exc:
        gateway_factory({"A": {"users": {"admin": "$apr1$salt$0123456789abcdefghijkl"}}})
    text = str(exc.value)
    assert "$apr1$" in text and "$y$" in text and "$2b$" in text, text


def test_numeric_password_is_a_string(gateway_factory: Any, tmp_path: Path) -> None:
    gw = gateway_factory({"A": {"users": {"admin": 1234}}})
    assert gw.handle("GET", "/A", headers={"Authorization": basic("admin", "1234")}).status == 200


# ---------------------------------------------------------------- real HTTP server


def test_serve_end_to_end(tmp_path: Path, test_plugin_dir: Path) -> None:
    hashed = make_hash("open sesame", salt("yescrypt"))
    folder = write_config(
        tmp_path / "cfg",
        test_plugin_dir,
        {"secure": {"users": {"ali": hashed}, "realm": "Cave", "contextUsernameKey": "requestId"}},
    )
    with Server("--config", str(folder)) as srv:
        status, headers, body = srv.get("/secure")
        assert status == 401
        assert headers["WWW-Authenticate"] == 'Basic realm="Cave", charset="UTF-8"'
        assert json.loads(body) == BODY_401
        status, _, body = srv.get("/secure", headers={"Authorization": basic("ali", "x")})
        assert status == 401
        status, _, body = srv.get("/secure", headers={"Authorization": basic("ali", "open sesame")})
        assert status == 200 and b"local=ali " in body
        assert srv.alive()


def test_mixed_credential_kinds_are_warned_about_at_start_up(
    gateway_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Plain and hashed credentials (or two crypt methods) take different times to check,
    which tells user names apart: the gateway says so when it starts."""
    mixed = {"admin": make_hash("s3cret", salt("sha512")), "bob": "plain-password"}
    with caplog.at_level("WARNING", logger="plughost.plugin"):
        gw = gateway_factory({"A": {"users": mixed}})
    assert "users mix credential kinds ($6$ and plain)" in caplog.text, caplog.text
    assert (
        gw.handle("GET", "/A", headers={"Authorization": basic("bob", "plain-password")}).status
        == 200
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="plughost.plugin"):
        gateway_factory(
            {
                "B": {
                    "users": {
                        "a": make_hash("x", salt("sha512")),
                        "b": make_hash("y", salt("sha512")),
                    }
                }
            }
        )
    assert "mix credential kinds" not in caplog.text
