"""``preflight worker``: the audit on a schedule (APScheduler), until SIGTERM / SIGINT.

A module of its own: ``audit`` and ``findings`` run no scheduler and load none.
"""

from __future__ import annotations

import click

from preflight.cli.support import open_app
from preflight.worker import run_worker


@click.command()
def worker() -> int:
    """Run the audit on a schedule until SIGTERM / SIGINT (then exit 0).

    PREFLIGHT_AUDIT_INTERVAL (default 15m) or PREFLIGHT_AUDIT_CRON (UTC) sets the ticks.
    Run as many replicas as you like against one database: each period is claimed in
    the database, so exactly one replica audits it, and a period whose replica died is
    completed by another once its lease (PREFLIGHT_AUDIT_LEASE) expires.
    """
    with open_app() as app:
        run_worker(app.runtime, announce=lambda line: click.echo(line, err=True))
    return 0
