"""The valkey storage plugin, driven from Python through the real .so against a real server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import plughost
from valkey_support import ValkeyServer, command

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


def test_incr_script_is_cached_on_the_server(storage: plughost.Storage,
                                             server: ValkeyServer) -> None:
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


def test_incr_from_two_threads_loses_no_update(host: plughost.Host, plugin_dir: Path,
                                               server: ValkeyServer) -> None:
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


def test_pool_of_one_serialises_callers(host: plughost.Host, plugin_dir: Path,
                                        server: ValkeyServer) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    st = host.create_storage("One", VALKEY, {"port": server.port, "poolSize": 1})
    threads = [threading.Thread(target=lambda: [st.incr(b"n") for _ in range(500)])
               for _ in range(4)]
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


def test_glob_characters_in_the_prefix_are_literal(host: plughost.Host, plugin_dir: Path,
                                                   server: ValkeyServer) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    st = host.create_storage("Glob", VALKEY, {"port": server.port, "prefix": "a*"})
    st.set(b"x", b"1")
    command(server.port, b"SET", b"abc", b"1")
    st.reset()
    assert st.get(b"x") is None
    assert command(server.port, b"GET", b"abc") == b"$1\r\n1\r\n"


def test_db_option_selects_the_database(host: plughost.Host, plugin_dir: Path,
                                        server: ValkeyServer) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    st = host.create_storage("Db", VALKEY, {"port": server.port, "db": 3})
    st.set(b"k", b"v")
    assert command(server.port, b"GET", b"plughost:k") == b"$-1\r\n"  # default prefix, db 0
    assert command(server.port, b"DBSIZE") == b":0\r\n"


@pytest.mark.parametrize("config, key", [
    ({"port": "lots"}, "port"),
    ({"port": 70000}, "port"),
    ({"poolSize": 0}, "poolSize"),
    ({"db": -1}, "db"),
    ({"connectTimeout": "soon"}, "connectTimeout"),
    ({"commandTimeout": 0}, "commandTimeout"),
    ({"host": ""}, "host"),
    ({"username": "bob"}, "password"),
])
def test_bad_config_names_the_key(host: plughost.Host, plugin_dir: Path, config: dict,
                                  key: str) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    with pytest.raises(plughost.ConfigError, match=f"storages.Bad.config.{key}"):
        host.create_storage("Bad", VALKEY, config)
    assert "Bad" not in host.storages


def test_no_server_is_a_clear_error(host: plughost.Host, plugin_dir: Path,
                                    tmp_path: Path) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    port = ValkeyServer(tmp_path).port  # free, nobody listening
    st = host.create_storage("Down", VALKEY, {"port": port, "connectTimeout": "500ms"})
    with pytest.raises(plughost.StorageError,
                       match=rf"valkey 127\.0\.0\.1:{port}: .*is the server running\?"):
        st.get(b"k")


def test_server_restart_recovers_without_recreating(storage: plughost.Storage,
                                                    server: ValkeyServer) -> None:
    storage.set(b"k", b"v")
    assert storage.incr(b"n") == 1
    server.kill()
    for op in (lambda: storage.get(b"k"), lambda: storage.set(b"k", b"w"),
               lambda: storage.incr(b"n"), lambda: storage.delete(b"k"), storage.reset):
        with pytest.raises(plughost.StorageError,
                           match=rf"valkey 127\.0\.0\.1:{server.port}: .*is the server running\?"):
            op()
    server.start()  # same port, empty (no persistence)
    assert storage.get(b"k") is None
    storage.set(b"k", b"again")
    assert storage.get(b"k") == b"again"
    assert storage.incr(b"n") == 1


def test_password_authenticates(host: plughost.Host, plugin_dir: Path,
                                server: ValkeyServer) -> None:
    host.load_plugin(plugin_dir / "valkey.so")
    assert command(server.port, b"CONFIG", b"SET", b"requirepass", b"s3cret") == b"+OK\r\n"
    good = host.create_storage("Good", VALKEY, {"port": server.port, "password": "s3cret"})
    good.set(b"k", b"v")
    assert good.get(b"k") == b"v"
    bad = host.create_storage("Wrong", VALKEY, {"port": server.port, "password": "nope"})
    with pytest.raises(plughost.StorageError, match="AUTH failed"):
        bad.get(b"k")
    anonymous = host.create_storage("Anon", VALKEY, {"port": server.port})
    with pytest.raises(plughost.StorageError, match="NOAUTH"):
        anonymous.get(b"k")
