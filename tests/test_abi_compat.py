"""ABI 1.x compatibility: a plugin built against 1.0 keeps loading on a newer 1.y host.

The newer host is simulated for real: the host's C runtime is compiled again, through the
same cffi build, against a copy of abi/plugin.h whose minor is 1 and whose host table has
one more function appended, exactly as a 1.1 release would.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import plughost
from plughost._build_runtime import make_builder
from plughost.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
MEMORY = "plugins.memory.storages.MemoryStorage"
LAST_1_0_FUNCTION = "  ph_status (*upstream)(ph_exchange *ex, const ph_upstream_spec *spec);\n"


def newer_header(minor: int) -> str:
    text = (ROOT / "abi" / "plugin.h").read_text()
    assert "#define PH_ABI_MINOR 0 " in text and LAST_1_0_FUNCTION in text
    text = text.replace("#define PH_ABI_MINOR 0 ", f"#define PH_ABI_MINOR {minor} ")
    return text.replace(LAST_1_0_FUNCTION, LAST_1_0_FUNCTION +
                        f"\n  /* --- 1.{minor}: a function this test pretends was added --- */\n"
                        "  int (*added_later)(const ph_exchange *ex);\n")


@pytest.fixture(scope="module")
def runtime_1_1(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    work = tmp_path_factory.mktemp("abi-1.1")
    include = work / "include"
    include.mkdir()
    (include / "plugin.h").write_text(newer_header(1))
    builder = make_builder("plughost_runtime_abi_1_1", abi_include=include)
    library = builder.compile(tmpdir=str(work))
    spec = importlib.util.spec_from_file_location("plughost_runtime_abi_1_1", library)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["plughost_runtime_abi_1_1"] = module
    return Runtime(module)


def test_simulated_host_really_is_newer(runtime_1_1: Runtime) -> None:
    assert runtime_1_1.abi == (1, 1)
    default = plughost.Host().runtime
    assert runtime_1_1.lib.rt_host_api_size() > default.lib.rt_host_api_size()


def test_a_1_0_plugin_loads_and_works_on_a_1_1_host(runtime_1_1: Runtime,
                                                    plugin_dir: Path) -> None:
    with plughost.Host(runtime_1_1) as host:
        plugin = host.load_plugin(plugin_dir / "memory.so")
        assert plugin.abi == (1, 0)
        store = host.create_storage("S", MEMORY)
        store.set(b"k", b"v", ttl=5)
        assert store.get(b"k") == b"v"
        assert store.incr(b"n", 3) == 3


def test_a_plugin_for_a_newer_minor_is_refused(tmp_path: Path) -> None:
    """Built against a 1.1 header, loaded by this 1.0 host: refused before any hook runs."""
    include = tmp_path / "include"
    include.mkdir()
    (include / "plugin.h").write_text(newer_header(1))
    source = tmp_path / "newer.c"
    source.write_text(
        '#include "plugin.h"\n'
        "static ph_status create(const ph_config *c, void **s) { (void)c; *s = 0; return PH_OK; }\n"
        "static const ph_middleware_type t = { .size = sizeof t, .id = "
        '"plugins.newer.middlewares.M", .create = create };\n'
        "static const ph_middleware_type *const all[] = { &t, 0 };\n"
        'PH_PLUGIN_DEFINE(.name = "newer", .middlewares = all);\n')
    import subprocess

    target = tmp_path / "newer.so"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-fPIC", "-shared", "-Wl,--no-undefined",
                    f"-I{include}", str(source), "-o", str(target)], check=True)
    with plughost.Host() as host, pytest.raises(plughost.PluginLoadError) as info:
        host.load_plugin(target)
    assert info.value.code == "abi-minor-newer"
    assert "built for ABI 1.1" in str(info.value) and "implements 1.0" in str(info.value)
    assert host.plugins == []
