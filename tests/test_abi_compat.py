"""ABI 1.x compatibility: a plugin built against 1.x keeps loading on every newer 1.y host.

Both directions are exercised for real. Older plugins: tests/abi_history/ keeps the header of
every released minor exactly as it shipped; plugins compiled against it run on this host,
including a 1.0 action handing the host a 1.0-sized ph_upstream_spec. A newer host: the host's
C runtime is compiled again, through the same cffi build, against a copy of abi/plugin.h whose
minor is one more and whose host table has one more function appended, exactly as the next
release would.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import plughost
from plughost._build_runtime import make_builder
from plughost.abi import ABI_MAJOR, ABI_MINOR
from plughost.loading.runtime import Runtime
from plughost.serving.pipeline import Request

from build_support import compile_plugin
from gateway_support import free_port

ROOT = Path(__file__).resolve().parent.parent
MEMORY = "plugins.memory.storages.MemoryStorage"
HISTORY = Path(__file__).resolve().parent / "abi_history"
#: The last member of ph_host_api: the next minor appends after it.
LAST_FUNCTION = "  void (*metric_observe)(ph_metric *m, double value);\n"
NEXT = ABI_MINOR + 1


def newer_header(minor: int) -> str:
    text = (ROOT / "abi" / "plugin.h").read_text()
    assert f"#define PH_ABI_MINOR {ABI_MINOR} " in text
    assert LAST_FUNCTION + "};" in text, "LAST_FUNCTION must be ph_host_api's last member"
    text = text.replace(f"#define PH_ABI_MINOR {ABI_MINOR} ", f"#define PH_ABI_MINOR {minor} ")
    return text.replace(
        LAST_FUNCTION,
        LAST_FUNCTION + f"\n  /* --- 1.{minor}: a function this test pretends was added --- */\n"
        "  int (*added_later)(const ph_exchange *ex);\n",
    )


@pytest.fixture(scope="module")
def newer_runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    work = tmp_path_factory.mktemp(f"abi-1.{NEXT}")
    include = work / "include"
    include.mkdir()
    (include / "plugin.h").write_text(newer_header(NEXT))
    builder = make_builder("plughost_runtime_abi_next", abi_include=include)
    library = builder.compile(tmpdir=str(work))
    spec = importlib.util.spec_from_file_location("plughost_runtime_abi_next", library)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["plughost_runtime_abi_next"] = module
    return Runtime(module)


def test_simulated_host_really_is_newer(newer_runtime: Runtime) -> None:
    assert newer_runtime.abi == (ABI_MAJOR, NEXT)
    default = plughost.Host().runtime
    assert newer_runtime.lib.rt_host_api_size() > default.lib.rt_host_api_size()


def test_todays_plugins_load_and_work_on_the_next_host(
    newer_runtime: Runtime, plugin_dir: Path
) -> None:
    with plughost.Host(newer_runtime) as host:
        plugin = host.load_plugin(plugin_dir / "memory.so")
        assert plugin.abi == (ABI_MAJOR, ABI_MINOR)
        store = host.create_storage("S", MEMORY)
        store.set(b"k", b"v", ttl=5)
        assert store.get(b"k") == b"v"
        assert store.incr(b"n", 3) == 3


def test_a_plugin_for_a_newer_minor_is_refused(tmp_path: Path) -> None:
    """Built against the next minor's header, loaded by this host: refused before any hook
    runs."""
    include = tmp_path / "include"
    include.mkdir()
    (include / "plugin.h").write_text(newer_header(NEXT))
    source = tmp_path / "newer.c"
    source.write_text(
        '#include "plugin.h"\n'
        "static ph_status create(const ph_config *c, void **s) { (void)c; *s = 0; return PH_OK; }\n"
        "static const ph_middleware_type t = { .size = sizeof t, .id = "
        '"plugins.newer.middlewares.M", .create = create };\n'
        "static const ph_middleware_type *const all[] = { &t, 0 };\n"
        'PH_PLUGIN_DEFINE(.name = "newer", .middlewares = all);\n'
    )
    import subprocess

    target = tmp_path / "newer.so"
    subprocess.run(
        [
            "cc",
            "-std=c11",
            "-Wall",
            "-Werror",
            "-fPIC",
            "-shared",
            "-Wl,--no-undefined",
            f"-I{include}",
            str(source),
            "-o",
            str(target),
        ],
        check=True,
    )
    with plughost.Host() as host, pytest.raises(plughost.PluginLoadError) as info:
        host.load_plugin(target)
    assert info.value.code == "abi-minor-newer"
    assert f"built for ABI 1.{NEXT}" in str(info.value)
    assert f"implements {ABI_MAJOR}.{ABI_MINOR}" in str(info.value)
    assert host.plugins == []


# ------------------------------------------------------------ plugins of released minors

OLD_ACTION = r"""
#include "plugin.h"
#include <stdio.h>
static ph_status create(const ph_config *c, void **s) {
  const char *url = NULL;
  if (ph_config_string(c, "url", NULL, &url) != PH_OK) return PH_ERROR;
  *s = (void *)url; /* lives as long as the config */
  return PH_OK;
}
static ph_next handle(void *self, ph_exchange *ex) {
  ph_upstream_spec spec = {.size = sizeof spec, .url = self, .timeout_ms = 2000};
  ph_header_set(ex, "X-Spec-Size", sizeof spec == 40 ? "40" : "other");
  return ph_upstream(ex, &spec) == PH_OK ? PH_NEXT_UPSTREAM : PH_NEXT_ERROR;
}
static const ph_action_type fwd = {.size = sizeof fwd, .flags = PH_TYPE_THREAD_SAFE,
                                   .id = "plugins.old.actions.Forward", .create = create,
                                   .handle = handle};
static const ph_action_type *const actions[] = {&fwd, NULL};
PH_PLUGIN_DEFINE(.name = "old", .version = "1.0.0", .actions = actions);
"""


def build_against(release: str, source: str, tmp_path: Path) -> Path:
    """Compiles ``source`` against the header of ABI ``release`` as it shipped."""
    include = tmp_path / f"include-{release}"
    include.mkdir()
    (include / "plugin.h").write_text((HISTORY / f"plugin-{release}.h").read_text())
    return compile_plugin(source, include, tmp_path)


def test_the_released_1_0_header_is_kept_as_it_shipped() -> None:
    text = (HISTORY / "plugin-1.0.h").read_text()
    assert "#define PH_ABI_MINOR 0 " in text and "int64_t timeout_ms;" in text
    assert "ws_ping_interval_ms" not in text  # 1.1 fields are not in the 1.0 contract


def test_the_released_1_1_header_is_kept_as_it_shipped() -> None:
    text = (HISTORY / "plugin-1.1.h").read_text()
    assert "#define PH_ABI_MINOR 1 " in text and "ws_ping_interval_ms" in text
    assert "PH_TYPE_STREAMS_BODIES" not in text  # 1.2 is not in the 1.1 contract


@pytest.mark.parametrize("release", ["1.0", "1.1"])
def test_an_action_of_a_released_minor_works_on_this_host(tmp_path: Path, release: str) -> None:
    """A 1.0 plugin's ph_upstream_spec ends at timeout_ms (40 bytes): the host reads no
    further, gives the 1.1 fields their defaults, and performs the request. A 1.1 plugin
    has no PH_TYPE_STREAMS_BODIES: its route holds bodies whole, as 1.1 promised."""
    import http.server

    class Upstream(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"upstream saw {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    plugin = build_against(release, OLD_ACTION, tmp_path)
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""\
plugins:
  - path: {plugin}
actions:
  Forward:
    use: plugins.old.actions.Forward
    config: {{url: "http://127.0.0.1:{server.server_port}/from-old"}}
routes:
  - path: /old
    method: GET
    action: Forward
""")
    from plughost import Gateway

    try:
        with Gateway.from_config(config) as gateway:
            assert gateway.plugins[0].abi == (1, int(release[-1]))
            chain = gateway.route("GET", "/old")[0]
            assert not chain.streams
            response = gateway.handle("GET", "/old")
            assert response.status == 200 and response.body == b"upstream saw /from-old"
            pending = gateway.pipeline.run(chain, b"", Request("GET", "/old"))
            upstream = pending.directive()
            pending.discard()
            assert upstream.timeout == 2.0 and upstream.websocket is False
            assert (
                upstream.ping_interval,
                upstream.pong_timeout,
                upstream.max_inactivity,
                upstream.max_message,
                upstream.subprotocols,
            ) == (None,) * 5
    finally:
        server.shutdown()
        server.server_close()
