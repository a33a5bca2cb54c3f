"""Reload without dropping a request: `plughost serve` keeps a steady stream of requests —
plain, proxied to a real upstream, and one open WebSocket session — answered through ten
reloads that alternate good and broken configurations, once with a plugin file replaced on
disk by a new version; with one worker and with two. Zero failed or reset requests; the new
behaviour after each good reload, the old one after each broken one."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from websockets.sync.client import connect

from build_support import compile_plugin
from gateway_support import PLUGHOST, Server, UpstreamServer, private_plugins, upstream_server
from ws_support import WsUpstream

ROOT = Path(__file__).resolve().parents[1]

#: A plugin whose action answers "plugin v<VERSION>": built twice, to replace one by the other.
VERSION_PLUGIN = r"""
#include "plugin.h"
#include <stdio.h>
static ph_status create(const ph_config *c, void **s) { (void)c; *s = 0; return PH_OK; }
static ph_next handle(void *self, ph_exchange *ex) {
  (void)self;
  char body[32];
  int n = snprintf(body, sizeof body, "plugin v%d", VERSION);
  return ph_respond(ex, 200, "text/plain", body, (size_t)n) == PH_OK ? PH_NEXT_RESPOND
                                                                      : PH_NEXT_ERROR;
}
static const ph_action_type action = {.size = sizeof action, .flags = PH_TYPE_THREAD_SAFE,
  .id = "plugins.version.actions.VersionAction", .create = create, .handle = handle};
static const ph_action_type *const actions[] = {&action, 0};
PH_PLUGIN_DEFINE(.name = "version", .version = "0", .actions = actions);
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    yield from upstream_server()


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[WsUpstream]:
    server = WsUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """version.so built as v1 and v2."""
    built = []
    for n in (1, 2):
        folder = tmp_path_factory.mktemp(f"version{n}")
        plugin = compile_plugin(VERSION_PLUGIN, ROOT / "abi", folder, f"-DVERSION={n}")
        built.append(plugin.rename(folder / "version.so"))
    return built


def write(folder: Path, generation: int, upstream: str, ws: str, *, broken: bool = False) -> Path:
    """The configuration of ``generation``: /hello answers "gen-<generation>"; broken: a
    misspelt option, which a reload must refuse."""
    plugins = folder / "plugins"
    option = "bodyy" if broken else "body"
    (folder / "gateway.yaml").write_text(
        f"""\
plugins:
  - path: {plugins}/requestid.so
  - path: {plugins}/static.so
  - path: {plugins}/trace.so
  - path: {plugins}/wsfw.so
  - path: {plugins}/version.so
middlewares:
  RequestID: {{use: plugins.requestid.middlewares.RequestIdMiddleware}}
globalMiddlewares: [RequestID]
actions:
  Hello:
    use: plugins.static.actions.StaticAction
    config: {{{option}: gen-{generation}}}
  Forward:
    use: plugins.trace.actions.ForwardAction
    config: {{url: {upstream}, timeout: 5s}}
  Version: {{use: plugins.version.actions.VersionAction}}
  Echo:
    use: plugins.wsfw.actions.WebSocketAction
    config: {{upstreamEndpoint: {ws}/echo}}
routes:
  Hello: {{gatewayPath: /hello, methods: [GET], action: Hello}}
  Proxy: {{gatewayPath: /proxy/*, methods: [GET], action: Forward}}
  Version: {{gatewayPath: /version, methods: [GET], action: Version}}
  Ws: {{gatewayPath: /ws/*, methods: [GET], action: Echo}}
"""
    )
    return folder / "gateway.yaml"


class Stream:
    """Requests on keep-alive connections and fresh ones, from threads, until stopped:
    every failure (an exception, a reset, an unexpected status) is kept."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.failures: list[str] = []
        self.answered = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._loop, args=(path, status), daemon=True)
            for path, status in (("/hello", 200), ("/proxy/x", 201), ("/version", 200))
            for _ in range(2)
        ]
        for t in self.threads:
            t.start()

    def _loop(self, path: str, status: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        n = 0
        while not self.stopping.is_set():
            n += 1
            try:
                conn.request("GET", path)
                answer = conn.getresponse()
                answer.read()
                if answer.status != status:
                    self._fail(f"{path}: status {answer.status}")
                with self._lock:
                    self.answered += 1
            except Exception as exc:  # a reset or a refused connection is a failure
                self._fail(f"{path}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            if n % 10 == 0:  # a fresh connection now and then, besides the kept-alive one
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def _fail(self, what: str) -> None:
        with self._lock:
            self.failures.append(what)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(20)


def answers(server: Server, path: str, times: int) -> set[bytes]:
    return {server.get(path, headers={"Connection": "close"})[2] for _ in range(times)}


def settles(server: Server, path: str, want: bytes, within: float = 20.0) -> None:
    """Until 20 answers in a row (from every worker) are ``want``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if answers(server, path, 20) == {want}:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} did not settle on {want!r}: {server.output()[-3000:]}")


def reload(server: Server, how: str) -> None:
    if how == "command":
        run = subprocess.run(
            [PLUGHOST, "reload", "--pid", str(server.proc.pid)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 0 and "asked plughost serve" in run.stdout, run.stderr
    else:
        os.kill(server.proc.pid, signal.SIGHUP)


@pytest.mark.parametrize("workers", [1, 2])
def test_ten_reloads_under_a_steady_stream_drop_nothing(
    tmp_path: Path,
    test_plugin_dir: Path,
    upstream: UpstreamServer,
    ws_upstream: WsUpstream,
    versions: list[Path],
    workers: int,
) -> None:
    folder = tmp_path / "config"
    plugins = private_plugins(test_plugin_dir, folder / "plugins")
    shutil.copy2(versions[0], plugins / "version.so")
    config = write(folder, 1, upstream.url, ws_upstream.url)
    with Server("--config", str(config), "--workers", str(workers)) as server:
        settles(server, "/hello", b"gen-1")
        stream = Stream(server.port)
        with connect(f"ws://127.0.0.1:{server.port}/ws/s", open_timeout=10) as ws:
            sent = 0
            good = 1
            refused = 0
            for step in range(10):
                ws.send(f"m{sent}")  # the session goes on across every reload
                assert ws.recv(timeout=10) == f"m{sent}"
                sent += 1
                how = "command" if step % 3 == 0 else "signal"
                if step % 2 == 1:  # a broken configuration: refused, the old one serves on
                    write(folder, good + 1, upstream.url, ws_upstream.url, broken=True)
                    reload(server, how)
                    refused += 1
                    server.output_after(0, *(["reload refused"] * 1), timeout=20)
                    deadline = time.monotonic() + 20
                    while server.output().count("reload refused;") < refused:
                        assert time.monotonic() < deadline, server.output()[-3000:]
                        time.sleep(0.1)
                    assert answers(server, "/hello", 10) == {f"gen-{good}".encode()}
                else:
                    good += 1
                    if step == 4:  # a new version of a plugin, replaced on disk as deploys do
                        staged = plugins / ".version.so.new"
                        shutil.copy2(versions[1], staged)
                        os.replace(staged, plugins / "version.so")
                    write(folder, good, upstream.url, ws_upstream.url)
                    reload(server, how)
                    settles(server, "/hello", f"gen-{good}".encode())
                    want = b"plugin v2" if step >= 4 else b"plugin v1"
                    settles(server, "/version", want)
            ws.send("last")
            assert ws.recv(timeout=10) == "last"
        stream.stop()
        assert stream.failures == [], stream.failures[:20]
        assert stream.answered > 100
        # the generations replaced are destroyed once their requests and sessions are done
        deadline = time.monotonic() + 20
        while server.output().count("destroyed") < 5 * workers:
            assert time.monotonic() < deadline, server.output()[-3000:]
            time.sleep(0.2)
        out = server.output()
    assert "Traceback" not in out
    assert out.count("reload: the configuration is sound") == 5
    assert out.count("reload refused;") == 5
    assert "has no option 'bodyy'" in out


def test_reload_names_its_server(tmp_path: Path) -> None:
    run = subprocess.run([PLUGHOST, "reload"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert "name the server with --pid PID or --pid-file FILE" in run.stderr
    run = subprocess.run(
        [PLUGHOST, "reload", "--pid-file", str(tmp_path / "none.pid")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 1 and "is plughost serve running with --pid-file?" in run.stderr


def test_serve_writes_and_removes_its_pid_file(
    tmp_path: Path,
    test_plugin_dir: Path,
    upstream: UpstreamServer,
    ws_upstream: WsUpstream,
    versions: list[Path],
) -> None:
    folder = tmp_path / "config"
    plugins = private_plugins(test_plugin_dir, folder / "plugins")
    shutil.copy2(versions[0], plugins / "version.so")
    config = write(folder, 1, upstream.url, ws_upstream.url)
    pid_file = tmp_path / "serve.pid"
    with Server("--config", str(config), "--pid-file", str(pid_file)) as server:
        assert pid_file.read_text().strip() == str(server.proc.pid)
        write(folder, 2, upstream.url, ws_upstream.url)
        run = subprocess.run(
            [PLUGHOST, "reload", "--pid-file", str(pid_file)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 0, run.stderr
        settles(server, "/hello", b"gen-2")
    assert not pid_file.exists()
