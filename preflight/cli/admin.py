"""Trying out: ``demo`` and ``simulate`` (the sandbox vendor); ``db upgrade`` is
:mod:`preflight.cli.schema`."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from preflight.cli.render import print_show
from preflight.cli.support import FORMAT_OPTION, emit_json, load_cli_settings, open_app
from preflight.demo import default_demo_database, run_demo
from preflight.sandbox import DEFAULT_TOKEN, DIALECTS, VENDORS, serve_forever
from preflight.settings import parse_amount

if TYPE_CHECKING:
    from decimal import Decimal


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
    settings = load_cli_settings()
    url = database_url or default_demo_database()
    say = (lambda _line: None) if output_format == "json" else click.echo
    result = run_demo(url, say=say)
    # The demo's own database, always locally (never through PREFLIGHT_SERVER_URL).
    with open_app(replace(settings, database_url=url, server_url=None)) as app:
        reports = [app.show(batch_id).to_dict() for batch_id in result.batch_ids]
    if output_format == "json":
        emit_json({"database_url": url, "batches": reports})
        return 0
    for report in reports:
        click.echo("\n" + "=" * 78)
        print_show(report)
    click.echo("\n" + "=" * 78)
    click.echo(f"explore: PREFLIGHT_DATABASE_URL={url} {_program()} show {result.batch_ids[0]}")
    return 0


# The sandbox's vendor names: this module is imported only when `demo` or `simulate` runs.
_SIMULATED_VENDORS = VENDORS


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--vendor",
    default="default",
    show_default=True,
    type=click.Choice(_SIMULATED_VENDORS),
    help="Which vendor's API to speak.",
)
@click.option(
    "--balance",
    "balances",
    multiple=True,
    metavar="METER=AMOUNT",
    help="Starting balance of one of the vendor's meters ('none' to leave it out); repeatable.",
)
@click.option(
    "--credits",
    "credits_",
    default="1200",
    show_default=True,
    metavar="AMOUNT",
    help="Default vendor: starting credits ('none' to leave the meter out).",
)
@click.option(
    "--quota",
    default="988000",
    show_default=True,
    metavar="AMOUNT",
    help="Default vendor: starting api_quota_remaining ('none' to leave the meter out).",
)
@click.option("--token", default=None, help="Token the sandbox accepts [default: sandbox-token].")
@click.pass_context
def simulate(
    ctx: click.Context,
    host: str,
    port: int,
    vendor: str,
    balances: tuple[str, ...],
    credits_: str,
    quota: str,
    token: str | None,
) -> int:
    """Run the sandbox vendor: a vendor's API with a real balance, faults and a control API.

    \b
    Vendors (--vendor), their balance and job routes, and meters (--balance):
      default     GET|POST /api/open/v1/profile, POST /api/open/v1/jobs
                  credits, api_quota_remaining (or --credits, --quota)
      openrouter  GET /api/v1/key, GET /api/v1/credits,
                  POST /api/v1/chat/completions; limit_remaining, credits
      elevenlabs  GET /v1/user/subscription, POST /v1/text-to-speech/VOICE_ID;
                  characters (a quota failure is a 401)
      deepgram    GET /v1/projects/sandbox-project/balances, POST /v1/listen;
                  usd, hour
      deepseek    GET /user/balance, POST /chat/completions; usd, cny
      custom      GET /v2/account/balance, POST /v2/jobs; requests, wallet
                  (a quota failure is a 400)
    A job's body is {"cost": "5"} (and "meter" where a vendor has several).
    Control API: GET /_sandbox/state, POST /_sandbox/consume {"amount": "10"},
                 /_sandbox/topup, /_sandbox/balance, /_sandbox/faults, /_sandbox/shape,
                 /_sandbox/reset, and for elevenlabs /_sandbox/reset_period
    It prints how to point preflight at it: PREFLIGHT_VENDOR=NAME (other than
    default), PREFLIGHT_VENDOR_URL=http://HOST:PORT, PREFLIGHT_API_TOKEN=<token>.
    """
    meters: dict[str, object] = {}
    if vendor == "default":
        meters["credits"] = _optional_amount(credits_, "--credits")
        meters["api_quota_remaining"] = _optional_amount(quota, "--quota")
    else:
        for option, name in (("--credits", "credits_"), ("--quota", "quota")):
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                raise click.UsageError(
                    f"{option} is the default vendor's; give the {vendor} vendor's meters "
                    f"as --balance METER=AMOUNT ({', '.join(DIALECTS[vendor].meter_names)})"
                )
    for given in balances:
        meter, equals, amount = given.partition("=")
        if not equals or not meter.strip():
            raise click.BadParameter(f"{given!r} is not METER=AMOUNT", param_hint="--balance")
        meters[meter.strip()] = None if amount.strip().lower() == "none" else amount.strip()
    try:
        starting = DIALECTS[vendor].starting_meters(meters)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--balance") from None

    try:
        serve_forever(
            host=host,
            port=port,
            vendor=vendor,
            meters=starting,
            token=token or DEFAULT_TOKEN,
            how_to_connect=True,
        )
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return 0


def _optional_amount(text: str, option: str) -> Decimal | None:
    if text.strip().lower() == "none":
        return None
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _program() -> str:
    """How to run preflight again from this shell: ``preflight`` if that is what PATH finds,
    else the path this one was started by (an inactive virtual environment)."""
    started = Path(sys.argv[0]).resolve()
    on_path = shutil.which("preflight")
    if on_path and Path(on_path).resolve() == started:
        return "preflight"
    return str(started) if started.name == "preflight" else f"{sys.executable} -m preflight"
