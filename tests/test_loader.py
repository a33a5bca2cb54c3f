"""Host.load_plugin on real good and bad files: refusals are exceptions with a code and one
sentence, never a crash, and the host stays usable after each refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from plughost.abi import ABI_MAJOR, ABI_MINOR

import plughost


@pytest.mark.parametrize(
    "name, code",
    [
        ("empty", "empty"),
        ("text", "not-elf"),
        ("truncated", "truncated"),
        ("aarch64", "arch"),
        ("musl", "libc-flavor"),
        ("newglibc", "glibc-too-new"),
        ("noentry", "no-entry"),
        ("nonote", "no-note"),
        ("abi2", "abi-major"),
        ("abiminor", "abi-minor-newer"),
        ("smallsize", "entry-size"),
        ("unresolved", "unresolved-symbol"),
        ("executable", "not-shared-object"),
    ],
)
def test_refused_before_any_plugin_code_runs(
    host: plughost.Host, badfiles: dict[str, Path], name: str, code: str
) -> None:
    with pytest.raises(plughost.PluginLoadError) as info:
        host.load_plugin(badfiles[name])
    assert info.value.code == code
    assert str(info.value).startswith(str(badfiles[name]) + ": ")
    assert host.plugins == []
    host.load_plugin(badfiles["good"])  # the host is still fine
    assert [p.name for p in host.plugins] == ["good"]


def test_dlopen_refusal_without_static_check(badfiles: dict[str, Path]) -> None:
    """Even if the static check is skipped, the loader's RTLD_NOW catches what it missed."""
    with plughost.Host(static_check=False) as host, pytest.raises(plughost.PluginLoadError) as info:
        host.load_plugin(badfiles["unresolved"])
    assert info.value.code == "unresolved-symbol"
    assert "plughost_test_function_nobody_defines" in str(info.value)


def test_header_checks_hold_without_static_check(badfiles: dict[str, Path]) -> None:
    with plughost.Host(static_check=False) as host:
        for name, code in [
            ("abi2", "abi-major"),
            ("abiminor", "abi-minor-newer"),
            ("smallsize", "entry-size"),
            ("noentry", "no-entry"),
        ]:
            with pytest.raises(plughost.PluginLoadError) as info:
                host.load_plugin(badfiles[name])
            assert info.value.code == code, name


def test_init_failure_message_is_verbatim(host: plughost.Host, badfiles: dict[str, Path]) -> None:
    with pytest.raises(plughost.PluginInitError) as info:
        host.load_plugin(badfiles["initfail"])
    assert "cannot open /nonexistent/key.pem: No such file or directory" in str(info.value)
    assert host.plugins == []


def test_duplicate_type_id_is_refused(host: plughost.Host, badfiles: dict[str, Path]) -> None:
    host.load_plugin(badfiles["dup_a"])
    with pytest.raises(plughost.DuplicateTypeError) as info:
        host.load_plugin(badfiles["dup_b"])
    assert "plugins.dup.middlewares.Same" in str(info.value)
    assert str(badfiles["dup_a"]) in str(info.value)
    assert [p.name for p in host.plugins] == ["dup_a"]


def test_missing_file(host: plughost.Host, tmp_path: Path) -> None:
    with pytest.raises(plughost.PluginLoadError, match="cannot be read|no such"):
        host.load_plugin(tmp_path / "absent.so")


def test_load_plugin_convenience_lists_types(plugin_dir: Path) -> None:
    plugin = plughost.load_plugin(plugin_dir / "static.so")
    assert plugin.name == "static" and plugin.abi == (ABI_MAJOR, ABI_MINOR)
    assert list(plugin.actions) == ["plugins.static.actions.StaticAction"]
    plugin.host.close()
