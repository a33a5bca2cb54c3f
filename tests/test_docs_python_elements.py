"""docs/python-elements.md works as written: its module and configuration, served over
HTTP by `plughost serve`, answer what the page shows, and the misspelt option it quotes is
reported as quoted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway_support import Server

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "python-elements.md"
PLUGHOST = str(Path(sys.executable).with_name("plughost"))


def blocks(language: str) -> list[str]:
    """The fenced blocks of the page written in ``language`` ("" for plain ones)."""
    found, current, lang = [], None, ""
    for line in PAGE.read_text().splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, lang = [], line[3:].strip()
            else:
                if lang == language:
                    found.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return found


def test_the_page_runs_as_written(tmp_path: Path, plugin_dir: Path) -> None:
    (tmp_path / "tenant_elements.py").write_text(blocks("python")[0])
    config = tmp_path / "gateway.yaml"
    config.write_text(blocks("yaml")[0])
    check = subprocess.run(
        [PLUGHOST, "check", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    described = subprocess.run(
        [PLUGHOST, "describe", "module:tenant_elements"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert described.returncode == 0 and "plugins.tenants.actions.WhoAmI" in described.stdout

    expected = blocks("")[-2].strip()  # the answer the page shows
    with Server("--config", str(config)) as server:
        status, headers, body = server.get("/whoami", headers={"Host": "acme.example.com"})
        assert status == 200, body + server.output().encode()
        assert body.decode().strip() == expected
        assert headers["x-request-id"]

    config.write_text(
        config.read_text().replace("      header: X-Org\nactions:", "      heder: X-Org\nactions:")
    )
    check = subprocess.run(
        [PLUGHOST, "check", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    quoted = blocks("")[-1].strip()
    assert f"{tmp_path}/{quoted}" in check.stdout, check.stdout
