"""The ``plughost`` command line."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plughost")
def main() -> None:
    """plughost: a native-plugin API gateway host."""
