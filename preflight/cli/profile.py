"""``profile show`` and ``profile update``: the vendor profile, kept apart from batch work."""

from __future__ import annotations

import click

from preflight.cli.support import FORMAT_OPTION, emit_json, open_app


@click.group()
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
        for key in ("account", "user_id", "tier"):
            click.echo(f"{key:<20} {data[key] if data[key] is not None else '-'}")
        # The vendor's meters, in its order (the first vendor's: credits, api_quota_remaining).
        meters = data.get("meters") or {
            key: data[key] for key in ("credits", "api_quota_remaining")
        }
        for key, value in meters.items():
            click.echo(f"{key:<20} {value if value is not None else '-'}")
        click.echo(f"{'snapshot':<20} {reading.snapshot_id} at {reading.taken_at.isoformat()}")
        click.echo(f"{'raw':<20} {reading.raw}")
    return 0


@profile.command("update")
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
    with open_app() as app:
        updated = app.update_profile(webhook_url, account=account, allow_http=allow_http)
    if output_format == "json":
        emit_json(updated.to_dict())
    else:
        click.echo(f"{updated.account}: webhookUrl updated")
    return 0
