"""The memory storage plugin, driven from Python through the real .so."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import plughost
from gateway_support import gateways, write_instance_config
from plughost.config import ConfigErrors

MEMORY = "plugins.memory.storages.MemoryStorage"


@pytest.fixture
def storage(host: plughost.Host, plugin_dir: Path) -> plughost.Storage:
    host.load_plugin(plugin_dir / "memory.so")
    return host.create_storage("Sessions", MEMORY)


def test_plugin_lists_its_storage(host: plughost.Host, plugin_dir: Path) -> None:
    plugin = host.load_plugin(plugin_dir / "memory.so")
    assert plugin.name == "memory"
    assert list(plugin.storages) == [MEMORY]
    assert plugin.middlewares == {} and plugin.actions == {}
    assert plugin.storages[MEMORY].thread_safe


def test_set_get_delete(storage: plughost.Storage) -> None:
    assert storage.get(b"k") is None
    storage.set(b"k", b"v\x00binary")
    assert storage.get(b"k") == b"v\x00binary"
    storage.set(b"k", b"other")
    assert storage.get(b"k") == b"other"
    assert storage.delete(b"k") is True
    assert storage.delete(b"k") is False
    assert storage.get(b"k") is None


def test_ttl_expiry(storage: plughost.Storage) -> None:
    storage.set(b"short", b"1", ttl=0.05)
    storage.set(b"long", b"2", ttl=60)
    assert storage.get(b"short") == b"1"
    time.sleep(0.1)
    assert storage.get(b"short") is None
    assert storage.get(b"long") == b"2"


def test_incr_starts_at_zero_and_keeps_its_expiry(storage: plughost.Storage) -> None:
    assert storage.incr_with_ttl(b"hits", 1, ttl=0.2)[0] == 1
    value, left = storage.incr_with_ttl(b"hits", 5, ttl=60)
    assert value == 6
    assert left is not None and 0 < left <= 0.2  # the first call's TTL, not the second's
    assert storage.get(b"hits") == b"6"
    time.sleep(0.25)
    assert storage.incr(b"hits") == 1  # expired: starts again


def test_incr_on_text_is_a_clear_error(storage: plughost.Storage) -> None:
    storage.set(b"name", b"alice")
    with pytest.raises(plughost.StorageError, match="not an integer"):
        storage.incr(b"name")
    assert storage.get(b"name") == b"alice"  # nothing lost


def test_incr_from_two_threads_loses_no_update(storage: plughost.Storage) -> None:
    rounds = 20_000

    def work() -> None:
        for _ in range(rounds):
            storage.incr(b"counter")

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert storage.get(b"counter") == str(2 * rounds).encode()


def test_reset_removes_everything(storage: plughost.Storage) -> None:
    for i in range(10):
        storage.set(b"k%d" % i, b"v")
    storage.reset()
    assert all(storage.get(b"k%d" % i) is None for i in range(10))


def test_bounded_size_refuses_instead_of_dropping(host: plughost.Host, plugin_dir: Path) -> None:
    host.load_plugin(plugin_dir / "memory.so")
    small = host.create_storage("Small", MEMORY, {"maxEntries": 3})
    for i in range(3):
        small.set(b"k%d" % i, b"v%d" % i)
    with pytest.raises(plughost.StorageError, match="full.*maxEntries=3"):
        small.set(b"k3", b"v3")
    assert [small.get(b"k%d" % i) for i in range(3)] == [b"v0", b"v1", b"v2"]
    small.set(b"k0", b"replaced")  # replacing an existing key needs no room
    assert small.get(b"k0") == b"replaced"


def test_expired_entries_make_room(host: plughost.Host, plugin_dir: Path) -> None:
    host.load_plugin(plugin_dir / "memory.so")
    small = host.create_storage("Small", MEMORY, {"maxEntries": 2})
    small.set(b"a", b"1", ttl=0.05)
    small.set(b"b", b"2", ttl=0.05)
    time.sleep(0.1)
    small.set(b"c", b"3")
    assert small.get(b"c") == b"3"


@pytest.mark.parametrize(
    "config, key",
    [
        ({"maxEntries": "lots"}, "maxEntries"),
        ({"maxEntries": 0}, "maxEntries"),
        ({"maxValueBytes": -1}, "maxValueBytes"),
    ],
)
def test_bad_config_names_the_key(
    host: plughost.Host, plugin_dir: Path, config: dict, key: str
) -> None:
    host.load_plugin(plugin_dir / "memory.so")
    with pytest.raises(plughost.ConfigError, match=f"storages.Bad.config.{key}"):
        host.create_storage("Bad", MEMORY, config)
    assert "Bad" not in host.storages


def test_closed_storage_refuses_calls(storage: plughost.Storage) -> None:
    storage.close()
    with pytest.raises(plughost.StorageError, match="closed"):
        storage.get(b"k")


def test_wrong_kind_of_type_is_refused(host: plughost.Host, plugin_dir: Path) -> None:
    host.load_plugin(plugin_dir / "memory.so")
    with pytest.raises(plughost.ConfigError, match="is a storage, not a middleware"):
        host.create_middleware(MEMORY)
    with pytest.raises(
        plughost.UnknownTypeError, match="did you mean 'plugins.memory.storages.MemoryStorage'"
    ):
        host.create_storage("S", "plugins.memory.storages.MemStorage")


# ------------------------------------------------------- options, from a YAML configuration


def write_storage_config(folder: Path, plugin_dir: Path, config: str) -> Path:
    return write_instance_config(folder, plugin_dir, "storage", "Cache", MEMORY, config)


def test_options_are_checked_by_name_ignoring_case(tmp_path: Path, plugin_dir: Path) -> None:
    with gateways(tmp_path, write_storage_config, plugin_dir) as gateway:
        with pytest.raises(ConfigErrors) as exc:
            gateway("      maxValueBytes: 16\n      maxEntrys: 2\n")
        (problem,) = exc.value.problems
        assert (Path(problem.where.file).name, problem.where.line, problem.where.key) == (
            "storages.yaml",
            6,
            "storages.Cache.config.maxEntrys",
        )
        assert problem.message == (
            f"{MEMORY} has no option 'maxEntrys': did you mean 'maxEntries'?"
        )

        gw = gateway("      maxentries: 2\n      MAXVALUEBYTES: 4\n")
        cache = gw.storage("Cache")
        cache.set(b"a", b"1")
        cache.set(b"b", b"1234")
        with pytest.raises(plughost.StorageError, match="maxEntries=2"):
            cache.set(b"c", b"3")
        with pytest.raises(plughost.StorageError, match="maxValueBytes=4"):
            cache.set(b"a", b"12345")
