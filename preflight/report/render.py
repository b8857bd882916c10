"""HTML reports from the report read models, with Jinja2.

Why Jinja2 and not string formatting: the page carries text from outside — batch ids,
labels, job ids, error text, vendor fields — and Jinja2's autoescaping escapes every
value by default, in one place, so that a label ``<script>…`` renders as text and no
template can forget to escape. The templates are package data
(``preflight/report/templates``), loaded with ``PackageLoader`` so that an installed
wheel finds them.

The page is self-contained: inline CSS, inline SVG, no script, and nothing fetched
from anywhere (every ``href`` is an ``#anchor`` in the page), so that it opens offline
from a file or a mail attachment, in light or dark, and prints on A4.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from hashlib import sha256
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Final

import jinja2

from preflight.domain.timeline import TimelineSnapshot
from preflight.domain.vocabulary import FindingKind, Tag
from preflight.report.chart import (
    KINDS,
    TAG_COLOURS,
    UNCLASSIFIED_COLOUR,
    Chart,
    ChartInput,
    FailureInput,
    PointInput,
    ProjectionInput,
    ShadeInput,
    build_chart,
    projection_input,
)

if TYPE_CHECKING:
    from preflight.services.results import AccountTimeline, BatchTimeline, FailureView

__all__ = ["account_file_name", "batch_file_name", "render_account", "render_batch"]

#: Colours of the drop bar's parts: own first, then other batches in turn.
OWN_COLOUR: Final = "#1f6feb"
OTHER_COLOURS: Final = ("#e67e22", "#16a085", "#c0392b", "#8e44ad", "#2c3e50", "#d4ac0d")
UNATTRIBUTED_COLOUR: Final = "#95a5a6"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Characters of an id kept in a file name. A batch id may be 500 characters, and most
#: file systems refuse a name over 255 bytes: a longer id keeps its start and ends in a
#: digest of the whole id, so that two long ids sharing a start still get two files.
_NAME_MAX: Final = 160
_DIGEST_CHARS: Final = 16


def _safe(name: str) -> str:
    """A file-name-safe form of an id: ``/``, ``:``, ``+`` and the like become ``_``."""
    safe = _UNSAFE.sub("_", name).strip("._") or "report"
    if len(safe) <= _NAME_MAX:
        return safe
    digest = sha256(name.encode()).hexdigest()[:_DIGEST_CHARS]
    return f"{safe[: _NAME_MAX - _DIGEST_CHARS - 1]}-{digest}"


def batch_file_name(batch_id: str) -> str:
    """``report-BATCH_ID.html``, safe as one file name (a batch id may hold ``/``, ``:``
    and ``+``), and short enough for any file system (at most 180 characters)."""
    return f"report-{_safe(batch_id)}.html"


def account_file_name(account: str) -> str:
    return f"report-account-{_safe(account)}.html"


# ---------------------------------------------------------------- the environment


def _amount(value: Decimal | str | None) -> str:
    if value is None:
        return "–"
    return value if isinstance(value, str) else format(value, "f")


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "–"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    text = moment.isoformat(sep=" ", timespec="milliseconds")
    return text.removesuffix("+00:00") + " UTC"


def _px(value: float) -> str:
    return f"{value:.1f}"


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("preflight.report", "templates"),
        autoescape=True,  # every value, whatever the template's name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(amount=_amount, when=_when, px=_px)
    env.globals.update(
        KINDS=KINDS,
        TAG_COLOURS=TAG_COLOURS,
        UNCLASSIFIED_COLOUR=UNCLASSIFIED_COLOUR,
        OWN_COLOUR=OWN_COLOUR,
        UNATTRIBUTED_COLOUR=UNATTRIBUTED_COLOUR,
        TAGS=[tag.value for tag in Tag],
        version=_version(),
    )
    return env


def _version() -> str:
    try:
        return version("preflight")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


# ---------------------------------------------------------------- the drop bar


@dataclass(frozen=True)
class BarPart:
    label: str
    amount: Decimal
    colour: str
    x: float  # percent of the bar
    width: float
    anchor: str | None = None
    hatched: bool = False


def _bar(parts: Sequence[tuple[str, Decimal, str, str | None, bool]]) -> list[BarPart]:
    total = sum((amount for _, amount, _, _, _ in parts), Decimal(0))
    bar: list[BarPart] = []
    x = 0.0
    for label, amount, colour, anchor, hatched in parts:
        width = float(amount / total) * 100 if total > 0 else 0.0
        bar.append(BarPart(label, amount, colour, x, width, anchor, hatched))
        x += width
    return bar


# ---------------------------------------------------------------- a batch


def _failure_title(failure: FailureView) -> str:
    return (
        f"quota failure: job {failure.job_id} attempt {failure.attempt} at "
        f"{failure.failed_at.isoformat()}: {failure.tag or 'not classified yet'}"
    )


def _chart_desc(chart: Chart, meter: str | None, extra: Sequence[str]) -> str:
    shown = (
        "all shown"
        if not chart.downsampled
        else f"{len(chart.kept)} shown: each pixel column's lowest and highest reading "
        "and every snapshot that evidence cites"
    )
    balances = [b for b in (s.balance(meter) for s in chart.kept) if b is not None]
    range_text = (
        f" Lowest {format(min(balances), 'f')}, highest {format(max(balances), 'f')}."
        if balances
        else f" No snapshot has {meter or 'a meter'}."
    )
    return (
        f"Step line of the {meter or 'unknown'} balance through {chart.total_snapshots} "
        f"snapshot(s) ({shown}).{range_text} " + " ".join(extra) + " The tables below carry "
        "the same numbers."
    )


def _projection_of(data: BatchTimeline) -> ProjectionInput | None:
    forecast = data.report.forecast
    if forecast is None or data.forecast_at is None:
        return None
    projection = forecast.forecast
    return projection_input(
        data.forecast_at,
        projection.balance,
        projection.minutes_to_empty,
        projection.minutes_to_finish,
        projection.runs_out_first,
    )


def render_batch(data: BatchTimeline) -> str:
    """The batch report as one self-contained HTML page."""
    report = data.report
    failures = list(report.quota_failures)
    anchors = {other.batch_id: f"batch-{n}" for n, other in enumerate(data.others, 1)}
    keep = set(data.cited)
    keep.update(s.id for s in report.snapshots)
    chart = build_chart(
        ChartInput(
            timeline=data.timeline,
            meter=data.meter,
            start=data.start,
            end=data.end,
            keep=keep,
            spans=data.others,
            failures=[
                FailureInput(f.failed_at, f.tag, _failure_title(f), f"failure-{n}")
                for n, f in enumerate(failures, 1)
            ],
            shades=[
                ShadeInput(
                    data.window_start,
                    data.window_end,
                    "window",
                    f"batch {report.batch.batch_id} ran from {data.window_start.isoformat()} "
                    f"to {data.window_end.isoformat()}",
                )
            ],
            rises=data.rises,
            span_anchor=anchors,
            projection=_projection_of(data),
        )
    )
    split = data.split
    bar: list[BarPart] = []
    if split is not None:
        parts: list[tuple[str, Decimal, str, str | None, bool]] = [
            (f"own ({report.batch.batch_id})", split.own, OWN_COLOUR, None, False)
        ]
        for n, other in enumerate(split.others):
            parts.append(
                (
                    other.batch_id,
                    other.cost,
                    OTHER_COLOURS[n % len(OTHER_COLOURS)],
                    anchors.get(other.batch_id),
                    False,
                )
            )
        parts.append(("unattributed", split.unattributed, UNATTRIBUTED_COLOUR, None, True))
        bar = _bar(parts)
    desc = _chart_desc(
        chart,
        data.meter,
        [
            f"{len(failures)} quota failure(s) marked in their tag's colour.",
            f"The batch's active window is shaded; {len(data.others)} other batch(es) "
            "that ran in the span are bands below the time axis.",
            f"{len(data.rises)} top-up(s).",
        ],
    )
    return (
        environment()
        .get_template("batch.html.j2")
        .render(
            data=data,
            report=report,
            batch=report.batch,
            failures=failures,
            chart=chart,
            chart_title=(
                f"Balance of account {report.batch.account} on {data.meter or 'no meter'} "
                f"around batch {report.batch.batch_id}"
            ),
            chart_desc=desc,
            split=split,
            bar=bar,
            anchors=anchors,
            rows=_rows(chart.kept, data.meter, keep),
            drawn={s.id for s in chart.kept},
            tag_counts=data.tag_counts,
        )
    )


# ---------------------------------------------------------------- an account


def render_account(data: AccountTimeline) -> str:
    """The account report as one self-contained HTML page."""
    anchors = {span.batch_id: f"batch-{n}" for n, span in enumerate(data.batches, 1)}
    finding_anchor = {f.id: f"finding-{f.id}" for f in data.findings}
    unexplained = [f for f in data.findings if f.kind == FindingKind.UNEXPLAINED_CONSUMPTION]
    low = [f for f in data.findings if f.kind == FindingKind.LOW_BALANCE]
    keep = data.cited
    chart = build_chart(
        ChartInput(
            timeline=data.timeline,
            meter=data.meter,
            start=data.start,
            end=data.end,
            keep=keep,
            spans=data.batches,
            failures=[
                FailureInput(f.failed_at, f.tag, _failure_title(f), f"failure-{n}")
                for n, f in enumerate(data.failures, 1)
            ],
            shades=[
                ShadeInput(
                    f.window_start,
                    f.window_end,
                    "unexplained",
                    f"unexplained consumption {_amount(f.amount)} "
                    f"{f.detail.get('meter', '')} from {f.window_start.isoformat()} to "
                    f"{f.window_end.isoformat()}",
                    finding_anchor[f.id],
                )
                for f in unexplained
            ],
            points=[
                PointInput(
                    f.window_end,
                    f.amount if f.detail.get("meter") in (None, data.meter) else None,
                    "low",
                    f"low balance {_amount(f.amount)} at {f.window_end.isoformat()}: "
                    + "; ".join(str(r) for r in f.detail.get("reasons", [])),
                    finding_anchor[f.id],
                )
                for f in low
            ],
            rises=data.rises,
            span_anchor=anchors,
        )
    )
    desc = _chart_desc(
        chart,
        data.meter,
        [
            f"{len(data.batches)} batch(es) as bands below the time axis;",
            f"{len(unexplained)} unexplained-consumption finding(s) shaded;",
            f"{len(low)} low-balance finding(s) marked;",
            f"{len(data.failures)} quota failure(s) marked in their tag's colour.",
        ],
    )
    return (
        environment()
        .get_template("account.html.j2")
        .render(
            data=data,
            chart=chart,
            chart_title=(
                f"Balance of account {data.account} on {data.meter or 'no meter'} from "
                f"{data.start.isoformat()} to {data.end.isoformat()}"
            ),
            chart_desc=desc,
            anchors=anchors,
            finding_anchor=finding_anchor,
            failures=data.failures,
            rows=_rows(chart.kept, data.meter, keep),
            drawn={s.id for s in chart.kept},
        )
    )


@dataclass(frozen=True)
class Row:
    snapshot: TimelineSnapshot
    balance: Decimal | None
    cited: bool


def _rows(kept: Sequence[TimelineSnapshot], meter: str | None, cited: set[int]) -> list[Row]:
    return [Row(s, s.balance(meter), s.id in cited) for s in kept]
