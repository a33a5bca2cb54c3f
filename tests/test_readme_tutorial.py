"""The README's tutorial works as written: its C and CMake blocks build against the
package's CMake SDK, the result passes `plughost check`, its YAML configuration checks clean
and serves the documented answer over HTTP, and its Python block prints what it says."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from gateway_support import free_port, wait_for_http

ROOT = Path(__file__).resolve().parent.parent
PLUGHOST = str(Path(sys.executable).with_name("plughost"))


def blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, timeout=120)


def test_tutorial_builds_checks_configures_and_serves(tmp_path: Path, plugin_dir: Path) -> None:
    hello = tmp_path / "hello"
    hello.mkdir()
    (hello / "hello.c").write_text(blocks("c")[0])
    (hello / "CMakeLists.txt").write_text(blocks("cmake")[0])
    (tmp_path / "build" / "plugins").mkdir(parents=True)
    shutil.copy(plugin_dir / "static.so", tmp_path / "build" / "plugins" / "static.so")

    cmake_dir = run(PLUGHOST, "info", "--cmake-dir", cwd=tmp_path).stdout.strip()
    configure = run(
        "cmake", "-S", "hello", "-B", "hello/build", f"-Dplughost_DIR={cmake_dir}", cwd=tmp_path
    )
    assert configure.returncode == 0, configure.stdout + configure.stderr
    build = run("cmake", "--build", "hello/build", cwd=tmp_path)
    assert build.returncode == 0, build.stdout + build.stderr
    assert (hello / "build" / "hello.so").is_file()

    assert run(PLUGHOST, "check", "--load", "hello/build/hello.so", cwd=tmp_path).returncode == 0
    musl = run(
        PLUGHOST, "check", "--target", "linux-x86_64-musl", "hello/build/hello.so", cwd=tmp_path
    )
    assert musl.returncode == 1
    assert musl.stdout.splitlines()[0] in (ROOT / "README.md").read_text()  # the quoted output

    (tmp_path / "gateway.yaml").write_text(blocks("yaml")[0])
    checked = run(PLUGHOST, "check", "--config", "gateway.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout

    port = free_port()
    server = subprocess.Popen(
        [PLUGHOST, "serve", "--config", "gateway.yaml", "--address", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with wait_for_http(f"http://127.0.0.1:{port}/ping", server) as resp:
            assert resp.status == 200
            assert resp.headers["X-Hello"] == "hi"
            assert resp.read() == b"pong"
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

    script = run(sys.executable, "-c", blocks("python")[0], cwd=tmp_path)
    assert script.returncode == 0, script.stderr
    assert script.stdout.strip() == "200 b'hi' b'pong'"
