"""CLI commands of the audit: ``audit`` (one run now) and ``findings`` (what it found); the
scheduled audit, ``worker``, is :mod:`preflight.cli.worker`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from preflight.cli.render import print_rows
from preflight.cli.support import FORMAT_OPTION, SINCE_OPTION, emit_json, open_app, parse_since
from preflight.domain.vocabulary import FINDING_KINDS

if TYPE_CHECKING:
    from preflight.services.results import AuditOutcome


# ---------------------------------------------------------------- audit


@click.command()
@click.option(
    "--account",
    help="Only this configured account [default: PREFLIGHT_AUDIT_ACCOUNTS, else every "
    "account with a token].",
)
@click.option(
    "--force",
    is_flag=True,
    help="Run even if this period was audited: an extra run without a claim (by hand only).",
)
@FORMAT_OPTION
def audit(account: str | None, force: bool, output_format: str) -> int:
    """Run one audit now, claiming the current period exactly as the worker does.

    Per account: an `audit` snapshot, unexplained consumption between snapshots, low
    balance, stale batches, reclassification of inconclusive quota failures, retention
    of old audit snapshots. A second run in the same period (another host's cron, a
    worker) does nothing, says so, and exits 0. Findings: `preflight findings`.
    """
    # On a terminal the text below shows each finding: not a second time as a log line.
    shown_as_text = output_format == "text" and sys.stdout.isatty()
    with open_app() as app:
        outcomes = app.audit(account=account, force=force, log_findings=not shown_as_text)
    if output_format == "json":
        emit_json([outcome.to_dict() for outcome in outcomes])
    else:
        for outcome in outcomes:
            _echo_outcome(outcome)
    for outcome in outcomes:
        for name, step in outcome.steps.items():
            if not step.get("ok") and not step.get("skipped"):
                click.echo(
                    f"preflight: warning: {outcome.account}: {name} failed: {step.get('error')}",
                    err=True,
                )
    return 0


def _echo_outcome(outcome: AuditOutcome) -> None:
    head = f"{outcome.account}: period {outcome.period_start.isoformat()}"
    if outcome.audit_run_id is None:
        click.echo(f"{head}: {outcome.reason}")
        return
    taken_over = " (taken over from a replica whose lease lapsed)" if outcome.takeover else ""
    snapshot = outcome.snapshot_id if outcome.snapshot_id is not None else "none"
    click.echo(
        f"{head}: audit run {outcome.audit_run_id} {outcome.status}{taken_over}; "
        f"snapshot {snapshot}; {len(outcome.findings)} new finding(s)"
    )
    if outcome.reason:
        click.echo(f"  {outcome.reason}")
    for finding in outcome.findings:
        click.echo(f"  {_describe(finding.to_dict())}")


def _describe(finding: dict[str, Any]) -> str:
    amount = f" {finding['amount']}" if finding["amount"] is not None else ""
    meter = finding["detail"].get("meter")
    on = f" on {meter}" if meter else ""
    batches = ", ".join(finding["batches"]) or "-"
    return (
        f"{finding['kind']}{amount}{on}, {finding['window_start']} .. {finding['window_end']}, "
        f"batches: {batches}"
    )


# ---------------------------------------------------------------- findings


@click.command()
@SINCE_OPTION
@click.option("--kind", type=click.Choice(FINDING_KINDS), help="Only findings of this kind.")
@click.option("--account", help="Only this configured account.")
@FORMAT_OPTION
def findings(since: str | None, kind: str | None, account: str | None, output_format: str) -> int:
    """What the audit found, oldest first: unexplained consumption, low balance, stale batches."""
    with open_app() as app:
        found = app.findings(since=parse_since(since), kind=kind, account=account)
    print_rows(
        [finding.to_dict() for finding in found],
        output_format,
        [
            "created_at",
            "account",
            "kind",
            "amount",
            "window_start",
            "window_end",
            ("batches", lambda r: ", ".join(r["batches"]) or None),
        ],
    )
    return 0
