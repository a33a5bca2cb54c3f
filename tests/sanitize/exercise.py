"""Drives every native plugin through an ASan/UBSan build of the host runtime.

Run by tests/test_sanitizers.py in a child process started with the sanitizer runtimes
preloaded: ``python exercise.py RUNTIME.so PLUGIN_DIR VALKEY_PORT VALKEY_PID`` (a real
Valkey server the test started, outside the sanitized process). Any invalid access, undefined
behaviour or leak in C aborts the child with the sanitizer's report.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import sys
import threading
import time
from pathlib import Path

import plughost
from plughost.loading.runtime import Runtime
from plughost.serving.pipeline import Request


def load_runtime(path: str) -> Runtime:
    spec = importlib.util.spec_from_file_location(Path(path).name.split(".")[0], path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Runtime(module)


def exercise(host: plughost.Host, plugin_dir: Path) -> None:
    for name in ("memory", "requestid", "static"):
        host.load_plugin(plugin_dir / f"{name}.so")
    store = host.create_storage("S", "plugins.memory.storages.MemoryStorage", {"maxEntries": 1000})
    for i in range(2000):  # fills up, expires, refuses: every path of set
        try:
            store.set(b"k%d" % i, b"v" * (i % 50), ttl=None if i % 2 else 0.001)
        except plughost.StorageError:
            pass
    for _ in range(3):
        store.get(b"k1"), store.delete(b"k3"), store.get(b"absent")
    workers = [
        threading.Thread(target=lambda: [store.incr(b"c") for _ in range(5000)]) for _ in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert store.get(b"c") == b"10000"
    store.reset()

    rid = host.create_middleware(
        "plugins.requestid.middlewares.RequestIdMiddleware", {"headerName": "X-Id"}
    )
    action = host.create_action(
        "plugins.static.actions.StaticAction",
        {"status": 201, "headers": {"A": "b"}, "body": "x" * 1000},
    )
    for i in range(2000):
        with host.exchange("GET", "/", headers={"X-Id": "a" * (i % 300)}) as ex:
            rid.on_request(ex)
            action.handle(ex)
            rid.on_response(ex)
            assert ex.status == 201
    for bad in ({"status": 9}, {"headers": {"A": "\r\n"}}, {"headers": []}, {"body": ["x"]}):
        try:
            host.create_action("plugins.static.actions.StaticAction", bad)
        except plughost.ConfigError:
            pass
    for bad in ({"maxEntries": 0}, {"maxValueBytes": "x"}):
        try:
            host.create_storage("Bad", "plugins.memory.storages.MemoryStorage", bad)
        except plughost.ConfigError:
            pass


def exercise_gateway(runtime: Runtime, plugin_dir: Path, workdir: Path) -> None:
    """Chains through the C runner and the fast path: early answers, failures, Python
    elements, route params, an upstream that refuses connections (502)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gateway_support import free_port, write_config

    from plughost import Gateway
    from plughost.sdk.pyelements import PythonMiddleware

    class Py(PythonMiddleware):
        def on_request(self, ex):  # type: ignore[no-untyped-def]
            ex.set_request_header("X-Py", "1")

    import logging

    logging.getLogger("plughost").setLevel(logging.CRITICAL)  # failures here are on purpose
    folder = write_config(
        workdir / "config",
        plugin_dir,
        upstream=f"http://127.0.0.1:{free_port()}",
        extra_routes="""\
  Mixed:
    gatewayPath: /mixed/:id
    methods: [GET]
    middlewares: [A, Py, B]
    action: Echo
""",
    )
    with Gateway.from_config(folder, python_elements={"Py": Py()}, runtime=runtime) as gw:
        for i in range(3000):
            assert gw.handle("GET", f"/mixed/{i}", {"X-Request-ID": "r" * (i % 250)}).status == 200
            assert gw.handle("POST", "/traced", body=b"x" * (i % 5000)).status == 200
            assert gw.handle("GET", "/early").status == 418
            assert gw.handle("GET", "/broken").status == 500
            assert gw.handle("GET", "/broken-response").status == 500
            assert gw.handle("GET", "/files/a/b").status == 200
        assert gw.handle("GET", "/proxy/x").status == 502


def exercise_stateful(runtime: Runtime, plugin_dir: Path, workdir: Path) -> None:
    """session, limiter and csrf on the memory storage: new and known sessions, cookies,
    refused and allowed requests, garbage cookies and tokens."""
    from plughost import Gateway

    folder = workdir / "stateful"
    folder.mkdir()
    (folder / "gateway.yaml").write_text(f"""\
plugins:
  - path: {plugin_dir}/memory.so
  - path: {plugin_dir}/session.so
  - path: {plugin_dir}/limiter.so
  - path: {plugin_dir}/csrf.so
  - path: {plugin_dir}/static.so
storages:
  Mem:
    use: plugins.memory.storages.MemoryStorage
middlewares:
  Session:
    use: plugins.session.middlewares.LoadSessionMiddleware
    config: {{storage: Mem}}
  Limit:
    use: plugins.limiter.middlewares.LimiterMiddleware
    config: {{storage: Mem, maxConnections: 1000000, slidingWindow: true}}
  Csrf:
    use: plugins.csrf.middlewares.CSRFMiddleware
    config: {{storage: Mem}}
actions:
  Ok:
    use: plugins.static.actions.StaticAction
    config: {{body: ok}}
routes:
  All:
    gatewayPath: /
    methods: [GET, POST]
    middlewares: [Session, Limit, Csrf]
    action: Ok
""")
    with Gateway.from_config(folder / "gateway.yaml", runtime=runtime) as gw:
        cookies = ""
        allowed = refused = 0
        for i in range(1500):
            r = gw.handle("GET", "/", {"Cookie": cookies or f"session_id={'z' * (i % 40)}"})
            set_cookies = [v.decode() for k, v in r.headers if k.lower() == b"set-cookie"]
            if set_cookies and i % 3 == 0:
                cookies = "; ".join(c.split(";", 1)[0] for c in set_cookies)
            sid = next(
                (c.split("=", 1)[1] for c in cookies.split("; ") if c.startswith("session_id=")), ""
            )
            if sid and i % 9 == 0:  # the application fills the session: it rotates next
                gw.storage("Mem").set(b"session:" + sid.encode(), b"u=%d&n=a%%26b" % i, ttl=60)
            token = next(
                (c.split("=", 1)[1] for c in cookies.split("; ") if c.startswith("csrf_token=")),
                "bad",
            )
            allowed += (
                gw.handle("POST", "/", {"Cookie": cookies, "X-Csrf-Token": token}, body=b"x").status
                == 200
            )
            refused += (
                gw.handle("POST", "/", {"Cookie": cookies, "X-Csrf-Token": "0" * (i % 50)}).status
                == 403
            )
        assert allowed > 1000 and refused == 1500, (allowed, refused)


def exercise_jwt(runtime, plugin_dir: Path, workdir: Path) -> None:
    """jwt with every algorithm, a JWK set served over HTTP and refreshed by the plugin's
    thread while requests run, garbage tokens, nesting bombs and configuration errors."""
    import base64
    import json
    import logging
    import threading
    import time

    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from test_jwt import JwksServer  # the real HTTP server of tests/test_jwt.py

    from plughost import Gateway

    logging.getLogger("plughost").setLevel(logging.CRITICAL)
    secret = "s" * 64
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()

    def pem(k):  # type: ignore[no-untyped-def]
        return (
            k.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    server = JwksServer()
    rsa_jwk = {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": "r"}
    ec_jwk = {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "e"}
    server.set_keys(rsa_jwk, {"kty": "oct", "k": "AAAA"}, {"kty": "RSA", "n": "!"})
    mws = {
        "Hs": {
            "signingKey": {"algorithm": "HS256", "key": secret},
            "leeway": "5s",
            "issuer": "i",
            "audience": ["a", "b"],
        },
        "Es": {"signingKey": {"algorithm": "ES256", "key": pem(ec_key)}},
        "Ed": {"signingKey": {"algorithm": "EdDSA", "key": pem(ed_key)}},
        "Jwks": {
            "jwkUrls": [server.url],
            "jwkRefreshInterval": "1s",
            "jwkMinRefreshInterval": "0s",
            "maxTokenSize": 65536,
        },
    }
    folder = workdir / "jwt"
    folder.mkdir()
    (folder / "gateway.yaml").write_text(
        json.dumps(
            {
                "plugins": [
                    {"path": str(plugin_dir / "jwt.so")},
                    {"path": str(plugin_dir / "static.so")},
                ],
                "middlewares": {
                    n: {"use": "plugins.jwt.middlewares.JWTValidationMiddleware", "config": c}
                    for n, c in mws.items()
                },
                "actions": {
                    "Ok": {"use": "plugins.static.actions.StaticAction", "config": {"body": "ok"}}
                },
                "routes": {
                    n: {
                        "gatewayPath": f"/{n}",
                        "methods": ["GET"],
                        "middlewares": [n],
                        "action": "Ok",
                    }
                    for n in mws
                },
            }
        )
    )
    claims = {"sub": "x", "iss": "i", "aud": ["z", "b"], "exp": time.time() + 60}
    good = {
        "/Hs": pyjwt.encode(claims, secret, algorithm="HS256"),
        "/Es": pyjwt.encode(claims, ec_key, algorithm="ES256"),
        "/Ed": pyjwt.encode(claims, ed_key, algorithm="EdDSA"),
        "/Jwks": pyjwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "r"}),
    }
    h, p, s = good["/Hs"].split(".")
    hdr_kid = b64(json.dumps({"alg": "HS256", "kid": "nope"}).encode())
    hdr_es = b64(json.dumps({"alg": "ES256", "kid": "e"}).encode())
    hdr_none = b64(json.dumps({"alg": "none"}).encode())
    bomb = b64(b"[" * 3000 + b"]" * 3000)
    bad = [
        "",
        "a.b.c",
        f"{h}.{p}.{s}=",
        f"{h}.{p}",
        f"{h}.{p}.{s[:-1]}",
        "A" * 70000,
        f"{bomb}.{p}.{s}",
        f"{hdr_kid}.{p}.{s}",
        f"{hdr_es}.{p}.{b64(b'x' * 64)}",
        f"{hdr_none}.{p}.",
        f"{b64(bytes(range(256)))}.{p}.{s}",
    ]
    with Gateway.from_config(folder / "gateway.yaml", runtime=runtime) as gw:
        stop = threading.Event()

        def rotate() -> None:  # the refresher swaps key sets while requests use them
            while not stop.is_set():
                server.set_keys(rsa_jwk, ec_jwk)
                time.sleep(0.3)
                server.set_keys(rsa_jwk)
                time.sleep(0.3)

        rotator = threading.Thread(target=rotate)
        rotator.start()
        try:
            counts: list[int] = []

            def requests(n: int) -> None:  # two threads at once: the type is thread-safe
                ok = 0
                for i in range(n):
                    for path, token in good.items():
                        r = gw.handle("GET", path, {"Authorization": f"Bearer {token}"})
                        ok += r.status == 200
                    for token in bad:
                        assert (
                            gw.handle(
                                "GET",
                                "/Jwks" if i % 2 else "/Hs",
                                {"Authorization": f"Bearer {token}"},
                            ).status
                            == 401
                        )
                    ec_tok = pyjwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "e"})
                    gw.handle("GET", "/Jwks", {"Authorization": f"Bearer {ec_tok}"})
                counts.append(ok)

            workers = [threading.Thread(target=requests, args=(750,)) for _ in range(2)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            assert counts == [4 * 750] * 2, counts
        finally:
            stop.set()
            rotator.join()
    for cfg in (
        {},
        {"signingKey": {"algorithm": "RS256", "key": pem(ec_key)}},
        {"signingKey": {"algorithm": "RS256", "key": "junk"}},
        {"signingKey": {"algorithm": "none", "key": "x"}},
        {"jwkUrls": ["ftp://x"]},
        {"audience": [1], "jwkUrls": [server.url]},
    ):
        (folder / "gateway.yaml").write_text(
            json.dumps(
                {
                    "plugins": [{"path": str(plugin_dir / "jwt.so")}],
                    "middlewares": {
                        "J": {
                            "use": "plugins.jwt.middlewares.JWTValidationMiddleware",
                            "config": cfg,
                        }
                    },
                }
            )
        )
        try:
            Gateway.from_config(folder / "gateway.yaml", runtime=runtime).close()
        except Exception:
            pass
        else:
            raise AssertionError(f"no configuration error for {cfg}")
    server.close()


def exercise_valkey(runtime: Runtime, plugin_dir: Path, workdir: Path, port: int, pid: int) -> None:
    """valkey against the real server the test started (port, pid): the storage API from
    threads, session (with id rotation), limiter and csrf on it, connections the server
    kills (replaced before use), a paused server (timeouts), an unreachable one."""
    import os
    import signal
    import socket
    import time

    from plughost import Gateway

    def server_command(raw: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(raw)
            time.sleep(0.05)
            return s.recv(65536)

    folder = workdir / "valkey"
    folder.mkdir()
    (folder / "gateway.yaml").write_text(f"""\
plugins:
  - path: {plugin_dir}/valkey.so
  - path: {plugin_dir}/session.so
  - path: {plugin_dir}/limiter.so
  - path: {plugin_dir}/csrf.so
  - path: {plugin_dir}/static.so
storages:
  V:
    use: plugins.valkey.storages.ValkeyStorage
    config: {{port: {port}, prefix: "asan:", poolSize: 3, commandTimeout: 300ms}}
  Away:
    use: plugins.valkey.storages.ValkeyStorage
    config: {{port: 1, connectTimeout: 200ms}}
middlewares:
  Session:
    use: plugins.session.middlewares.LoadSessionMiddleware
    config: {{storage: V, cookieExpiration: 4s, autoRenewAfter: 1s, autoRenewGracePeriod: 200ms}}
  Limit:
    use: plugins.limiter.middlewares.LimiterMiddleware
    config: {{storage: V, maxConnections: 1000000, slidingWindow: true, failOpen: true}}
  Csrf:
    use: plugins.csrf.middlewares.CSRFMiddleware
    config: {{storage: V, singleUseToken: true}}
  AwaySession:
    use: plugins.session.middlewares.LoadSessionMiddleware
    config: {{storage: Away}}
actions:
  Ok:
    use: plugins.static.actions.StaticAction
    config: {{body: ok}}
routes:
  All:
    gatewayPath: /
    methods: [GET, POST]
    middlewares: [Session, Limit, Csrf]
    action: Ok
  Away:
    gatewayPath: /away
    methods: [GET]
    middlewares: [AwaySession]
    action: Ok
""")
    with Gateway.from_config(folder / "gateway.yaml", runtime=runtime) as gw:
        store = gw.storage("V")

        def worker(n: int) -> None:
            for i in range(300):
                key = b"k%d-%d" % (n, i % 7)
                store.set(key, b"v" * (i % 300), ttl=5)
                store.get(key)
                store.incr(b"n%d" % n, ttl=5)
                store.delete(key)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cookie = ""
        for i in range(400):
            if i == 150:
                time.sleep(1.1)  # the session is due: it rotates
            if i % 100 == 50:  # the server drops every connection: replaced before use
                server_command(b"CLIENT KILL TYPE normal\r\n")
            r = gw.handle("GET", "/", {"Cookie": cookie})
            sets = [v.decode() for k, v in r.headers if k.lower() == b"set-cookie"]
            if sets:
                cookie = "; ".join(c.split(";", 1)[0] for c in sets)
            if i == 0:  # the application fills the session: rotated on the next request
                sid = next(
                    c.split("=", 1)[1] for c in cookie.split("; ") if c.startswith("session_id=")
                )
                store.set(b"session:" + sid.encode(), b"u=1", ttl=60)
            token = next(
                (c.split("=", 1)[1] for c in cookie.split("; ") if c.startswith("csrf_token=")),
                "bad",
            )
            gw.handle("POST", "/", {"Cookie": cookie, "X-Csrf-Token": token}, body=b"x")
        os.kill(pid, signal.SIGSTOP)  # no answers: every call times out
        try:
            assert gw.handle("GET", "/", {"Cookie": cookie}).status == 503
        finally:
            os.kill(pid, signal.SIGCONT)
        assert gw.handle("GET", "/").status == 200
        assert gw.handle("GET", "/away", {"Cookie": "session_id=" + "0" * 32}).status == 503
        store.reset()


def exercise_auth_and_logging(runtime: Runtime, plugin_dir: Path, workdir: Path) -> None:
    """basicauth (plain, bcrypt and yescrypt users, malformed headers, threads) and logger
    (every placeholder, text and JSON, an IANA zone, a FIFO that fills the queue, a flush that
    gives up), and configurations both plugins refuse."""
    from plughost import Gateway

    # Hashes of "pw" made beforehand: Python's crypt module crashes under a preloaded ASan.
    bcrypt = "$2b$04$abcdefghijklmnopqrstuuyvPXIbu7xe6/CED2DzX8z6Si09MlzlW"
    yescrypt = "$y$j9T$a1b2c3d4e5f6g7h8i9j0k1$Ec3x99bo/ae0xGk4SN/gW1s44l90WiO0Lc2WcGqtwH0"
    folder = workdir / "authlog"
    folder.mkdir()
    log, fifo, read_fifo = folder / "access.jsonl", folder / "log.fifo", folder / "read.fifo"
    os.mkfifo(fifo)
    os.mkfifo(read_fifo)
    fmt = (
        "${pid} ${time} ${status} ${latency} ${ip} ${ips} ${method} ${path} ${url} ${route} "
        "${host} ${ua} ${referer} ${queryParams} ${query:q} ${cookie:c} ${bytesSent} "
        "${bytesReceived} ${error} ${locals:basicAuthUsername} ${header:X-A} "
        "${respHeader:Content-Type} ${red}${reset}"
    )

    def gateway_yaml(auth: dict, logger: dict, fifo_logger: dict) -> str:
        return f"""\
plugins:
  - path: {plugin_dir}/basicauth.so
  - path: {plugin_dir}/logger.so
  - path: {plugin_dir}/static.so
middlewares:
  Auth:
    use: plugins.basicauth.middlewares.BasicAuthMiddleware
    config: {json.dumps(auth)}
  Log:
    use: plugins.logger.middlewares.LoggerMiddleware
    config: {json.dumps(logger)}
  Fifo:
    use: plugins.logger.middlewares.LoggerMiddleware
    config: {json.dumps(fifo_logger)}
  Read:
    use: plugins.logger.middlewares.LoggerMiddleware
    config: {
            json.dumps(
                {
                    "format": "${status} ${time}",
                    "output": str(read_fifo),
                    "queueSize": 8,
                    "timeZone": "America/Sao_Paulo",
                    "timeFormat": "%c %Z %:z %f",
                }
            )
        }
actions:
  Ok:
    use: plugins.static.actions.StaticAction
    config: {{body: ok}}
routes:
  All:
    gatewayPath: /
    methods: [GET, POST]
    middlewares: [Log, Fifo, Read, Auth]
    action: Ok
"""

    good = {"users": {"plain": "pw", "bc": bcrypt, "yes": yescrypt}, "realm": "R"}
    (folder / "gateway.yaml").write_text(
        gateway_yaml(
            good,
            {"json": True, "format": fmt, "output": str(log), "timeZone": "Europe/Paris"},
            {"format": fmt, "output": str(fifo), "queueSize": 3, "flushTimeout": "200ms"},
        )
    )
    auths = [
        base64.b64encode(raw).decode()
        for raw in (
            b"plain:pw",
            b"bc:pw",
            b"yes:pw",
            b"plain:no",
            b"bc:no",
            b"ghost:pw",
            b"no-colon",
            b"\xff:\x00",
            b"a:" + b"x" * 3000,
        )
    ] + ["!!!", "A" * 9000, ""]
    got: list[bytes] = []

    def reader() -> None:  # comes and goes: the writer reopens the FIFO for the next one
        for _ in range(3):
            with open(read_fifo, "rb") as f:
                got.append(f.read(300))

    r = threading.Thread(target=reader)
    r.start()
    with Gateway.from_config(folder / "gateway.yaml", runtime=runtime) as gw:

        def worker(k: int) -> None:
            for i in range(120):
                value = auths[(i + k) % len(auths)]
                gw.handle(
                    "POST",
                    "/",
                    {
                        "Authorization": f"Basic {value}",
                        "X-A": '\x01"\\',
                        "Cookie": "c=1; d=2",
                        "User-Agent": "\xff",
                    },
                    body=b"b" * (i % 7),
                    query=f"q=%{i:02x}%ZZ&x",
                )

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    r.join(30)
    assert len(log.read_text().splitlines()) == 480 and got
    # refused configurations: create fails half-way, destroy still frees what it made
    for auth in (
        {},
        {"users": {}},
        {"users": {"a": "$apr1$x$y"}},
        {"users": {"a": "$1$x$y"}},
        {"users": {"a": "x"}, "realm": '"'},
        {"users": {"a": "x", "b": ""}},
    ):
        (folder / "bad.yaml").write_text(gateway_yaml(auth, {}, {"format": "${status}"}))
        try:
            Gateway.from_config(folder / "bad.yaml", runtime=runtime).close()
        except Exception:
            pass
        else:
            raise AssertionError(auth)
    for logger in (
        {"format": "${nope}"},
        {"format": "a ${status} ${"},
        {"timeZone": "X/Y"},
        {"timeZone": "../x"},
        {"timeFormat": "x"},
        {"queueSize": 0},
        {"output": str(folder)},
        {"json": True, "format": "none"},
    ):
        (folder / "bad.yaml").write_text(gateway_yaml(good, logger, {"format": "${status}"}))
        try:
            Gateway.from_config(folder / "bad.yaml", runtime=runtime).close()
        except Exception:
            pass
        else:
            raise AssertionError(logger)


def exercise_opentelemetry(runtime, plugin_dir: Path, workdir: Path) -> None:
    """opentelemetry: traceparent parsing (valid, malformed, unsampled), spans queued from
    two threads while the exporter thread POSTs batches to a real local OTLP receiver, a
    full queue (drops), a refused collector, the stdout exporter, flush at destroy, and
    configuration errors at plugin and middleware level (init must free what it made)."""
    import json
    import logging
    import os
    import socket
    import threading

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from test_opentelemetry import Collector  # the real receiver of tests/test_opentelemetry.py

    from plughost import Gateway

    logging.getLogger("plughost").setLevel(logging.CRITICAL)
    otel = "plugins.opentelemetry.middlewares.OpenTelemetryMiddleware"
    folder = workdir / "otel"
    folder.mkdir()

    def write(plugin_cfg: dict, mws: dict) -> Path:
        path = folder / "gateway.yaml"
        path.write_text(
            json.dumps(
                {
                    "plugins": [
                        {"path": str(plugin_dir / "opentelemetry.so"), "config": plugin_cfg},
                        {"path": str(plugin_dir / "static.so")},
                    ],
                    "middlewares": {n: {"use": otel, "config": c} for n, c in mws.items()},
                    "globalMiddlewares": ["G"] if "G" in mws else [],
                    "actions": {
                        "Ok": {
                            "use": "plugins.static.actions.StaticAction",
                            "config": {"body": "ok"},
                        },
                        "Bad": {
                            "use": "plugins.static.actions.StaticAction",
                            "config": {"status": 502},
                        },
                    },
                    "routes": {
                        "R": {
                            "gatewayPath": "/r/:id",
                            "methods": ["ALL"],
                            "middlewares": [n for n in mws if n != "G"],
                            "action": "Ok",
                        },
                        "B": {"gatewayPath": "/b", "methods": ["GET"], "action": "Bad"},
                    },
                }
            )
        )
        return path

    tid, pid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    parents = [
        f"00-{tid}-{pid}-01",
        f"00-{tid}-{pid}-00",
        f"00-{tid.upper()}-{pid}-01",
        f"00-{'0' * 32}-{pid}-01",
        "ff-" + "1" * 32 + "-" + "2" * 16 + "-01",
        "",
        "x" * 300,
        f"00-{tid}-{pid}-01-more",
        "00-" + "é" * 16 + "-" + pid + "-01",
    ]
    collector = Collector()
    try:
        for provider in (
            {
                "endpoint": collector.url,
                "batchSize": 7,
                "exportInterval": "50ms",
                "headers": {"Authorization": "Bearer x"},
                "samplingRatio": 0.5,
            },
            {"endpoint": collector.url, "queueSize": 3, "batchSize": 1, "exportInterval": "1h"},
        ):
            path = write(
                {"providerConfig": provider, "contextTracerKey": "ctx"},
                {"G": {"tracerName": "outer"}, "A": {"tracerName": "inner"}, "C": {}},
            )
            with Gateway.from_config(path, runtime=runtime) as gw:
                errors: list[BaseException] = []

                def requests(n: int, errors: list[BaseException] = errors) -> None:
                    # two threads at once: the type is thread-safe
                    try:
                        run(n)
                    except BaseException as exc:  # noqa: BLE001 - reported below
                        errors.append(exc)

                def run(n: int) -> None:
                    for i in range(n):
                        headers = {
                            "Host": ["h:1", "[::1]:8080", "x:99999", "a:b:c"][i % 4],
                            "User-Agent": "u" * (i % 50),
                            "tracestate": "k=v",
                        }
                        if parents[i % len(parents)]:
                            headers["traceparent"] = parents[i % len(parents)]
                        method = ["GET", "POST", "BREW"][i % 3]
                        assert (
                            gw.handle(
                                method, "/r/x" + 'é\\"' * (i % 20), headers, body=b"b" * (i % 5)
                            ).status
                            == 200
                        )
                        assert gw.handle("GET", "/b").status == 502
                        gw.handle("GET", "/nowhere")

                workers = [threading.Thread(target=requests, args=(400,)) for _ in range(2)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                assert not errors, errors
        assert collector.spans(), "no span reached the collector"
    finally:
        collector.close()

    with socket.socket() as s:  # a refused collector: failures are logged and counted
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}"
    with Gateway.from_config(
        write(
            {"providerConfig": {"endpoint": refused, "timeout": "1s", "shutdownTimeout": "2s"}},
            {"A": {}},
        ),
        runtime=runtime,
    ) as gw:
        for _ in range(20):
            gw.handle("GET", "/r/1")

    devnull = os.open(os.devnull, os.O_WRONLY)  # the stdout exporter, output thrown away
    saved = os.dup(1)
    os.dup2(devnull, 1)
    try:
        with Gateway.from_config(
            write({"providerConfig": {"serviceName": "s"}}, {"A": {}}), runtime=runtime
        ) as gw:
            for _ in range(50):
                gw.handle("GET", "/r/1")
        with Gateway.from_config(
            write({"providerConfig": {"disableTraces": True}}, {"A": {}}), runtime=runtime
        ) as gw:
            gw.handle("GET", "/r/1", {"traceparent": parents[0]})
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)

    for plugin_cfg, mw in (
        ({"provider": "x"}, {}),
        ({"providerConfig": {"batchSize": 0}}, {}),
        ({"providerConfig": {"endpoint": "ftp://x"}}, {}),
        ({"providerConfig": {"headers": {"A B": "x"}}}, {}),
        ({"providerConfig": {"samplingRatio": 2}}, {}),
        ({"providerConfig": {"endpoint": refused}}, {"nope": 1}),
        ({"providerConfig": {"endpoint": refused}}, {"tracerName": [1]}),
    ):
        try:
            Gateway.from_config(write(plugin_cfg, {"A": mw}), runtime=runtime).close()
        except Exception:
            pass
        else:
            raise AssertionError(f"no configuration error for {plugin_cfg} {mw}")


def exercise_httpfw(runtime: Runtime, plugin_dir: Path, workdir: Path) -> None:
    """httpfw: URL building (wildcard rest with dot segments, escapes, long paths and
    queries), X-Forwarded-* merging, the balancer's round-robin from several threads while
    its health-check thread probes a live and a closed endpoint, config errors, destroy."""
    import http.server
    import logging

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gateway_support import free_port

    import plughost
    from plughost import Gateway

    logging.getLogger("plughost").setLevel(logging.CRITICAL)  # 502s here are on purpose

    class Ok(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    live = f"http://127.0.0.1:{server.server_address[1]}"
    dead = f"http://127.0.0.1:{free_port()}"
    folder = workdir / "httpfw"
    folder.mkdir()
    (folder / "gateway.yaml").write_text(f"""\
plugins:
  - path: {plugin_dir}/httpfw.so
actions:
  Fw:
    use: plugins.httpfw.actions.HttpAction
    config: {{upstreamEndpoint: "{live}/base/", timeout: 5s, forwardedProto: https}}
  Lb:
    use: plugins.httpfw.actions.BalancerHttpAction
    config:
      upstreamEndpoints: ["{live}", "{dead}/x", "http://[::1]:{free_port()}"]
      healthCheckInterval: 50ms
      healthCheckTimeout: 20ms
  Trust:
    use: plugins.httpfw.actions.HttpAction
    config: {{upstreamEndpoint: "{live}", trustForwardedHeaders: true}}
routes:
  Fw:
    gatewayPath: /fw/*
    methods: [GET, POST]
    action: Fw
  Lb:
    gatewayPath: /lb/*
    methods: [GET]
    action: Lb
  Trust:
    gatewayPath: /trust
    methods: [GET]
    action: Trust
""")
    try:
        with Gateway.from_config(folder / "gateway.yaml", runtime=runtime) as gw:
            for i in range(300):
                rest = "/".join(["a b", "..", "\u00fc%", ".", "x" * (i % 40)] * (1 + i % 30))
                r = gw.handle(
                    "POST" if i % 2 else "GET",
                    f"/fw/{rest}",
                    [
                        ("Host", "h" * (i % 100)),
                        ("X-Forwarded-For", "1.2.3.4"),
                        ("X-Forwarded-For", "5.6.7.8," * (i % 20)),
                    ],
                    body=b"b" * (i % 3000),
                    query="q=" + "%2F" * (i % 200),
                    client_ip="203.0.113.%d" % (i % 256),
                )
                assert r.status == 200, r.status
                assert (
                    gw.handle(
                        "GET", "/trust", {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "x"}
                    ).status
                    == 200
                )

            statuses: list[int] = []

            def hammer() -> None:
                for j in range(60):
                    statuses.append(gw.handle("GET", f"/lb/{j}").status)
                    time.sleep(0.002)

            workers = [threading.Thread(target=hammer) for _ in range(3)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            assert set(statuses) <= {200, 502}, set(statuses)
            time.sleep(0.2)  # the closed ones are found down: only the live one answers
            assert {gw.handle("GET", "/lb/z").status for _ in range(20)} == {200}
    finally:
        server.shutdown()
        server.server_close()

    for bad in (
        {"upstreamEndpoint": "ftp://x"},
        {"upstreamEndpoint": "http://[::1"},
        {"upstreamEndpoint": "http://a:1", "timeout": 0},
        {"timout": 1},
        {},
    ):
        with plughost.Host(runtime, static_check=False) as host:
            host.load_plugin(plugin_dir / "httpfw.so")
            try:
                host.create_action("plugins.httpfw.actions.HttpAction", bad)
            except plughost.ConfigError:
                pass
    for bad in (
        {"upstreamEndpoints": []},
        {"upstreamEndpoints": ["http://a:1", 5]},
        {"upstreamEndpoints": ["http://a:1"], "healthCheckTimeout": 0},
        {"upstreamEndpoints": [f"http://a:{i + 1}" for i in range(65)]},
    ):
        with plughost.Host(runtime, static_check=False) as host:
            host.load_plugin(plugin_dir / "httpfw.so")
            try:
                host.create_action("plugins.httpfw.actions.BalancerHttpAction", bad)
            except plughost.ConfigError:
                pass
    # created and destroyed at once: the health-check thread is joined right away
    with plughost.Host(runtime, static_check=False) as host:
        host.load_plugin(plugin_dir / "httpfw.so")
        for _ in range(20):
            host.create_action(
                "plugins.httpfw.actions.BalancerHttpAction", {"upstreamEndpoints": [live, dead]}
            )


def exercise_wsfw(runtime: Runtime, plugin_dir: Path, workdir: Path) -> None:
    """wsfw: the upgrade check on well-formed and malformed handshakes (token lists, keys,
    versions, long and odd header values), the action's URL building, origins and its ABI 1.1
    spec read back by the host from several threads, config errors, destroy."""
    import plughost
    from plughost import Gateway
    from plughost.proxy.pending import PendingUpstream

    folder = workdir / "wsfw"
    folder.mkdir()
    (folder / "gateway.yaml").write_text(f"""\
plugins:
  - path: {plugin_dir}/wsfw.so
middlewares:
  Check:
    use: plugins.wsfw.middlewares.CheckWebSocketUpgradeMiddleware
actions:
  Ws:
    use: plugins.wsfw.actions.WebSocketAction
    config:
      upstreamEndpoint: "wss://[::1]:8443/base/"
      pingInterval: 10s
      pongTimeout: 1s
      maxInactivity: 1m
      subprotocols: [chat, json.v2]
      origins: ["https://a.example", "HTTPS://B.example"]
      maxMessageSize: 4096
  Open:
    use: plugins.wsfw.actions.WebSocketAction
    config: {{upstreamEndpoint: "ws://127.0.0.1:9", pongInterval: 5s}}
routes:
  Ws:
    gatewayPath: /ws/*
    methods: [GET]
    middlewares: [Check]
    action: Ws
  Open:
    gatewayPath: /open
    methods: [GET]
    action: Open
""")
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    good = [
        (b"connection", b"keep-alive, Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-key", key.encode()),
        (b"origin", b"https://b.example"),
    ]
    odd = [b"", b",", b" , ,upgrade,", b"Upgrade" * 500, b"\xff\xfe", b"up grade", b"upgrade\t"]
    with Gateway.from_config(folder / "gateway.yaml", runtime=runtime) as gw:
        chain, params = gw.route("GET", "/ws/a/../b c/%")
        for i in range(400):
            headers = list(good)
            headers[i % 5] = (headers[i % 5][0], odd[i % len(odd)])
            result = gw.pipeline.run(
                chain, params, Request("GET", "/ws/x", headers, b"q=1", b"::1")
            )
            if isinstance(result, PendingUpstream):
                result.discard()
            else:
                assert result.status in (400, 403, 426), result.status
        specs = []

        def handshake() -> None:
            for _ in range(100):
                pending = gw.pipeline.run(
                    chain, params, Request("GET", "/ws/x", good, b"a=%2F", b"10.0.0.1")
                )
                specs.append(pending.directive())
                pending.discard()

        workers = [threading.Thread(target=handshake) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert len(specs) == 300 and all(
            s.websocket and s.subprotocols == ("chat", "json.v2") and s.max_message == 4096
            for s in specs
        ), specs[0]
        assert specs[0].url.startswith("wss://[::1]:8443/base/"), specs[0].url
        assert gw.handle("GET", "/open").status == 426  # no upgrade: the host answers
    for bad in (
        {"upstreamEndpoint": "http://x"},
        {"upstreamEndpoint": "ws://x", "pongTimeout": 1},
        {"upstreamEndpoint": "ws://x", "subprotocols": ["a b"]},
        {"upstreamEndpoint": "ws://x", "origins": ["", 3]},
        {"upstreamEndpoint": "ws://x", "origins": "x"},
        {"pingIntervall": 1},
        {},
    ):
        with plughost.Host(runtime, static_check=False) as host:
            host.load_plugin(plugin_dir / "wsfw.so")
            try:
                host.create_action("plugins.wsfw.actions.WebSocketAction", bad)
            except plughost.ConfigError:
                pass
            else:
                raise AssertionError(f"no configuration error for {bad}")


if __name__ == "__main__":
    runtime = load_runtime(sys.argv[1])
    with plughost.Host(runtime, static_check=False) as h:
        exercise(h, Path(sys.argv[2]))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        exercise_gateway(runtime, Path(sys.argv[2]), Path(tmp))
        exercise_stateful(runtime, Path(sys.argv[2]), Path(tmp))
        exercise_auth_and_logging(runtime, Path(sys.argv[2]), Path(tmp))
        exercise_jwt(runtime, Path(sys.argv[2]), Path(tmp))
        exercise_opentelemetry(runtime, Path(sys.argv[2]), Path(tmp))
        exercise_httpfw(runtime, Path(sys.argv[2]), Path(tmp))
        exercise_wsfw(runtime, Path(sys.argv[2]), Path(tmp))
        exercise_valkey(runtime, Path(sys.argv[2]), Path(tmp), int(sys.argv[3]), int(sys.argv[4]))
    print("sanitizers: clean")
