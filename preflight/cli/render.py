"""Text output for people: tables and the post-mortem of one batch (``--format text``).

JSON output is each result's ``to_dict()``, printed by :func:`preflight.cli.support.emit_json`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import click

from preflight.cli.support import emit_json

if TYPE_CHECKING:
    from preflight.services.results import ImportProgress

#: A table column: a key of the row's JSON form, or (header, how to get the cell).
Column = str | tuple[str, Callable[[Mapping[str, Any]], Any]]


# Verdicts and tags in colour on a terminal: green is fine, yellow needs a look, red stops.
_COLOURS = {
    "go": "green",
    "at_risk": "yellow",
    "insufficient": "red",
    "auth_failed": "red",
    "billing_blocked": "red",
    "unavailable": "red",
    "pre_existing_low_balance": "red",
    "concurrent_consumption": "yellow",
    "inconclusive": "blue",
    "continue": "green",
    "stop": "red",
}


def wants_colour(stream: TextIO | None = None) -> bool:
    """Colour only for a person: a terminal, and no ``NO_COLOR`` (https://no-color.org)."""
    stream = stream or sys.stdout
    return not os.environ.get("NO_COLOR") and stream.isatty()


def paint(word: str, *, stream: TextIO | None = None) -> str:
    """``word`` (a verdict or a tag) in its colour when a person reads ``stream``."""
    colour = _COLOURS.get(word)
    if colour is None or not wants_colour(stream):
        return word
    return click.style(word, fg=colour, bold=True)


class ImportProgressLine:
    """The one progress line a long bulk import shows on a terminal (stderr), rewritten in
    place at most a few times a second; nothing at all when stderr is not a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty()
        self._started = time.monotonic()
        self._shown_at = 0.0
        self._shown = False

    def __call__(self, progress: ImportProgress) -> None:
        now = time.monotonic()
        if not self._enabled or now - self._shown_at < 0.2:
            return
        self._shown_at, self._shown = now, True
        rate = progress.lines / max(now - self._started, 1e-9)
        click.echo(
            f"\r{progress.lines} lines, {rate:,.0f} lines/s, {progress.inserted} stored / "
            f"{progress.duplicates} duplicates",
            file=self._stream,
            nl=False,
        )

    def done(self) -> None:
        if self._shown:
            click.echo("", file=self._stream)


def print_rows(
    rows: Sequence[Mapping[str, Any]], output_format: str, columns: Sequence[Column]
) -> None:
    """A listing: JSON (each row's JSON form, all of it), or a table of ``columns``."""
    if output_format == "json":
        emit_json(list(rows))
        return
    print_table(
        [c if isinstance(c, str) else c[0] for c in columns],
        [[row[c] if isinstance(c, str) else c[1](row) for c in columns] for row in rows],
    )


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_show(data: dict[str, Any]) -> None:
    need = data["need"] or "0 (none declared)"
    verdict = paint(data["verdict"]) if data["verdict"] else "-"
    click.echo(
        f"batch {data['batch_id']}  account {data['account']}  status {data['status']}"
        f"{'' if data['verified'] else ' (unverified)'}  verdict {verdict}  "
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
        echo_failure(failure)
    if data.get("forecast"):
        echo_forecast(data["forecast"])


def echo_forecast(forecast: dict[str, Any]) -> None:
    """An open batch's projection from its account's latest stored snapshot."""
    click.echo(
        f"\nforecast (snapshot {forecast['snapshot_id']}, "
        f"{forecast['snapshot_age_seconds']} s old): "
        f"{paint(forecast['decision']) if forecast['decision'] else '-'}"
        f"{': ' + forecast['reason'] if forecast['reason'] else ''}"
    )
    dash = "-"
    click.echo(
        f"  balance {forecast['balance']}, remaining need {forecast['remaining_need'] or dash}, "
        f"others still need {forecast['outstanding_other']}, affordable jobs "
        f"{dash if forecast['affordable_jobs'] is None else forecast['affordable_jobs']}"
    )
    click.echo(
        f"  burn per minute: own {forecast['own_burn_per_minute'] or dash}, foreign "
        f"{forecast['foreign_burn_per_minute'] or dash}; minutes to empty "
        f"{forecast['minutes_to_empty'] or dash}, to finish {forecast['minutes_to_finish'] or dash}"
        f"{' (runs out first)' if forecast['runs_out_first'] else ''}"
    )


def echo_failure(failure: dict[str, Any]) -> None:
    evidence = failure["evidence"] or {}
    click.echo(
        f"\nquota failure: job {failure['job_id']} attempt {failure['attempt']} "
        f"at {failure['failed_at']} ({failure['batch_id']})"
    )
    click.echo(f"  tag       {paint(failure['tag']) if failure['tag'] else '-'}")
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
