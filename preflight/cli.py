"""The ``preflight`` command line.

Exit codes (stable; see README): 0 go / success, 2 usage error, 3 storage error,
10 insufficient, 11 auth_failed, 12 billing_blocked, 13 unavailable, 14 at_risk
with --strict, 1 internal error. Errors are one line on stderr, never a traceback.
Heavy imports (SQLAlchemy, httpx) happen inside commands so ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn

import click

from preflight.cli_support import (
    FORMAT_OPTION,
    SINCE_OPTION,
    bounded_lines,
    emit_json,
    load_cli_settings,
    open_app,
    parse_since,
    print_table,
)
from preflight.errors import PreflightError
from preflight.secret import scrub

if TYPE_CHECKING:
    pass

INTERNAL_ERROR_EXIT = 1


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"preflight: error: {scrub(message)}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Shows commands in the order they were defined (the order of a batch's life)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="preflight")
def cli() -> None:
    """Batch preflight and balance snapshots for paid API jobs.

    A check reads the vendor balance; it does not reserve it. preflight keeps the
    snapshots and outcomes that later tell why a job failed for quota.
    Settings come from PREFLIGHT_* variables and the TOML file in PREFLIGHT_CONFIG.
    """


# ---------------------------------------------------------------- check


@cli.command()
@click.argument("batch_id")
@click.option("--need", metavar="AMOUNT", help="Units of the meter the batch will spend.")
@click.option(
    "--meter",
    type=click.Choice(["auto", "credits", "api_quota_remaining"]),
    envvar="PREFLIGHT_METER",
    show_envvar=True,
    help="Balance to read; auto: credits when present, else api_quota_remaining.",
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
    from preflight.domain.verdict import exit_code

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
        )
    if output_format == "json":
        emit_json(result.to_dict())
    else:
        click.echo(f"{result.verdict.value}: {result.reason}")
        click.echo(
            f"batch {result.batch_id} ({result.status}"
            f"{', unverified' if not result.verified else ''}) on {result.meter or '-'}: "
            f"balance {_text(result.balance)}, need {_text(result.need)}, "
            f"reserve {_text(result.reserve)}, other open batches still need "
            f"{_text(result.outstanding_other)}"
        )
        if result.snapshot_id is not None:
            click.echo(
                f"snapshot {result.snapshot_id} ({result.snapshot_kind}) at "
                f"{result.checked_at.isoformat()}"
            )
        click.echo(_advisory())
    return exit_code(result.verdict, strict=strict, fail_open=result.fail_open)


def _advisory() -> str:
    from preflight.api import ADVISORY

    return ADVISORY


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


# ---------------------------------------------------------------- outcomes


@cli.command()
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
        from preflight.domain.outcome import MAX_LINE_BYTES

        with open_app() as app, source as stream:
            lines = bounded_lines(stream, MAX_LINE_BYTES)
            result = app.record_many(batch_id, lines, account=account)
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
            click.echo(f"quota failure: {outcome.tag.tag.value}: {outcome.tag.reason}")
    _warn(outcome.warnings)
    if outcome.snapshot_error:
        click.echo(f"preflight: warning: no failure snapshot: {outcome.snapshot_error}", err=True)
    return 0


def _warn(warnings: Sequence[str]) -> None:
    for warning in warnings:
        click.echo(f"preflight: warning: {warning}", err=True)


@cli.command()
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


@cli.command("classify")
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


# ---------------------------------------------------------------- post-mortems


@cli.command()
@click.argument("batch_id")
@FORMAT_OPTION
def show(batch_id: str, output_format: str) -> int:
    """Post-mortem of BATCH_ID: snapshots, outcome totals, tagged quota failures."""
    with open_app() as app:
        data = app.show(batch_id)
    if output_format == "json":
        emit_json(data)
    else:
        _print_show(data)
    return 0


def _print_show(data: dict[str, Any]) -> None:
    need = data["need"] or "-"
    click.echo(
        f"batch {data['batch_id']}  account {data['account']}  status {data['status']}"
        f"{'' if data['verified'] else ' (unverified)'}  verdict {data['verdict'] or '-'}  "
        f"meter {data['meter'] or '-'}  need {need}"
    )
    click.echo("\nsnapshots")
    print_table(
        ["id", "kind", "taken_at", "balance", "credits", "api_quota_remaining"],
        [
            [
                s["id"],
                s["kind"],
                s["taken_at"],
                s["balance"],
                s["credits"],
                s["api_quota_remaining"],
            ]
            for s in data["snapshots"]
        ],
    )
    totals = data["outcomes"]
    click.echo(
        f"\noutcomes: {totals['total']} total, {totals['succeeded']} succeeded, "
        f"{totals['failed']} failed ({totals['quota_failures']} for quota), "
        f"consumed {totals['cost']}"
    )
    for late in data["late_outcomes"]:
        click.echo(
            f"late: job {late['job_id']} attempt {late['attempt']} ({late['status']}) "
            f"recorded {late['recorded_at']}, after the batch was finished"
        )
    for failure in data["quota_failures"]:
        _echo_failure(failure)


def _echo_failure(failure: dict[str, Any]) -> None:
    evidence = failure["evidence"] or {}
    click.echo(
        f"\nquota failure: job {failure['job_id']} attempt {failure['attempt']} "
        f"at {failure['failed_at']} ({failure['batch_id']})"
    )
    click.echo(f"  tag       {failure['tag'] or '-'}")
    click.echo(f"  reason    {failure['reason']}")
    if evidence:
        click.echo(
            "  evidence  "
            + ", ".join(
                f"{key}={evidence.get(key)}"
                for key in ("b0", "ba", "own", "expected_cost", "foreign", "foreign_before_failure")
                if evidence.get(key) is not None
            )
            + (" (top-up seen: foreign is a lower bound)" if evidence.get("topup") else "")
        )
        if evidence.get("attributed_exceeds_measured"):
            click.echo("  note      other batches recorded more than the balance drop shows")
        click.echo(f"  snapshots {', '.join(str(i) for i in evidence.get('snapshot_ids', []))}")
    for item in failure["attribution"]:
        click.echo(f"  spent by  {item['batch_id']}: {item['cost']}")
    if failure["unattributed"] is not None:
        click.echo(f"  unattributed (recorded by no batch): {failure['unattributed']}")


@cli.command()
@SINCE_OPTION
@click.option(
    "--tag",
    type=click.Choice(["pre_existing_low_balance", "concurrent_consumption", "inconclusive"]),
    help="Only failures with this tag.",
)
@click.option("--account", help="Only this configured account.")
@FORMAT_OPTION
def failures(since: str | None, tag: str | None, account: str | None, output_format: str) -> int:
    """Quota failures across batches, with their tags."""
    with open_app() as app:
        rows = app.failures(since=parse_since(since), tag=tag, account=account)
    if output_format == "json":
        emit_json(rows)
    else:
        print_table(
            ["failed_at", "batch_id", "job_id", "attempt", "tag", "foreign", "unattributed"],
            [
                [
                    r["failed_at"],
                    r["batch_id"],
                    r["job_id"],
                    r["attempt"],
                    r["tag"],
                    (r["evidence"] or {}).get("foreign"),
                    r["unattributed"],
                ]
                for r in rows
            ],
        )
    return 0


@cli.command()
@SINCE_OPTION
@click.option(
    "--status", type=click.Choice(["open", "blocked", "finished"]), help="Only this status."
)
@FORMAT_OPTION
def batches(since: str | None, status: str | None, output_format: str) -> int:
    """Recent batches with their verdicts and failure counts."""
    with open_app() as app:
        rows = app.batches(since=parse_since(since), status=status)
    if output_format == "json":
        emit_json(rows)
    else:
        print_table(
            [
                "created_at",
                "batch_id",
                "status",
                "verdict",
                "meter",
                "need",
                "jobs",
                "failed",
                "quota",
                "cost",
            ],
            [
                [
                    r["created_at"],
                    r["batch_id"],
                    r["status"],
                    r["verdict"],
                    r["meter"],
                    r["need"],
                    r["outcomes"]["total"],
                    r["outcomes"]["failed"],
                    r["outcomes"]["quota_failures"],
                    r["outcomes"]["cost"],
                ]
                for r in rows
            ],
        )
    return 0


@cli.command()
@click.option(
    "--database-url",
    metavar="URL",
    help="Where the demo keeps its rows [default: demo.db beside the default database].",
)
@FORMAT_OPTION
def demo(database_url: str | None, output_format: str) -> int:
    """Run the whole story against the bundled sandbox and print two post-mortems.

    One batch is checked under-funded and dispatched anyway (its quota failure is
    pre_existing_low_balance); the other is checked while the balance is fine, and
    the first one spends it (concurrent_consumption). Uses its own database, never
    the one in PREFLIGHT_DATABASE_URL.
    """
    from preflight.demo import default_demo_database, run_demo

    settings = load_cli_settings()
    url = database_url or default_demo_database()
    say = (lambda _line: None) if output_format == "json" else click.echo
    result = run_demo(url, say=say)
    with open_app(replace(settings, database_url=url)) as app:
        reports = [app.show(batch_id) for batch_id in result.batch_ids]
    if output_format == "json":
        emit_json({"database_url": url, "batches": reports})
        return 0
    for report in reports:
        click.echo("\n" + "=" * 78)
        _print_show(report)
    click.echo("\n" + "=" * 78)
    click.echo(f"explore: PREFLIGHT_DATABASE_URL={url} preflight show {result.batch_ids[0]}")
    return 0


# ---------------------------------------------------------------- profile


@cli.group()
def profile() -> None:
    """The vendor account profile (kept apart from batch work)."""


@profile.command("show")
@click.option("--account", envvar="PREFLIGHT_ACCOUNT", show_envvar=True, help="Configured account.")
@FORMAT_OPTION
def profile_show(account: str | None, output_format: str) -> int:
    """Print the current profile and keep it as a `manual` snapshot."""
    with open_app() as app:
        reading = app.profile(account)
    if output_format == "json":
        emit_json(reading.to_dict())
    else:
        data = reading.to_dict()
        for key in ("account", "user_id", "tier", "credits", "api_quota_remaining"):
            click.echo(f"{key:<20} {data[key] if data[key] is not None else '-'}")
        click.echo(f"{'snapshot':<20} {reading.snapshot_id} at {reading.taken_at.isoformat()}")
        click.echo(f"{'raw':<20} {reading.profile.raw}")
    return 0


# ---------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> int:
    """Migrate the database in PREFLIGHT_DATABASE_URL (needed once for PostgreSQL)."""
    from preflight.db import migrate
    from preflight.db.session import build_engine

    engine = build_engine(load_cli_settings().database_url)
    try:
        migrate.upgrade(engine, revision)
        from preflight.db.session import translate_db_errors

        with translate_db_errors(), engine.connect() as connection:
            current = migrate.current_revision(connection)
    finally:
        engine.dispose()
    click.echo(f"database schema at revision {current}")
    return 0


# ---------------------------------------------------------------- simulate


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--credits",
    "credits_",
    default="1200",
    show_default=True,
    metavar="AMOUNT",
    help="Starting credits ('none' to leave the meter out).",
)
@click.option(
    "--quota",
    default="988000",
    show_default=True,
    metavar="AMOUNT",
    help="Starting api_quota_remaining ('none' to leave the meter out).",
)
@click.option("--token", default=None, help="Token the sandbox accepts [default: sandbox-token].")
def simulate(host: str, port: int, credits_: str, quota: str, token: str | None) -> int:
    """Run the sandbox vendor: the profile API with a real balance, faults and a control API.

    \b
    Vendor API:  GET|POST /api/open/v1/profile, POST /api/open/v1/jobs {"cost": "5"}
    Control API: GET /_sandbox/state, POST /_sandbox/consume {"amount": "10"},
                 /_sandbox/topup, /_sandbox/balance, /_sandbox/faults, /_sandbox/shape,
                 /_sandbox/reset
    Point preflight at it with PREFLIGHT_VENDOR_URL=http://HOST:PORT and
    PREFLIGHT_API_TOKEN=<token>.
    """
    from preflight.sandbox import DEFAULT_TOKEN, serve_forever

    try:
        serve_forever(
            host=host,
            port=port,
            credits=_optional_amount(credits_, "--credits"),
            quota=_optional_amount(quota, "--quota"),
            token=token or DEFAULT_TOKEN,
        )
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return 0


def _optional_amount(text: str, option: str) -> Decimal | None:
    from preflight.settings import parse_amount

    if text.strip().lower() == "none":
        return None
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


from preflight import cli_audit  # noqa: E402 - registers onto the group defined above

cli_audit.register(cli)


# ---------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the CLI; map every failure to one line and a documented exit code."""
    try:
        code = cli.main(args=argv, prog_name="preflight", standalone_mode=False)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.UsageError as error:
        hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
        _fail(f"{error.format_message()}{hint}", 2)
    except click.ClickException as error:
        _fail(error.format_message(), error.exit_code)
    except PreflightError as error:
        _fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as error:  # a bug: say so in one line, keep the traceback in the log
        _log_internal_error(error)
        _fail(
            f"internal error: {type(error).__name__}: {error} "
            "(run with PREFLIGHT_LOG_LEVEL=debug for details)",
            INTERNAL_ERROR_EXIT,
        )
    sys.exit(code if isinstance(code, int) else 0)


def _log_internal_error(error: Exception) -> None:
    import os

    import structlog

    from preflight.logs import configure_logging

    if not structlog.is_configured():
        # A command that failed before reading its settings: structlog's defaults would
        # print this debug event, traceback and all, whatever the level.
        configure_logging(
            os.environ.get("PREFLIGHT_LOG_LEVEL", "warning").strip().lower(),
            os.environ.get("PREFLIGHT_LOG_FORMAT", "auto").strip().lower(),
        )
    logger: Callable[..., Any] = structlog.get_logger("preflight").debug
    logger("internal_error", exc_info=error)
