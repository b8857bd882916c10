"""Setting up and trying out: ``demo``, ``db upgrade``, ``simulate`` (the sandbox vendor)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import click

from preflight.cli.render import print_show
from preflight.cli.support import FORMAT_OPTION, emit_json, load_cli_settings, open_app


@click.command()
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
        reports = [app.show(batch_id).to_dict() for batch_id in result.batch_ids]
    if output_format == "json":
        emit_json({"database_url": url, "batches": reports})
        return 0
    for report in reports:
        click.echo("\n" + "=" * 78)
        print_show(report)
    click.echo("\n" + "=" * 78)
    click.echo(f"explore: PREFLIGHT_DATABASE_URL={url} preflight show {result.batch_ids[0]}")
    return 0


@click.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> int:
    """Migrate the database in PREFLIGHT_DATABASE_URL (needed once for PostgreSQL)."""
    from preflight.services.schema import upgrade_schema

    current = upgrade_schema(load_cli_settings(), revision)
    click.echo(f"database schema at revision {current}")
    return 0


@click.command()
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
