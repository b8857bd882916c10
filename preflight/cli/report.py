"""``preflight report``: a self-contained HTML report of a batch, or of an account.

The command reads the report's data through the facade (which calls
:mod:`preflight.services.reports`), renders it with :mod:`preflight.report`, and writes
the file atomically: a report is never seen half-written.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from preflight.cli.support import open_app, parse_since
from preflight.errors import UsageError
from preflight.report.render import (
    account_file_name,
    batch_file_name,
    render_account,
    render_batch,
)


@click.command()
@click.argument("batch_id", required=False)
@click.option(
    "--account",
    metavar="ACCOUNT",
    help="Report on this account's balance over a period instead of on one batch.",
)
@click.option(
    "--since",
    metavar="ISO8601|DURATION",
    help="With --account: where the period starts, a time or e.g. 24h  [default: 7d].",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Where to write the HTML ('-': standard output)  "
    "[default: report-BATCH_ID.html, or report-account-ACCOUNT.html].",
)
def report(batch_id: str | None, account: str | None, since: str | None, output: str | None) -> int:
    """Write one self-contained HTML report of BATCH_ID, or of an --account.

    \b
    A batch: the verdict at its check, own cost against the balance drop, the
    account's balance timeline around it (every snapshot, other batches as bands,
    quota failures in their tag's colour, top-ups), where the balance went, each
    quota failure with its evidence, the outcomes and the snapshots.
    An account (--account A [--since 7d]): its balance over the period with every
    batch as a band, the audit's findings, burn rate and runway.

    The file has inline CSS and SVG, no script, and fetches nothing: it opens offline
    from a file or an attachment, follows the system's light or dark mode, and prints
    on A4. Characters of a batch id that are unsafe in a file name become '_'.
    """
    if bool(batch_id) == bool(account):
        raise click.UsageError("give either BATCH_ID or --account ACCOUNT")
    if since is not None and not account:
        raise click.UsageError("--since goes with --account")
    with open_app() as app:
        if batch_id is not None:
            html = render_batch(app.report(batch_id))
            default = batch_file_name(batch_id)
        else:
            start = parse_since(since or "7d")
            assert start is not None
            assert account is not None
            html = render_account(app.account_report(account, start))
            default = account_file_name(account)
    data = html.encode("utf-8")
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    path = Path(output or default)
    _write_atomically(path, data)
    click.echo(f"wrote {path} ({len(data)} bytes)")
    return 0


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    directory = path.parent if str(path.parent) else Path()
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as exc:
        raise UsageError(f"output: cannot write to {str(directory)!r}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise UsageError(f"output: cannot write {str(path)!r}: {exc.strerror}") from None
