"""The ``preflight`` command line: an edge over the Python facade and its services.

``main`` maps every failure to one line on stderr and a documented exit code
(:mod:`preflight.cli.exit_codes`); commands live in one module per group.
"""

from preflight.cli.main import cli, main

__all__ = ["cli", "main"]
