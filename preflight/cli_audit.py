"""CLI commands of the scheduled audit (``audit``, ``worker``, ``findings``, ``profile update``).

preflight/cli.py imports this module at its end and calls :func:`register`; the helpers
both share live in preflight/cli_support.py. Heavy modules (SQLAlchemy, httpx,
APScheduler) are imported inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from preflight.cli_support import FORMAT_OPTION, emit_json, open_app, parse_since, print_table
from preflight.errors import UsageError
from preflight.settings import FINDING_KINDS

if TYPE_CHECKING:
    from preflight.audit import AuditOutcome


def register(group: click.Group) -> None:
    """Add the audit commands to the ``preflight`` group (and ``update`` to ``profile``)."""
    group.add_command(audit)
    group.add_command(worker)
    group.add_command(findings)
    profile = group.commands["profile"]
    assert isinstance(profile, click.Group)
    profile.add_command(profile_update)


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
    from preflight.audit import run_audit

    with open_app() as app:
        outcomes = run_audit(app, account=account, force=force)
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
        click.echo(f"  {_describe(finding)}")


def _describe(finding: dict[str, Any]) -> str:
    amount = f" {finding['amount']}" if finding["amount"] is not None else ""
    meter = finding["detail"].get("meter")
    on = f" on {meter}" if meter else ""
    batches = ", ".join(finding["batches"]) or "-"
    return (
        f"{finding['kind']}{amount}{on}, {finding['window_start']} .. {finding['window_end']}, "
        f"batches: {batches}"
    )


# ---------------------------------------------------------------- worker


@click.command()
def worker() -> int:
    """Run the audit on a schedule until SIGTERM / SIGINT (then exit 0).

    PREFLIGHT_AUDIT_INTERVAL (default 15m) or PREFLIGHT_AUDIT_CRON (UTC) sets the ticks.
    Run as many replicas as you like against one database: each period is claimed in
    the database, so exactly one replica audits it, and a period whose replica died is
    completed by another once its lease (PREFLIGHT_AUDIT_LEASE) expires.
    """
    from preflight.worker import run_worker

    with open_app() as app:
        run_worker(app)
    return 0


# ---------------------------------------------------------------- findings


@click.command()
@click.option(
    "--since", metavar="ISO8601|DURATION", help="Only newer than this time, or e.g. 24h, 7d."
)
@click.option("--kind", type=click.Choice(FINDING_KINDS), help="Only findings of this kind.")
@click.option("--account", help="Only this configured account.")
@FORMAT_OPTION
def findings(since: str | None, kind: str | None, account: str | None, output_format: str) -> int:
    """What the audit found, oldest first: unexplained consumption, low balance, stale batches."""
    from preflight.audit import list_findings

    with open_app() as app:
        rows = list_findings(app, since=parse_since(since), kind=kind, account=account)
    if output_format == "json":
        emit_json(rows)
    else:
        print_table(
            ["created_at", "account", "kind", "amount", "window_start", "window_end", "batches"],
            [
                [
                    r["created_at"],
                    r["account"],
                    r["kind"],
                    r["amount"],
                    r["window_start"],
                    r["window_end"],
                    ", ".join(r["batches"]) or None,
                ]
                for r in rows
            ],
        )
    return 0


# ---------------------------------------------------------------- profile update


def validate_webhook_url(url: str, *, allow_http: bool = False) -> str:
    """``url`` if it is an https (or, allowed, http) URL with a host; else a UsageError.

    The URL is not echoed in the error: webhook URLs often carry a secret.
    """
    allowed = ("https", "http") if allow_http else ("https",)
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        raise UsageError("--webhook-url is not a valid URL") from None
    if parts.scheme.lower() not in allowed:
        hint = "" if allow_http else " (--allow-http permits http:// for local use)"
        raise UsageError(f"--webhook-url must be an {' or '.join(allowed)} URL{hint}")
    if not host or any(char.isspace() or ord(char) < 0x20 for char in url.strip()):
        raise UsageError("--webhook-url needs a host and no spaces or control characters")
    return url.strip()


@click.command("update")
@click.option("--webhook-url", required=True, metavar="URL", help="The new webhookUrl.")
@click.option("--allow-http", is_flag=True, help="Accept an http:// URL (local testing only).")
@click.option("--account", envvar="PREFLIGHT_ACCOUNT", show_envvar=True, help="Configured account.")
@FORMAT_OPTION
def profile_update(
    webhook_url: str, allow_http: bool, account: str | None, output_format: str
) -> int:
    """Set the profile's webhookUrl (POST /api/open/v1/profile).

    \b
    Kept apart from batch work: check, record and the audit never call it, so a
    validation error here can never block a batch.
    Exit codes: 0 updated, 2 the URL is refused (here or by the vendor), 11 the
    vendor said 401, 13 the vendor is unavailable.
    """
    import json

    url = validate_webhook_url(webhook_url, allow_http=allow_http)
    with open_app() as app:
        name = app.settings.account_settings(account).name
        profile = app.vendor(name).update_profile({"webhookUrl": url})
    try:
        echoed = json.loads(profile.raw).get("webhookUrl")
    except (ValueError, AttributeError):
        echoed = None
    data = {
        "account": name,
        "webhook_url": echoed if isinstance(echoed, str) else url,
        "user_id": profile.user_id,
        "tier": profile.tier,
    }
    if output_format == "json":
        emit_json(data)
    else:
        click.echo(f"{name}: webhookUrl updated")
    return 0
