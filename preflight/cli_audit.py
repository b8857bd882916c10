"""CLI commands of the scheduled audit (``audit``, ``worker``, ``findings``, ``profile update``)."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add the audit commands to the ``preflight`` group."""
