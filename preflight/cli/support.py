"""Helpers shared by the command modules: options, JSON output, settings, the app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, BinaryIO

import click

from preflight.api import Preflight
from preflight.errors import UsageError
from preflight.logs import defer_logging
from preflight.settings import Settings, load_settings
from preflight.settings import parse_since as _parse_since

FORMAT_OPTION = click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for programs.",
)


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_json_default, ensure_ascii=False))


def load_cli_settings(*, tokens: bool = True) -> Settings:
    """Read the settings once and set up logging from them (``tokens=False``: a command
    that never calls the vendor, so a missing token secret cannot stop it). Logging is
    set up when the first event at the configured level is emitted."""
    settings = load_settings(tokens=tokens)
    defer_logging(settings.log_level, settings.log_format)
    return settings


def open_app(settings: Settings | None = None) -> Preflight:
    """The Python API object a command works through (close it, or use ``with``)."""
    return Preflight(settings or load_cli_settings())


def bounded_lines(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """The lines of ``stream``, each read with at most ``limit`` + 1 bytes in memory.

    A longer line comes out cut (so the caller sees it is too long) and nothing after
    it is read.
    """
    readline = stream.readline  # once: a click file looks the method up on every access
    while line := readline(limit + 1):
        yield line
        if len(line) > limit and not line.endswith(b"\n"):
            return


SINCE_OPTION = click.option(
    "--since", metavar="ISO8601|DURATION", help="Only newer than this time, or e.g. 24h, 7d."
)


def parse_since(value: str | None) -> datetime | None:
    """``--since`` as an aware UTC time: an ISO 8601 time, or a duration back from now."""
    if value is None:
        return None
    try:
        return _parse_since(value, "--since")
    except UsageError as error:
        raise click.BadParameter(
            str(error).removeprefix("--since: "), param_hint="--since"
        ) from None
