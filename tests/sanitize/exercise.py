"""Drives every native plugin through an ASan/UBSan build of the host runtime.

Run by tests/test_sanitizers.py in a child process started with the sanitizer runtimes
preloaded: ``python exercise.py RUNTIME.so PLUGIN_DIR``. Any invalid access, undefined
behaviour or leak in C aborts the child with the sanitizer's report.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import plughost
from plughost.runtime import Runtime


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
    workers = [threading.Thread(target=lambda: [store.incr(b"c") for _ in range(5000)])
               for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert store.get(b"c") == b"10000"
    store.reset()

    rid = host.create_middleware("plugins.requestid.middlewares.RequestIdMiddleware",
                                 {"headerName": "X-Id"})
    action = host.create_action("plugins.static.actions.StaticAction",
                                {"status": 201, "headers": {"A": "b"}, "body": "x" * 1000})
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

    from plughost.gateway import Gateway
    from plughost.pyelements import PythonMiddleware

    class Py(PythonMiddleware):
        def on_request(self, ex):  # type: ignore[no-untyped-def]
            ex.set_request_header("X-Py", "1")

    import logging

    logging.getLogger("plughost").setLevel(logging.CRITICAL)  # failures here are on purpose
    folder = write_config(workdir / "config", plugin_dir,
                          upstream=f"http://127.0.0.1:{free_port()}", extra_routes="""\
  Mixed:
    gatewayPath: /mixed/:id
    methods: [GET]
    middlewares: [A, Py, B]
    action: Echo
""")
    with Gateway.from_config(folder, python_elements={"Py": Py()}, runtime=runtime) as gw:
        for i in range(3000):
            assert gw.handle("GET", f"/mixed/{i}", {"X-Request-ID": "r" * (i % 250)}).status == 200
            assert gw.handle("POST", "/traced", body=b"x" * (i % 5000)).status == 200
            assert gw.handle("GET", "/early").status == 418
            assert gw.handle("GET", "/broken").status == 500
            assert gw.handle("GET", "/broken-response").status == 500
            assert gw.handle("GET", "/files/a/b").status == 200
        assert gw.handle("GET", "/proxy/x").status == 502


if __name__ == "__main__":
    runtime = load_runtime(sys.argv[1])
    with plughost.Host(runtime, static_check=False) as h:
        exercise(h, Path(sys.argv[2]))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        exercise_gateway(runtime, Path(sys.argv[2]), Path(tmp))
    print("sanitizers: clean")
