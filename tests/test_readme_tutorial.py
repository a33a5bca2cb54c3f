"""The README's tutorial works as written: its C and CMake blocks build against the
package's CMake SDK, the result passes `plughost check --load`, and its Python block runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGHOST = str(Path(sys.executable).with_name("plughost"))


def blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_tutorial_builds_checks_and_runs(tmp_path: Path, plugin_dir: Path) -> None:
    hello = tmp_path / "hello"
    hello.mkdir()
    (hello / "hello.c").write_text(blocks("c")[0])
    (hello / "CMakeLists.txt").write_text(blocks("cmake")[0])
    cmake_dir = subprocess.run([PLUGHOST, "info", "--cmake-dir"], capture_output=True, text=True,
                               check=True).stdout.strip()
    subprocess.run(["cmake", "-S", str(hello), "-B", str(hello / "build"), f"-Dplughost_DIR={cmake_dir}"],
                   check=True, capture_output=True)
    build = subprocess.run(["cmake", "--build", str(hello / "build")], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    built = hello / "build" / "hello.so"
    assert built.is_file()
    check = subprocess.run([PLUGHOST, "check", "--load", str(built)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    musl = subprocess.run([PLUGHOST, "check", "--target", "linux-x86_64-musl", str(built)],
                          capture_output=True, text=True)
    assert musl.returncode == 1

    script = blocks("python")[0].replace('"hello/build/hello.so"', repr(str(built))) \
        .replace('"build/plugins/memory.so"', repr(str(plugin_dir / "memory.so")))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["[('X-Hello', 'hi')]", "1"]
