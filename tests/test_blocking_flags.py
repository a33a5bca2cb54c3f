"""PH_TYPE_BLOCKS_VIA_STORAGES (ABI 1.1): session, limiter and csrf block only inside the
storages they look up, so their chains run on the event loop when those storages are
in-process (MemoryStorage, also the host's default one) and in a worker thread when one is
on the network (ValkeyStorage). Types flagged only PH_TYPE_MAY_BLOCK stay may-block."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_support import free_port, private_plugins

SESSION = "plugins.session.middlewares.LoadSessionMiddleware"
LIMITER = "plugins.limiter.middlewares.LimiterMiddleware"
CSRF = "plugins.csrf.middlewares.CSRFMiddleware"


@pytest.fixture
def gateway(tmp_path: Path, plugin_dir: Path, test_plugin_dir: Path):
    from plughost import Gateway

    plugins = private_plugins(plugin_dir, tmp_path / "plugins")
    (plugins / "trace.so").write_bytes((test_plugin_dir / "trace.so").read_bytes())
    unreachable = free_port()  # a Valkey that is not running: a warning at start, no error
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""\
plugins:
  - path: {plugins}/memory.so
  - path: {plugins}/valkey.so
  - path: {plugins}/session.so
  - path: {plugins}/limiter.so
  - path: {plugins}/csrf.so
  - path: {plugins}/static.so
  - path: {plugins}/trace.so
storages:
  Memory:
    use: plugins.memory.storages.MemoryStorage
  Valkey:
    use: plugins.valkey.storages.ValkeyStorage
    config: {{host: 127.0.0.1, port: {unreachable}}}
middlewares:
  SessionMemory: {{use: {SESSION}, config: {{storage: Memory}}}}
  SessionDefault: {{use: {SESSION}}}
  SessionValkey: {{use: {SESSION}, config: {{storage: Valkey}}}}
  LimiterMemory: {{use: {LIMITER}, config: {{storage: Memory}}}}
  LimiterValkey: {{use: {LIMITER}, config: {{storage: Valkey}}}}
  CsrfMemory: {{use: {CSRF}, config: {{storage: Memory}}}}
  Blocking: {{use: plugins.trace.middlewares.BlockingTraceMiddleware}}
actions:
  Hello: {{use: plugins.static.actions.StaticAction, config: {{body: hi}}}}
routes:
  - {{path: /memory, method: GET, middlewares: [SessionMemory, LimiterMemory, CsrfMemory], action: Hello}}
  - {{path: /default, method: GET, middlewares: [SessionDefault], action: Hello}}
  - {{path: /valkey, method: GET, middlewares: [SessionValkey], action: Hello}}
  - {{path: /mixed, method: GET, middlewares: [SessionMemory, LimiterValkey], action: Hello}}
  - {{path: /blocking, method: GET, middlewares: [Blocking], action: Hello}}
""")
    with Gateway.from_config(config) as gw:
        yield gw


def test_in_process_storages_run_inline(gateway) -> None:
    for name in ("SessionMemory", "SessionDefault", "LimiterMemory", "CsrfMemory"):
        assert gateway.instances[name].may_block is False, name
    assert not gateway.route("GET", "/memory")[0].may_block
    assert not gateway.route("GET", "/default")[0].may_block
    response = gateway.handle("GET", "/memory")
    assert response.status == 200 and response.body == b"hi"


def test_network_storages_run_in_a_worker_thread(gateway) -> None:
    assert gateway.instances["SessionValkey"].may_block is True
    assert gateway.instances["LimiterValkey"].may_block is True
    assert gateway.route("GET", "/valkey")[0].may_block
    assert gateway.route("GET", "/mixed")[0].may_block  # one network storage is enough


def test_a_type_without_the_flag_stays_may_block(gateway) -> None:
    assert gateway.instances["Blocking"].may_block is True
    assert gateway.route("GET", "/blocking")[0].may_block
