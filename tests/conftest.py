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
    subprocess.run([sys.executable, str(ROOT / "build_plugins.py"), "--quiet"], check=True,
                   cwd=ROOT)
    return ROOT / "build" / "plugins"


@pytest.fixture
def host() -> Iterator[plughost.Host]:
    with plughost.Host() as h:
        yield h
