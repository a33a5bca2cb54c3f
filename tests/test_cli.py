"""The console script is installed and answers."""

import subprocess
import sys
from pathlib import Path

import plughost


def test_version_from_console_script() -> None:
    script = Path(sys.executable).with_name("plughost")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"plughost, version {plughost.__version__}"
