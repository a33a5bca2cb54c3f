"""The valkey storage plugin, driven from Python through the real .so against a real server."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import plughost
from gateway_support import accept_loop, gateways, write_instance_config
from plughost.config import ConfigErrors
from plughost.errors import ConfigError
from valkey_support import TlsFiles, ValkeyServer, command, make_tls_files, tls_command

VALKEY = "plugins.valkey.storages.ValkeyStorage"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ValkeyServer]:
    srv = ValkeyServer(tmp_path / "valkey").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def storage(host: plughost.Host, plugin_dir: Path, server: ValkeyServer) -> plughost.Storage:
    host.load_plugin(plugin_dir / "valkey.so")
    return host.create_storage("Shared", VALKEY, {"port": server.port, "prefix": "t:"})


def test_plugin_lists_its_storage(host: plughost.Host, plugin_dir: Path) -> None:
    plugin = host.load_plugin(plugin_dir / "valkey.so")
    assert plugin.name == "valkey"
    assert list(plugin.storages) == [VALKEY]
    assert plugin.storages[VALKEY].thread_safe


def test_set_get_delete(storage: plughost.Storage, server: ValkeyServer) -> None:
    assert storage.get(b"k") is None
    storage.set(b"k", b"v\x00binary")
    assert storage.get(b"k") == b"v\x00binary"
    assert command(server.port, b"GET", b"t:k") == b"$8\r\nv\x00binary\r\n"  # prefixed
    storage.set(b"k", b"other")
    assert storage.get(b"k") == b"other"
    storage.set(b"empty", b"")
    assert storage.get(b"empty") == b""
    assert storage.delete(b"k") is True
    assert storage.delete(b"k") is False
    assert storage.get(b"k") is None


def test_ttl_expiry(storage: plughost.Storage) -> None:
    storage.set(b"short", b"1", ttl=0.1)
    storage.set(b"long", b"2", ttl=60)
    assert storage.get(b"short") == b"1"
    time.sleep(0.25)
    assert storage.get(b"short") is None
    assert storage.get(b"long") == b"2"


def test_incr_starts_at_zero_and_keeps_its_expiry(storage: plughost.Storage) -> None:
    value, left = storage.incr_with_ttl(b"hits", 1, ttl=0.3)
    assert value == 1 and left is not None and 0 < left <= 0.3
    value, left = storage.incr_with_ttl(b"hits", 5, ttl=60)
    assert value == 6
    assert left is not None and 0 < left <= 0.3  # the first call's TTL, not the second's
    assert storage.get(b"hits") == b"6"
    time.sleep(0.4)
    assert storage.incr(b"hits") == 1  # expired: starts again
    assert storage.incr_with_ttl(b"forever", 2)[1] is None  # no ttl: none


def test_incr_script_is_cached_on_the_server(
    storage: plughost.Storage, server: ValkeyServer
) -> None:
    storage.incr(b"c")
    storage.incr(b"c")  # the second call goes through EVALSHA
    assert storage.get(b"c") == b"2"
    sha = b"68f18b93bd527c430d0298986f761853774ff801"
    assert command(server.port, b"SCRIPT", b"EXISTS", sha) == b"*1\r\n:1\r\n"


def test_incr_on_text_is_a_clear_error(storage: plughost.Storage) -> None:
    storage.set(b"name", b"alice")
    with pytest.raises(plughost.StorageError, match="not an integer"):
        storage.incr(b"name")
    assert storage.get(b"name") == b"alice"


def test_incr_from_two_threads_loses_no_update(
    host: plughost.Host, plugin_dir: Path, server: ValkeyServer
) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    st = host.create_storage("Pool", VALKEY, {"port": server.port, "poolSize": 2})
    rounds = 5_000
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(rounds):
                st.incr(b"counter")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert st.get(b"counter") == str(2 * rounds).encode()


def test_pool_of_one_serialises_callers(
    host: plughost.Host, plugin_dir: Path, server: ValkeyServer
) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    st = host.create_storage("One", VALKEY, {"port": server.port, "poolSize": 1})
    threads = [
        threading.Thread(target=lambda: [st.incr(b"n") for _ in range(500)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert st.get(b"n") == b"2000"
    clients = command(server.port, b"CLIENT", b"LIST").count(b"cmd=")
    assert clients == 2  # the pool's single connection, and this one


def test_reset_removes_only_its_prefix(storage: plughost.Storage, server: ValkeyServer) -> None:
    for i in range(1200):  # more than one SCAN batch
        storage.set(b"k%d" % i, b"v")
    assert command(server.port, b"SET", b"other:keep", b"1") == b"+OK\r\n"
    assert command(server.port, b"SET", b"t-not-mine", b"1") == b"+OK\r\n"
    storage.reset()
    assert all(storage.get(b"k%d" % i) is None for i in range(0, 1200, 37))
    assert command(server.port, b"DBSIZE") == b":2\r\n"
    assert command(server.port, b"GET", b"other:keep") == b"$1\r\n1\r\n"


def test_glob_characters_in_the_prefix_are_literal(
    host: plughost.Host, plugin_dir: Path, server: ValkeyServer
) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    st = host.create_storage("Glob", VALKEY, {"port": server.port, "prefix": "a*"})
    st.set(b"x", b"1")
    command(server.port, b"SET", b"abc", b"1")
    st.reset()
    assert st.get(b"x") is None
    assert command(server.port, b"GET", b"abc") == b"$1\r\n1\r\n"


def test_db_option_selects_the_database(
    host: plughost.Host, plugin_dir: Path, server: ValkeyServer
) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    st = host.create_storage("Db", VALKEY, {"port": server.port, "db": 3})
    st.set(b"k", b"v")
    assert command(server.port, b"GET", b"plughost:k") == b"$-1\r\n"  # default prefix, db 0
    assert command(server.port, b"DBSIZE") == b":0\r\n"


@pytest.mark.parametrize(
    "config, key",
    [
        ({"port": "lots"}, "port"),
        ({"port": 70000}, "port"),
        ({"poolSize": 0}, "poolSize"),
        ({"db": -1}, "db"),
        ({"connectTimeout": "soon"}, "connectTimeout"),
        ({"commandTimeout": 0}, "commandTimeout"),
        ({"host": ""}, "host"),
        ({"username": "bob"}, "password"),
    ],
)
def test_bad_config_names_the_key(
    host: plughost.Host, plugin_dir: Path, config: dict, key: str
) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    with pytest.raises(plughost.ConfigError, match=f"storages.Bad.config.{key}"):
        host.create_storage("Bad", VALKEY, config)
    assert "Bad" not in host.storages


def write_storage_config(folder: Path, plugin_dir: Path, config: str) -> Path:
    return write_instance_config(folder, plugin_dir, "storage", "Shared", VALKEY, config)


def test_options_are_checked_by_name_ignoring_case(
    tmp_path: Path, plugin_dir: Path, server: ValkeyServer
) -> None:
    with gateways(tmp_path, write_storage_config, plugin_dir) as gateway:
        with pytest.raises(ConfigErrors) as exc:
            gateway(f"      port: {server.port}\n      comandTimeout: 1s\n")
        (problem,) = exc.value.problems
        assert (Path(problem.where.file).name, problem.where.line, problem.where.key) == (
            "storages.yaml",
            6,
            "storages.Shared.config.comandTimeout",
        )
        assert problem.message == (
            f"{VALKEY} has no option 'comandTimeout': did you mean 'commandTimeout'?"
        )

        gw = gateway(
            f"      PORT: {server.port}\n      Prefix: 'cased:'\n      commandtimeout: 1s\n"
        )
        gw.storage("Shared").set(b"k", b"v")
        assert command(server.port, b"GET", b"cased:k") == b"$1\r\nv\r\n"


def test_no_server_is_a_clear_error(host: plughost.Host, plugin_dir: Path, tmp_path: Path) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    port = ValkeyServer(tmp_path).port  # free, nobody listening
    st = host.create_storage("Down", VALKEY, {"port": port, "connectTimeout": "500ms"})
    with pytest.raises(
        plughost.StorageError, match=rf"valkey 127\.0\.0\.1:{port}: .*is the server running\?"
    ):
        st.get(b"k")


def test_server_restart_recovers_without_recreating(
    storage: plughost.Storage, server: ValkeyServer
) -> None:
    storage.set(b"k", b"v")
    assert storage.incr(b"n") == 1
    server.kill()
    for op in (
        lambda: storage.get(b"k"),
        lambda: storage.set(b"k", b"w"),
        lambda: storage.incr(b"n"),
        lambda: storage.delete(b"k"),
        storage.reset,
    ):
        with pytest.raises(
            plughost.StorageError,
            match=rf"valkey 127\.0\.0\.1:{server.port}: .*is the server running\?",
        ):
            op()
    server.start()  # same port, empty (no persistence)
    assert storage.get(b"k") is None
    storage.set(b"k", b"again")
    assert storage.get(b"k") == b"again"
    assert storage.incr(b"n") == 1


def test_password_authenticates(
    host: plughost.Host, plugin_dir: Path, server: ValkeyServer
) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    assert command(server.port, b"CONFIG", b"SET", b"requirepass", b"s3cret") == b"+OK\r\n"
    good = host.create_storage("Good", VALKEY, {"port": server.port, "password": "s3cret"})
    good.set(b"k", b"v")
    assert good.get(b"k") == b"v"
    # create() connects once: a server refusing the password stops the start, with the
    # server's reason and what to check (never the password itself)
    with pytest.raises(
        ConfigError, match="AUTH failed: WRONGPASS.*check the storage's password"
    ) as info:
        host.create_storage("Wrong", VALKEY, {"port": server.port, "password": "nope"})
    assert "nope" not in str(info.value)
    with pytest.raises(ConfigError, match="PING failed: NOAUTH"):
        host.create_storage("Anon", VALKEY, {"port": server.port})
    # the password changed on the server while running: calls fail with the reason
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(
            b"AUTH s3cret\r\nCONFIG SET requirepass changed\r\n"
            b"CLIENT KILL TYPE normal SKIPME yes\r\n"
        )
        time.sleep(0.2)
        assert s.recv(4096).startswith(b"+OK\r\n+OK\r\n:")
    with pytest.raises(plughost.StorageError, match="AUTH failed: WRONGPASS"):
        good.get(b"k")


# --------------------------------------------------------------- reconnect and retry ---


def test_first_calls_after_a_restart_succeed(
    storage: plughost.Storage, server: ValkeyServer
) -> None:
    storage.set(b"k", b"v")
    assert storage.incr(b"n") == 1
    for op in (
        lambda: storage.get(b"k"),
        lambda: storage.set(b"k", b"w"),
        lambda: storage.incr(b"n"),
        lambda: storage.delete(b"k"),
        storage.reset,
    ):
        server.kill()
        server.start()  # same port, empty; the pooled connection points at the dead one
        op()  # no error: the dead idle connection is replaced before anything is sent
    server.kill()
    server.start()
    assert storage.get(b"k") is None
    server.kill()
    server.start()
    storage.set(b"k", b"again")
    server.kill()
    server.start()
    assert storage.incr(b"n") == 1  # the new server never saw an increment: counted once


def test_connections_killed_by_the_server_are_replaced(
    host: plughost.Host, plugin_dir: Path, server: ValkeyServer
) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    st = host.create_storage("Killed", VALKEY, {"port": server.port, "poolSize": 3})
    threads = [
        threading.Thread(target=lambda: [st.incr(b"n") for _ in range(50)]) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert st.get(b"n") == b"150"
    killed = command(server.port, b"CLIENT", b"KILL", b"TYPE", b"normal")
    assert killed.startswith(b":") and int(killed[1:]) >= 1
    assert st.incr(b"n") == 151  # same server, data kept: exactly one more
    assert st.get(b"n") == b"151"


def test_timeout_is_not_retried_and_is_a_clear_error(
    host: plughost.Host, plugin_dir: Path, server: ValkeyServer
) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    st = host.create_storage("Slow", VALKEY, {"port": server.port, "commandTimeout": "300ms"})
    assert st.incr(b"n") == 1
    server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(
            plughost.StorageError,
            match=rf"valkey 127\.0\.0\.1:{server.port}: no reply to INCR within "
            r"commandTimeout \(300 ms\).* not retried",
        ):
            st.incr(b"n")
        assert time.monotonic() - started < 0.9  # one timeout, no second attempt
        with pytest.raises(plughost.StorageError, match="no reply to GET within commandTimeout"):
            st.get(b"n")  # a new connection: the kernel accepts it, the server does not answer
    finally:
        server.resume()
    # The paused server still had the timed-out increment in its socket and applied it once
    # it ran again: a retry would have counted it twice. (The GET changed nothing.)
    assert st.incr(b"n") == 3
    assert st.get(b"n") == b"3"


class FakeValkey:
    """A tiny RESP server (GET, SET, DEL, EVALSHA/EVAL as the incr script, PING) that can
    drop one connection: after ``drop(name)``, the next `name` command that arrives on a
    connection that already served a command is applied (``applied``) or not, then the
    connection is closed without an answer (or after the first bytes of one, ``partial``):
    a server dying at the worst moment."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.data: dict[bytes, bytes] = {}
        self.seen: list[bytes] = []
        self.lock = threading.Lock()
        self.drop_name: bytes | None = None
        self.apply_dropped = False
        self.partial = b""
        self.drops = 0
        self.drop_fresh = False
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(
            target=accept_loop, args=(self.sock, self._serve, self.conns), daemon=True
        )
        self.thread.start()

    def drop(
        self,
        name: bytes,
        *,
        applied: bool,
        partial: bytes = b"",
        times: int = 1,
        fresh_too: bool = False,
    ) -> None:
        """``times``: drop that many; ``fresh_too``: also on new connections."""
        with self.lock:
            self.drop_name, self.apply_dropped, self.partial = name, applied, partial
            self.drops, self.drop_fresh = times, fresh_too

    def close(self) -> None:
        for s in (self.sock, *self.conns):  # shutdown wakes the threads blocked on them
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.thread.join(timeout=5)

    @staticmethod
    def _read_command(f: Any) -> list[bytes] | None:
        line = f.readline()
        if not line.startswith(b"*"):
            return None
        parts = []
        for _ in range(int(line[1:])):
            size = int(f.readline()[1:])
            parts.append(f.read(size + 2)[:-2])
        return parts

    def _apply(self, cmd: list[bytes]) -> bytes:
        name = cmd[0].upper()
        if name == b"PING":
            return b"+PONG\r\n"
        if name == b"GET":
            v = self.data.get(cmd[1])
            return b"$-1\r\n" if v is None else b"$%d\r\n%s\r\n" % (len(v), v)
        if name == b"SET":
            self.data[cmd[1]] = cmd[2]
            return b"+OK\r\n"
        if name == b"DEL":
            return b":%d\r\n" % (self.data.pop(cmd[1], None) is not None)
        if name in (b"EVALSHA", b"EVAL"):
            v = b"%d" % (int(self.data.get(cmd[3], b"0")) + int(cmd[4]))
            self.data[cmd[3]] = v
            return b"*2\r\n$%d\r\n%s\r\n:-1\r\n" % (len(v), v)
        return b"-ERR unknown command\r\n"

    def _serve(self, conn: socket.socket) -> None:
        served = 0
        with conn, conn.makefile("rb") as f:
            while True:
                try:
                    cmd = self._read_command(f)
                except (OSError, ValueError):
                    return
                if cmd is None:
                    return
                with self.lock:
                    self.seen.append(cmd[0].upper())
                    dropping = (
                        (served > 0 or self.drop_fresh)
                        and self.drops > 0
                        and cmd[0].upper() == self.drop_name
                    )
                    if dropping:
                        self.drops -= 1
                        if self.apply_dropped:
                            self._apply(cmd)
                    else:
                        reply = self._apply(cmd)
                if dropping:
                    if self.partial:
                        conn.sendall(self.partial)
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                conn.sendall(reply)
                served += 1


@pytest.fixture
def fake() -> Iterator[FakeValkey]:
    srv = FakeValkey()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def fake_storage(host: plughost.Host, plugin_dir: Path, fake: FakeValkey) -> plughost.Storage:
    host.load_plugin(plugin_dir / "valkey.so")
    st = host.create_storage("Fake", VALKEY, {"port": fake.port, "poolSize": 1, "prefix": ""})
    st.set(b"k", b"v")  # the pool now holds one connection that served a command
    return st


@pytest.mark.parametrize(
    "name, op, expected",
    [
        (b"GET", lambda st: st.get(b"k"), b"v"),
        (b"SET", lambda st: st.set(b"k", b"w"), None),
        (b"DEL", lambda st: st.delete(b"k"), True),
    ],
)
def test_idempotent_command_is_retried_once_when_the_connection_dies_unanswered(
    fake_storage: plughost.Storage, fake: FakeValkey, name: bytes, op: Any, expected: Any
) -> None:
    before = fake.seen.count(name)
    fake.drop(name, applied=False)
    assert op(fake_storage) == expected
    assert fake.seen.count(name) == before + 2  # sent, lost with its connection, sent again


def test_no_retry_once_part_of_the_reply_arrived(
    fake_storage: plughost.Storage, fake: FakeValkey
) -> None:
    fake.drop(b"GET", applied=False, partial=b"$1\r\n")
    with pytest.raises(
        plughost.StorageError,
        match=rf"valkey 127\.0\.0\.1:{fake.port}: the server closed the "
        r"connection during GET: is the server running\?",
    ):
        fake_storage.get(b"k")
    assert fake.seen.count(b"GET") == 1
    assert fake_storage.get(b"k") == b"v"  # the next call simply uses a new connection


def test_idempotent_retry_happens_only_once(
    fake_storage: plughost.Storage, fake: FakeValkey
) -> None:
    fake.drop(b"GET", applied=False, times=2, fresh_too=True)  # the retry dies as well
    with pytest.raises(
        plughost.StorageError,
        match=rf"valkey 127\.0\.0\.1:{fake.port}: the server closed the "
        r"connection during GET: is the server running\?",
    ):
        fake_storage.get(b"k")
    assert fake.seen.count(b"GET") == 2
    assert fake_storage.get(b"k") == b"v"
    assert fake.seen.count(b"GET") == 3


def test_incr_is_not_retried_once_the_server_may_have_applied_it(
    fake_storage: plughost.Storage, fake: FakeValkey
) -> None:
    assert fake_storage.incr(b"n") == 1
    fake.drop(b"EVALSHA", applied=True)  # ran the script, then died before answering
    with pytest.raises(
        plughost.StorageError,
        match=rf"valkey 127\.0\.0\.1:{fake.port}: the server closed the "
        r"connection before answering INCR, which was not retried",
    ):
        fake_storage.incr(b"n")
    assert fake.seen.count(b"EVALSHA") == 2  # the first incr and the dropped one: no retry
    assert fake_storage.incr(b"n") == 3  # counted once each: 1, (2, unanswered), 3


# ------------------------------------------------------------------------------- TLS ---


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_server(tmp_path: Path, pki: TlsFiles) -> Iterator[ValkeyServer]:
    srv = ValkeyServer(tmp_path / "tls", tls=pki).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def mtls_server(tmp_path: Path, pki: TlsFiles) -> Iterator[ValkeyServer]:
    srv = ValkeyServer(tmp_path / "mtls", tls=pki, tls_auth_clients=True).start()
    try:
        yield srv
    finally:
        srv.stop()


def tls_storage(
    host: plughost.Host, plugin_dir: Path, name: str, **config: Any
) -> plughost.Storage:
    if VALKEY not in host.types:
        host.load_plugin(plugin_dir / "valkey.so")
    return host.create_storage(name, VALKEY, {"tls": True, **config})


def test_tls_round_trip(
    host: plughost.Host, plugin_dir: Path, tls_server: ValkeyServer, pki: TlsFiles
) -> None:
    # The server listens with TLS only (--port 0): every answer below came through TLS.
    st = tls_storage(
        host, plugin_dir, "Tls", port=tls_server.port, tlsCaCert=str(pki.ca), prefix="t:"
    )
    st.set(b"k", b"v\x00binary", ttl=60)
    assert st.get(b"k") == b"v\x00binary"
    assert st.incr_with_ttl(b"n", 2, ttl=60)[0] == 2
    assert st.incr(b"n") == 3
    assert st.delete(b"k") is True
    assert tls_command(tls_server.port, b"GET", b"t:n", ca=pki.ca) == b"$1\r\n3\r\n"
    st.reset()
    assert tls_command(tls_server.port, b"DBSIZE", ca=pki.ca) == b":0\r\n"


def test_tls_checks_the_server_name(
    host: plughost.Host, plugin_dir: Path, tls_server: ValkeyServer, pki: TlsFiles
) -> None:
    # The certificate names localhost and 127.0.0.1; the default name is `host`.
    good = tls_storage(
        host,
        plugin_dir,
        "ByName",
        port=tls_server.port,
        tlsCaCert=str(pki.ca),
        tlsServerName="localhost",
    )
    assert good.incr(b"n") == 1
    with pytest.raises(
        ConfigError,
        match=rf"valkey 127\.0\.0\.1:{tls_server.port}: TLS handshake failed: "
        r"certificate verify failed: .*check tlsCaCert and tlsServerName"
        r".*name: valkey\.example\.com",
    ):
        tls_storage(
            host,
            plugin_dir,
            "OtherName",
            port=tls_server.port,
            tlsCaCert=str(pki.ca),
            tlsServerName="valkey.example.com",
        )


def test_tls_with_the_wrong_ca_is_a_clear_error(
    host: plughost.Host, plugin_dir: Path, tls_server: ValkeyServer, pki: TlsFiles
) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"valkey 127\.0\.0\.1:{tls_server.port}: TLS handshake failed: "
        r"certificate verify failed: the server's certificate was not "
        r"accepted: check tlsCaCert and tlsServerName \(tlsCaCert: "
        rf"{re.escape(str(pki.other_ca))}; name: 127\.0\.0\.1\)",
    ):
        tls_storage(host, plugin_dir, "WrongCa", port=tls_server.port, tlsCaCert=str(pki.other_ca))
    # No tlsCaCert: the system's trust store, which does not know the test CA either.
    with pytest.raises(ConfigError, match=r"certificate verify failed.*system trust"):
        tls_storage(host, plugin_dir, "SystemCa", port=tls_server.port)


def test_tls_skip_verify_accepts_any_certificate(
    host: plughost.Host,
    plugin_dir: Path,
    tls_server: ValkeyServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    st = tls_storage(host, plugin_dir, "Insecure", port=tls_server.port, tlsSkipVerify=True)
    assert "tlsSkipVerify is true" in caplog.text and "testing only" in caplog.text
    assert st.incr(b"n") == 1


def test_mutual_tls(
    host: plughost.Host, plugin_dir: Path, mtls_server: ValkeyServer, pki: TlsFiles
) -> None:
    st = tls_storage(
        host,
        plugin_dir,
        "Mutual",
        port=mtls_server.port,
        tlsCaCert=str(pki.ca),
        tlsCert=str(pki.client_cert),
        tlsKey=str(pki.client_key),
    )
    st.set(b"k", b"v")
    assert st.get(b"k") == b"v"
    assert st.incr(b"n") == 1
    # TLS 1.3: the server checks the client's certificate after the client's handshake is
    # done, so the refusal shows on the first command (create's PING): as the server's
    # alert, or as a reset when the alert is lost because the command was already sent.
    with pytest.raises(
        ConfigError,
        match=rf"valkey 127\.0\.0\.1:{mtls_server.port}: .*(certificate required"
        r".*set tlsCert and tlsKey|refuse the client certificate "
        r"\(tlsCert, tlsKey\))",
    ):
        tls_storage(host, plugin_dir, "NoCert", port=mtls_server.port, tlsCaCert=str(pki.ca))


def test_plain_client_on_a_tls_port_is_told_to_use_tls(
    host: plughost.Host, plugin_dir: Path, tls_server: ValkeyServer
) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    with pytest.raises(
        ConfigError,
        match=rf"valkey 127\.0\.0\.1:{tls_server.port}: .*new connection: is the "
        r"server expecting TLS on this port \(then set tls: true\)\?",
    ):
        host.create_storage("Plain", VALKEY, {"port": tls_server.port})


def test_tls_client_on_a_plain_port_is_a_clear_error(
    host: plughost.Host, plugin_dir: Path, server: ValkeyServer, pki: TlsFiles
) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"valkey 127\.0\.0\.1:{server.port}: TLS handshake failed: .*is "
        r"the server using TLS on this port\?",
    ):
        tls_storage(
            host,
            plugin_dir,
            "TlsToPlain",
            port=server.port,
            tlsCaCert=str(pki.ca),
            commandTimeout="500ms",
        )


def test_tls_restart_recovers_on_the_next_call(
    host: plughost.Host, plugin_dir: Path, tls_server: ValkeyServer, pki: TlsFiles
) -> None:
    st = tls_storage(
        host, plugin_dir, "TlsRestart", port=tls_server.port, tlsCaCert=str(pki.ca), poolSize=2
    )
    assert st.incr(b"n") == 1
    tls_server.kill()
    tls_server.start()
    assert st.incr(b"n") == 1  # a new handshake with the new server, counted once
    assert st.get(b"n") == b"1"


@pytest.mark.parametrize(
    "config, key, message",
    [
        (
            {"tlsCaCert": "/nonexistent/ca.pem"},
            "tlsCaCert",
            r"cannot read '/nonexistent/ca\.pem': No such file or directory",
        ),
        ({"tlsCaCert": "{dir}"}, "tlsCaCert", r"'.*' is not a file"),
        ({"tlsCaCert": "{client_key}"}, "tlsCaCert", r"'.*client\.key' holds no CA certificate"),
        ({"tlsCert": "{client_cert}"}, "tlsKey", r"is required with tlsCert"),
        ({"tlsKey": "{client_key}"}, "tlsCert", r"is required with tlsKey"),
        (
            {"tlsCert": "{client_cert}", "tlsKey": "{server_key}"},
            "tlsKey",
            r"'.*server\.key' is not a private key OpenSSL can load, or not the one of tlsCert",
        ),
        (
            {"tlsCert": "{client_key}", "tlsKey": "{client_key}"},
            "tlsCert",
            r"'.*client\.key' holds no certificate",
        ),
        (
            {"tlsCaCert": "{ca}", "tlsSkipVerify": True},
            "tlsCaCert",
            r"has no effect with tlsSkipVerify",
        ),
        ({"tls": False, "tlsCaCert": "{ca}"}, "tlsCaCert", r"only applies with tls: true"),
        ({"tls": False, "tlsSkipVerify": True}, "tlsSkipVerify", r"only applies with tls: true"),
        ({"tls": "yes please"}, "tls", r""),
    ],
)
def test_bad_tls_config_names_the_key(
    host: plughost.Host, plugin_dir: Path, pki: TlsFiles, config: dict, key: str, message: str
) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    files = {
        "dir": str(pki.ca.parent),
        "ca": str(pki.ca),
        "client_key": str(pki.client_key),
        "client_cert": str(pki.client_cert),
        "server_key": str(pki.server_key),
    }
    config = {
        "tls": True,
        **{k: v.format(**files) if isinstance(v, str) else v for k, v in config.items()},
    }
    with pytest.raises(plughost.ConfigError, match=rf"storages\.BadTls\.config\.{key}: {message}"):
        host.create_storage("BadTls", VALKEY, config)
    assert "BadTls" not in host.storages


def test_a_server_closing_new_connections_gets_no_tls_hint(
    host: plughost.Host, plugin_dir: Path
) -> None:
    """A server that accepts and closes (as one does while it stops or restarts) is not a
    TLS server: the message asks whether it is running, not whether it expects TLS."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def close_everything() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            conn.recv(1)  # the command arrived; the rest stays unread ...
            conn.shutdown(socket.SHUT_WR)  # ... and the server says goodbye (EOF first)
            time.sleep(0.05)
            conn.close()

    thread = threading.Thread(target=close_everything, daemon=True)
    thread.start()
    try:
        host.load_plugin(plugin_dir / "valkey.so")
        with pytest.raises(ConfigError) as info:
            host.create_storage("Closing", VALKEY, {"port": port})
        message = str(info.value)
        assert f"valkey 127.0.0.1:{port}: " in message and "closed the connection" in message
        assert "TLS" not in message, message
    finally:
        stop.set()
        thread.join()
        listener.close()
