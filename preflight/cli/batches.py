"""Batch commands, in the order of a batch's life: ``check``, ``record``, ``finish``,
``classify``, and the post-mortem reads ``show``, ``failures``, ``batches``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from preflight.cli.render import ImportProgressLine, paint, print_rows, print_show
from preflight.cli.support import (
    FORMAT_OPTION,
    SINCE_OPTION,
    bounded_lines,
    emit_json,
    open_app,
    parse_since,
)
from preflight.contract import ADVISORY, exit_code
from preflight.domain.outcome import MAX_LINE_BYTES
from preflight.domain.vocabulary import BatchStatus, Tag
from preflight.settings import parse_duration

if TYPE_CHECKING:
    from decimal import Decimal


@click.command()
@click.argument("batch_id")
@click.option("--need", metavar="AMOUNT", help="Units of the meter the batch will spend.")
@click.option(
    "--meter",
    metavar="METER",
    envvar="PREFLIGHT_METER",
    show_envvar=True,
    help=(
        "Balance to read: auto (the vendor's first meter present: credits, else "
        "api_quota_remaining, for the default vendor) or a meter of the account's vendor "
        "(docs/vendors.md)."
    ),
)
@click.option(
    "--reserve",
    metavar="AMOUNT",
    envvar="PREFLIGHT_RESERVE",
    show_envvar=True,
    help="Margin to keep on top of the need.",
)
@click.option("--strict", is_flag=True, help="Exit 14 (not 0) when the verdict is at_risk.")
@click.option(
    "--fail-open",
    is_flag=True,
    default=None,
    envvar="PREFLIGHT_FAIL_OPEN",
    show_envvar=True,
    help="When the vendor is unavailable, exit 0 and mark the batch unverified.",
)
@click.option("--account", envvar="PREFLIGHT_ACCOUNT", show_envvar=True, help="Configured account.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Free-form label.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    metavar="N",
    help="Instead of --need: N jobs, priced from history (with --estimate-from).",
)
@click.option(
    "--estimate-from",
    metavar="KEY=VALUE",
    help="Price the jobs from the account's finished batches with this label.",
)
@click.option(
    "--estimate",
    type=click.Choice(["mean", "p50", "p90", "p95", "max"]),
    help="The statistic per job (default mean; quantiles are nearest-rank).",
)
@click.option(
    "--min-history",
    type=click.IntRange(min=1),
    metavar="N",
    help="Fewer past jobs than this (default 20) is a usage error.",
)
@FORMAT_OPTION
def check(
    batch_id: str,
    need: str | None,
    meter: str | None,
    reserve: str | None,
    strict: bool,
    fail_open: bool | None,
    account: str | None,
    labels: Sequence[str],
    jobs: int | None,
    estimate_from: str | None,
    estimate: str | None,
    min_history: int | None,
    output_format: str,
) -> int:
    """Snapshot the balance for BATCH_ID and answer go / no-go.

    \b
    Verdicts and exit codes:
      go               0   balance >= need + reserve
      at_risk          0   (14 with --strict) other open batches may take what it needs
      insufficient    10   balance < need + reserve, before dispatch
      auth_failed     11   vendor said 401 (no retry)
      billing_blocked 12   vendor said 402 on the profile
      unavailable     13   vendor down or unusable after retries (0 with --fail-open)
      usage error      2
    """
    label_map = _parse_labels(labels)
    with open_app() as app:
        result = app.check(
            batch_id,
            need=need,
            meter=meter,
            reserve=reserve,
            fail_open=fail_open,
            account=account,
            labels=label_map,
            jobs=jobs,
            estimate_from=estimate_from,
            estimate=estimate,
            min_history=min_history,
        )
    if output_format == "json":
        emit_json(result.to_dict())
    else:
        click.echo(f"{paint(result.verdict.value)}: {result.reason}")
        click.echo(
            f"batch {result.batch_id} ({result.status}"
            f"{', unverified' if not result.verified else ''}) on {result.meter or '-'}: "
            f"balance {_text(result.balance)}, need {_need(result.need)}, "
            f"reserve {_text(result.reserve)}, other open batches still need "
            f"{_text(result.outstanding_other)}"
        )
        if result.need_basis is not None:
            basis = result.need_basis
            click.echo(
                f"need {_text(result.need)} = {basis.jobs} jobs x {_text(basis.per_job)} "
                f"({basis.statistic} of {basis.sample_jobs} succeeded jobs in "
                f"{basis.sample_batches} finished batches labelled {basis.label})"
            )
        if result.snapshot_id is not None:
            click.echo(
                f"snapshot {result.snapshot_id} ({result.snapshot_kind}) at "
                f"{result.checked_at.isoformat()}"
            )
        click.echo(ADVISORY)
    return exit_code(result.verdict, strict=strict, fail_open=result.fail_open)


def _need(value: Decimal | None) -> str:
    # The verdict's reason reads an undeclared need as 0: say the same, and why.
    return "0 (none declared)" if value is None else _text(value)


def _text(value: Decimal | None) -> str:
    return "-" if value is None else format(value, "f")


def _parse_labels(labels: Sequence[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{label!r} is not KEY=VALUE", param_hint="--label")
        parsed[key] = value
    return parsed


@click.command()
@click.argument("batch_id")
@click.argument("job_id", required=False)
@click.option(
    "--status", type=click.Choice(["succeeded", "failed"]), help="Outcome of the job attempt."
)
@click.option(
    "--cost",
    metavar="AMOUNT",
    help="Units of the batch's meter the job consumed. On a quota failure (402) nothing "
    "was consumed: the cost is read as its expected cost. A failure that is not a quota "
    "failure keeps its cost as consumed (the vendor charged a job that then failed).",
)
@click.option(
    "--expected-cost",
    metavar="AMOUNT",
    help="What the job was expected to cost (on a quota failure, the same as --cost).",
)
@click.option("--http-status", type=int, metavar="CODE", help="The vendor's HTTP status.")
@click.option("--attempt", type=int, default=1, show_default=True, help="Attempt number (>= 1).")
@click.option(
    "--at", "at_", metavar="ISO8601", help="When it happened [default: now; UTC if no offset]."
)
@click.option("--error", metavar="TEXT", help="Error text.")
@click.option("--quota-failure", is_flag=True, help="Count this failure as quota even without 402.")
@click.option(
    "--no-snapshot", is_flag=True, help="Do not take a live `failure` snapshot on a quota failure."
)
@click.option(
    "--from",
    "source",
    type=click.File("rb", lazy=True),
    metavar="FILE|-",
    help="Record many outcomes from JSON Lines (see below).",
)
@click.option("--account", envvar="PREFLIGHT_ACCOUNT", show_envvar=True, help="Configured account.")
@FORMAT_OPTION
def record(
    batch_id: str,
    job_id: str | None,
    status: str | None,
    cost: str | None,
    expected_cost: str | None,
    http_status: int | None,
    attempt: int,
    at_: str | None,
    error: str | None,
    quota_failure: bool,
    no_snapshot: bool,
    source: Any,
    account: str | None,
    output_format: str,
) -> int:
    """Record a job outcome of BATCH_ID (idempotent on batch, job and attempt).

    Recording the same outcome again changes nothing; a different outcome for the
    same (batch, job, attempt) is refused with exit 2. A failure with HTTP 402 (or
    --quota-failure) takes a `failure` snapshot and is classified at once.

    A batch that was never checked, or is already finished, still gets its outcomes
    stored (exit 0), with a warning on stderr; outcomes after `finish` show as late.

    \b
    Bulk: --from FILE (or - for stdin), one JSON object per line with the fields
      job_id, status, cost, expected_cost, http_status, attempt, at, error, quota_failure
    The file is streamed and written 1000 lines per transaction. A bad line stops the
    import with its line number, and every line BEFORE it is kept: fix the line and
    run the same file again (lines already recorded are skipped as duplicates).
    Quota failures in a bulk import are classified from the account's snapshot
    timeline; no live snapshot is taken.
    """
    if source is not None:
        if job_id or status:
            raise click.UsageError("give either JOB_ID with --status, or --from, not both")

        shown = ImportProgressLine()
        try:
            with open_app() as app, source as stream:
                lines = bounded_lines(stream, MAX_LINE_BYTES)
                result = app.record_many(batch_id, lines, account=account, progress=shown)
        finally:
            shown.done()
        if output_format == "json":
            emit_json(result.to_dict())
        else:
            tags = ", ".join(f"{n} {tag}" for tag, n in sorted(result.tags.items())) or "none"
            click.echo(
                f"batch {result.batch_id}: {result.lines} lines, {result.inserted} recorded, "
                f"{result.duplicates} already recorded; quota failures classified: {tags}"
            )
        _warn(result.warnings)
        return 0
    if not job_id or not status:
        raise click.UsageError("JOB_ID and --status are required (or use --from FILE)")
    fields: dict[str, object] = {
        "job_id": job_id,
        "status": status,
        "cost": cost,
        "expected_cost": expected_cost,
        "http_status": http_status,
        "attempt": attempt,
        "at": at_,
        "error": error,
        "quota_failure": quota_failure,
    }
    with open_app() as app:
        outcome = app.record(
            batch_id,
            {k: v for k, v in fields.items() if v is not None},
            snapshot=not no_snapshot,
            account=account,
        )
    if output_format == "json":
        emit_json(outcome.to_dict())
    else:
        state = "recorded" if outcome.created else "already recorded (unchanged)"
        click.echo(f"{batch_id} {job_id} attempt {attempt}: {status}, {state}")
        if outcome.tag is not None:
            click.echo(f"quota failure: {paint(outcome.tag.tag.value)}: {outcome.tag.reason}")
    _warn(outcome.warnings)
    if outcome.snapshot_error:
        click.echo(f"preflight: warning: no failure snapshot: {outcome.snapshot_error}", err=True)
    return 0


def _warn(warnings: Sequence[str]) -> None:
    for warning in warnings:
        click.echo(f"preflight: warning: {warning}", err=True)


@click.command()
@click.argument("batch_id")
@click.option("--no-snapshot", is_flag=True, help="Do not take a `finish` snapshot.")
@FORMAT_OPTION
def finish(batch_id: str, no_snapshot: bool, output_format: str) -> int:
    """Take a `finish` snapshot, mark BATCH_ID finished, and report foreign consumption.

    Compares the batch's own consumed cost with the balance drop between its
    preflight and finish snapshots: what others spent during the batch, even when
    nothing failed. Finishing a finished batch takes no snapshot and prints the first
    finish's numbers.
    """
    with open_app() as app:
        result = app.finish(batch_id, snapshot=not no_snapshot)
    data = result.to_dict()
    if output_format == "json":
        emit_json(data)
    else:
        again = " (already finished: the first finish's numbers)" if result.already_finished else ""
        click.echo(f"batch {batch_id} finished at {data['finished_at']}{again}")
        click.echo(
            f"own recorded cost {data['own_cost']}; balance {data['preflight_balance'] or '-'} "
            f"-> {data['finish_balance'] or '-'} (drop {data['balance_drop'] or '-'})"
        )
        foreign = data["foreign_consumption"]
        bound = " (at least: a top-up happened)" if data["foreign_is_lower_bound"] else ""
        click.echo(f"foreign consumption during the batch: {foreign or 'unknown'}{bound}")
    if result.snapshot_error:
        click.echo(f"preflight: warning: no finish snapshot: {result.snapshot_error}", err=True)
    return 0


@click.command()
@click.argument("batch_id")
@click.option(
    "--next-cost",
    metavar="AMOUNT",
    help="What the next job will cost: stop when the balance does not cover it.",
)
@click.option(
    "--max-age",
    metavar="DURATION",
    default="60s",
    show_default=True,
    help="Take a recheck snapshot when the account's latest one is older than this.",
)
@click.option("--strict", is_flag=True, help="Exit 14 (not 0) when the decision is at_risk.")
@FORMAT_OPTION
def guard(
    batch_id: str, next_cost: str | None, max_age: str, strict: bool, output_format: str
) -> int:
    """Between two dispatches of BATCH_ID: continue, at_risk or stop.

    \b
    Decisions and exit codes:
      continue   0   the balance covers the remaining need and the other batches'
      at_risk    0   (14 with --strict) it covers the remaining need, not the others' too
      stop      15   balance < --next-cost, or balance < remaining need
      usage error 2  (no need declared and no --next-cost)
    """
    try:
        age = parse_duration(max_age)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-age") from None
    with open_app() as app:
        result = app.guard(batch_id, next_cost=next_cost, max_age=age)
    data = result.to_dict()
    if output_format == "json":
        emit_json(data)
    else:
        click.echo(f"{paint(data['decision'])}: {data['reason']}")
        click.echo(
            f"batch {batch_id}: balance {data['balance']}, remaining need "
            f"{data['remaining_need'] or '-'}, other open batches still need "
            f"{data['outstanding_other']}, affordable jobs {_or_dash(data['affordable_jobs'])}"
        )
        click.echo(
            f"burn per minute since the check: own {data['own_burn_per_minute'] or '-'}, "
            f"foreign {data['foreign_burn_per_minute'] or '-'}; minutes to empty "
            f"{data['minutes_to_empty'] or '-'}, to finish {data['minutes_to_finish'] or '-'}"
            f"{' (runs out first)' if data['runs_out_first'] else ''}"
        )
        click.echo(f"snapshot {data['snapshot_id']}, {data['snapshot_age_seconds']} s old")
    return result.exit_code(strict=strict)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


@click.command("classify")
@click.option("--batch", "batch_id", metavar="BATCH_ID", help="Only this batch.")
@click.option("--all", "all_", is_flag=True, help="Every batch with quota failures.")
@FORMAT_OPTION
def classify_command(batch_id: str | None, all_: bool, output_format: str) -> int:
    """Rerun the classifier over stored quota failures (idempotent)."""
    if bool(batch_id) == all_:
        raise click.UsageError("give exactly one of --batch BATCH_ID or --all")
    with open_app() as app:
        counts = app.classify(batch_id)
    if output_format == "json":
        emit_json({"classified": sum(counts.values()), "tags": counts})
    else:
        shown = ", ".join(f"{n} {tag}" for tag, n in sorted(counts.items())) or "nothing"
        click.echo(f"classified: {shown}")
    return 0


@click.command()
@click.argument("batch_id")
@FORMAT_OPTION
def show(batch_id: str, output_format: str) -> int:
    """Post-mortem of BATCH_ID: snapshots, outcome totals, tagged quota failures."""
    with open_app() as app:
        report = app.show(batch_id)
    if output_format == "json":
        emit_json(report.to_dict())
    else:
        print_show(report.to_dict())
    return 0


@click.command()
@SINCE_OPTION
@click.option(
    "--tag",
    type=click.Choice([tag.value for tag in Tag]),
    help="Only failures with this tag.",
)
@click.option("--account", help="Only this configured account.")
@FORMAT_OPTION
def failures(since: str | None, tag: str | None, account: str | None, output_format: str) -> int:
    """Quota failures across batches, with their tags."""
    with open_app() as app:
        found = app.failures(since=parse_since(since), tag=tag, account=account)
    print_rows(
        [failure.to_dict() for failure in found],
        output_format,
        [
            "failed_at",
            "batch_id",
            "job_id",
            "attempt",
            "tag",
            ("foreign", lambda r: (r["evidence"] or {}).get("foreign")),
            "unattributed",
        ],
    )
    return 0


@click.command()
@SINCE_OPTION
@click.option(
    "--status",
    type=click.Choice([status.value for status in BatchStatus]),
    help="Only this status.",
)
@click.option("--account", help="Only this configured account.")
@FORMAT_OPTION
def batches(since: str | None, status: str | None, account: str | None, output_format: str) -> int:
    """Recent batches with their verdicts and failure counts."""
    with open_app() as app:
        listed = app.batches(since=parse_since(since), status=status, account=account)
    print_rows(
        [listing.to_dict() for listing in listed],
        output_format,
        [
            "created_at",
            "batch_id",
            "status",
            "verdict",
            "meter",
            "need",
            ("jobs", lambda r: r["outcomes"]["total"]),
            ("failed", lambda r: r["outcomes"]["failed"]),
            ("quota", lambda r: r["outcomes"]["quota_failures"]),
            ("cost", lambda r: r["outcomes"]["cost"]),
        ],
    )
    return 0
