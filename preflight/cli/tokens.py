"""``preflight token create | list | revoke``: the HTTP API's own bearer tokens.

They always act on the local database (PREFLIGHT_DATABASE_URL), never through a server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from preflight.cli.render import print_rows
from preflight.cli.support import FORMAT_OPTION, emit_json, load_cli_settings
from preflight.domain.tokens import SCOPES
from preflight.services.runtime import Runtime
from preflight.services.tokens import create_token, list_tokens, revoke_token


@contextmanager
def _runtime() -> Iterator[Runtime]:
    with Runtime(load_cli_settings(tokens=False)) as rt:
        yield rt


@click.group()
def token() -> None:
    """Bearer tokens of the HTTP API (`preflight serve`): only their SHA-256 is stored."""


@token.command("create")
@click.option("--name", required=True, help="A name to list and revoke it by.")
@click.option(
    "--scope",
    "scopes",
    required=True,
    metavar="SCOPE[,SCOPE...]",
    help=f"What it may do: {', '.join(SCOPES)} (admin: everything).",
)
@FORMAT_OPTION
def create(name: str, scopes: str, output_format: str) -> int:
    """Create a token and print it once: it cannot be shown again."""
    with _runtime() as rt:
        created = create_token(rt, name, scopes)
    secret = created.token.reveal()
    if output_format == "json":
        emit_json({**created.view.to_dict(), "token": secret})
    else:
        click.echo(secret)
        click.echo(
            f"preflight: token {name!r} ({', '.join(created.view.scopes)}) created; "
            "it is shown only this once",
            err=True,
        )
    return 0


@token.command("list")
@FORMAT_OPTION
def list_command(output_format: str) -> int:
    """Tokens by name, with their scopes and whether they are revoked (never the token)."""
    with _runtime() as rt:
        rows = [view.to_dict() for view in list_tokens(rt)]
    print_rows(
        rows,
        output_format,
        [
            "id",
            "name",
            ("scopes", lambda r: ",".join(r["scopes"])),
            "created_at",
            "revoked_at",
        ],
    )
    return 0


@token.command("revoke")
@click.argument("name")
@FORMAT_OPTION
def revoke(name: str, output_format: str) -> int:
    """Revoke the token NAME: the server refuses it (401) from the next request on."""
    with _runtime() as rt:
        view = revoke_token(rt, name)
    if output_format == "json":
        emit_json(view.to_dict())
    else:
        click.echo(f"token {name!r} revoked at {view.to_dict()['revoked_at']}")
    return 0
