"""Shared fixtures: the native plugins built by CMake, and a host that is closed after use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

import plughost

pytest_plugins = ("badfiles.fixtures",)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def plugin_dir() -> Path:
    """build/plugins/, (re)built by build_plugins.py: every plugin in native_plugins/."""
    subprocess.run(
        [sys.executable, str(ROOT / "build_plugins.py"), "--quiet"], check=True, cwd=ROOT
    )
    return ROOT / "build" / "plugins"


@pytest.fixture(scope="session")
def test_plugin_dir() -> Path:
    """build/test-plugins/: every native plugin plus the test-only ones in
    tests/native_plugins/ (trace: tracing middlewares, echo and forward actions)."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "build_plugins.py"),
            "--quiet",
            "--plugins-dir",
            str(ROOT / "tests" / "native_plugins"),
            "--build-dir",
            str(ROOT / "build" / "cmake-tests"),
            "--out",
            str(ROOT / "build" / "test-plugins"),
        ],
        check=True,
        cwd=ROOT,
    )
    return ROOT / "build" / "test-plugins"


@pytest.fixture
def host() -> Iterator[plughost.Host]:
    with plughost.Host() as h:
        yield h
