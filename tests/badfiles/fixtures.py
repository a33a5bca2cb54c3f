"""pytest fixtures for the real bad plugin files.

Test modules load this with ``pytest_plugins = ("badfiles.fixtures",)`` so that the
session-scoped fixture exists once and the files are built once per test session.
(The lead may move the fixture into tests/conftest.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from badfiles.build import build_badfiles


@pytest.fixture(scope="session")
def badfiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every bad and good test plugin, built once per session: stem -> path."""
    return build_badfiles(tmp_path_factory.mktemp("badfiles"))
