"""The report's HTML, parsed: one marker per snapshot (or the downsampled count), one
per quota failure in its tag's colour, one band per other batch, a chart with a title
and a description, every link an anchor that exists in the page, and outside text
escaped. Built from read models in memory: no database, no browser."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from preflight.domain.batch import BATCH_ID_PATTERN
from preflight.domain.classify import Attributed, Reading
from preflight.domain.timeline import BatchSpan, DropSplit, TimelineSnapshot, rises
from preflight.report.chart import TAG_COLOURS
from preflight.report.render import batch_file_name, render_account, render_batch
from preflight.services.results import (
    AccountTimeline,
    BatchReport,
    BatchTimeline,
    BatchView,
    FailureView,
    FindingView,
    OutcomeTotals,
    SnapshotView,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"


class Page(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if a.get("id")}

    def links(self) -> list[str]:
        return [
            value
            for _, attrs in self.tags
            for name, value in attrs.items()
            if name in ("href", "src", "xlink:href", "action", "srcset", "poster") and value
        ]


def chart_svg(html: str) -> ET.Element:
    """The chart's inline SVG, parsed as XML."""
    match = re.search(r'<svg class="chart".*?</svg>', html, re.DOTALL)
    assert match is not None
    return ET.fromstring(match.group(0))


def by_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(tag) if cls in (e.get("class") or "").split()]


def snap(n: int, kind: str, credits: str | None, *, batch: str | None = None) -> TimelineSnapshot:
    return TimelineSnapshot(
        n, T0 + timedelta(minutes=n), kind, Decimal(credits) if credits else None, None, batch
    )


def failure(job: str, minute: int, tag: str, ids: Sequence[int]) -> FailureView:
    return FailureView(
        batch_id="B/2026:1",
        job_id=job,
        attempt=1,
        failed_at=T0 + timedelta(minutes=minute),
        http_status=402,
        error=HOSTILE,
        tag=tag,
        reason=f"reason of {job}",
        evidence={"b0": "100", "ba": "0", "own": "60", "snapshot_ids": list(ids)},
        attribution=(Attributed("Y", Decimal("30")),),
        unattributed=Decimal("10"),
        classifier_version="2",
        classified_at=T0,
    )


def batch_timeline(timeline: Sequence[TimelineSnapshot], job: str = "j<b>2</b>") -> BatchTimeline:
    batch = BatchView(
        batch_id="B/2026:1",
        account="default",
        status="finished",
        verdict="go",
        verified=True,
        meter="credits",
        need=Decimal("50"),
        reserve=Decimal(0),
        labels={"owner": HOSTILE},
        created_at=T0,
        checked_at=T0,
        finished_at=timeline[-1].taken_at,
    )
    failures = [
        failure(job, 3, "pre_existing_low_balance", [1, 3]),
        failure("j3", 6, "concurrent_consumption", [1, 3, 5, 6]),
    ]
    report = BatchReport(
        batch=batch,
        snapshots=[
            SnapshotView(s.id, s.kind, s.taken_at, s.credits, None, s.credits)
            for s in timeline
            if s.batch_id == "B/2026:1"
        ],
        outcomes=OutcomeTotals(3, 1, 2, 2, 0, Decimal("60")),
        late_outcomes=[],
        quota_failures=failures,
    )
    start, end = timeline[0], timeline[-1]
    split = DropSplit(
        meter="credits",
        start=Reading(1, start.taken_at, Decimal("100"), "preflight"),
        end=Reading(end.id, end.taken_at, Decimal("0"), "finish"),
        own=Decimal("60"),
        foreign=Decimal("40"),
        foreign_is_lower_bound=False,
        others=(Attributed("Y", Decimal("30")),),
        unattributed=Decimal("10"),
        attributed_exceeds_measured=False,
        topups=(),
    )
    return BatchTimeline(
        report=report,
        meter="credits",
        start=timeline[0].taken_at,
        end=timeline[-1].taken_at,
        window_start=timeline[0].taken_at,
        window_end=timeline[-1].taken_at,
        timeline=timeline,
        others=[
            BatchSpan("Y", T0, T0 + timedelta(minutes=4), "finished", "credits", Decimal("30")),
            BatchSpan("Z", T0 + timedelta(minutes=2), T0 + timedelta(minutes=9), "open", None),
        ],
        split=split,
        rises=rises(timeline, "credits"),
        generated_at=T0 + timedelta(hours=1),
    )


SMALL = [
    snap(1, "preflight", "100", batch="B/2026:1"),
    snap(2, "audit", "90"),
    snap(3, "failure", "0", batch="B/2026:1"),
    snap(4, "manual", "50"),  # a top-up
    snap(5, "recheck", None, batch="B/2026:1"),  # credits absent
    snap(6, "failure", "10", batch="B/2026:1"),
    snap(7, "finish", "0", batch="B/2026:1"),
]


def test_one_marker_per_snapshot_failure_and_band_with_an_accessible_chart() -> None:
    html = render_batch(batch_timeline(SMALL))
    svg = chart_svg(html)
    markers = by_class(svg, "use", "snap")
    assert [m.get("data-snapshot") for m in markers] == [str(s.id) for s in SMALL]
    assert [m.get("class") for m in markers][4] == "snap recheck absent"

    failures = by_class(svg, "path", "failure-marker")
    assert [(f.get("data-tag"), f.get("fill")) for f in failures] == [
        ("pre_existing_low_balance", TAG_COLOURS["pre_existing_low_balance"]),
        ("concurrent_consumption", TAG_COLOURS["concurrent_consumption"]),
    ]
    assert len({f.get("fill") for f in failures}) == 2

    bands = by_class(svg, "g", "band-item")
    assert sorted(b.get("data-batch") for b in bands) == ["Y", "Z"]
    assert len(by_class(svg, "path", "topup")) == 1
    assert len(by_class(svg, "rect", "window")) == 1

    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "chart-title chart-desc"
    title, desc = svg.find("title"), svg.find("desc")
    assert title is not None
    assert desc is not None
    assert "B/2026:1" in (title.text or "")
    assert "through 7 snapshot(s) (all shown)" in (desc.text or "")

    # The tables carry the same numbers: a row per snapshot drawn.
    page = Page(html)
    rows = [a["id"] for t, a in page.tags if t == "tr" and (a.get("id") or "").startswith("snap")]
    assert rows == [f"snapshot-{s.id}" for s in SMALL]


def test_self_contained_every_link_an_anchor_in_the_page() -> None:
    html = render_batch(batch_timeline(SMALL))
    page = Page(html)
    links = page.links()
    assert links
    for link in links:
        assert link.startswith(("#", "data:")), link
        if link.startswith("#"):
            assert link[1:] in page.ids, link
    assert not [t for t, _ in page.tags if t in ("script", "img", "iframe", "link", "object")]
    assert "@import" not in html
    assert "url(" not in html
    assert "@page { size: A4; margin: 14mm 12mm; }" in html
    assert "@media (prefers-color-scheme: dark)" in html


def test_outside_text_is_escaped() -> None:
    html = render_batch(batch_timeline(SMALL))
    page = Page(html)
    assert "script" not in {t for t, _ in page.tags}
    assert "b" not in {t for t, _ in page.tags}  # the job id's <b> is text
    assert f"owner={HOSTILE}" in "".join(page.text)
    assert "j<b>2</b>" in "".join(page.text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_drop_bar_and_its_table_split_own_others_unattributed() -> None:
    html = render_batch(batch_timeline(SMALL))
    bar = re.search(r'<svg class="bar".*?</svg>', html, re.DOTALL)
    assert bar is not None
    parts = ET.fromstring(bar.group(0)).findall("rect")
    assert [p.findtext("title") for p in parts] == [
        "own (B/2026:1): 60",
        "Y: 30",
        "unattributed: 10",
    ]
    assert [p.get("width") for p in parts] == ["60.000", "30.000", "10.000"]


def test_a_safe_file_name_for_any_batch_id() -> None:
    assert batch_file_name("nightly/2026-11-24:eu") == "report-nightly_2026-11-24_eu.html"
    assert batch_file_name("..") == "report-report.html"
    assert (
        batch_file_name("my_dag/manual__2026-12-07T00:35:27.935842+00:00")
        == "report-my_dag_manual__2026-12-07T00_35_27.935842_00_00.html"
    )


def test_two_500_character_ids_sharing_their_start_get_two_short_file_names() -> None:
    first, second = "d" * 250 + "/" + "a" * 249, "d" * 250 + "/" + "b" * 249
    names = batch_file_name(first), batch_file_name(second)
    assert names[0] != names[1]
    assert all(len(name.encode()) <= 180 and name.startswith("report-ddd") for name in names)


@given(st.from_regex(BATCH_ID_PATTERN, fullmatch=True))
def test_every_valid_batch_id_gets_one_safe_short_file_name(batch_id: str) -> None:
    name = batch_file_name(batch_id)
    assert re.fullmatch(r"report-[A-Za-z0-9._-]+\.html", name), name
    assert len(name.encode()) <= 180


def test_100000_snapshots_are_downsampled_under_2_mb() -> None:
    timeline = [
        TimelineSnapshot(
            n,
            T0 + timedelta(seconds=n),
            "audit" if n % 100 else "manual",
            Decimal(1_000_000 - n * 7 + (n % 13) * 5) if n % 977 else None,
            Decimal(5),
            None,
        )
        for n in range(1, 100_001)
    ]
    timeline[0] = snap(1, "preflight", "1000000", batch="B/2026:1")
    data = batch_timeline(timeline)
    cited = {1, 3, 6}  # the walks' ends: b0's and ba's snapshots
    html = render_batch(data)
    assert len(html.encode()) < 2_000_000
    svg = chart_svg(html)
    markers = [int(m.get("data-snapshot") or 0) for m in by_class(svg, "use", "snap")]
    columns = 960 - 84 - 16
    # Each pixel column keeps its min and max (and one reading without the meter); plus
    # the first, the last and every cited snapshot.
    assert len(markers) <= 3 * columns + 2 + len(cited)
    assert len(markers) > columns
    assert cited <= set(markers)
    assert {1, 100_000} <= set(markers)
    assert markers == sorted(markers)
    assert f"100000 snapshots in the span; the chart and the table show {len(markers)}" in (
        " ".join(html.split())
    )
    rows = re.findall(r'<tr id="snapshot-(\d+)"', html)
    assert [int(r) for r in rows] == markers


def test_the_account_report_shades_unexplained_consumption_and_marks_low_balance() -> None:
    timeline = [snap(n, "audit", str(100 - n * 10)) for n in range(1, 8)]
    finding: dict[str, Any] = {
        "account": "default",
        "batches": ("Y",),
        "audit_run_id": 1,
        "created_at": T0,
    }
    findings = [
        FindingView(
            id=1,
            kind="unexplained_consumption",
            amount=Decimal("10"),
            window_start=timeline[1].taken_at,
            window_end=timeline[2].taken_at,
            detail={"meter": "credits", "snapshot_ids": [2, 3], "drop": "10"},
            **finding,
        ),
        FindingView(
            id=2,
            kind="low_balance",
            amount=Decimal("30"),
            window_start=timeline[0].taken_at,
            window_end=timeline[6].taken_at,
            detail={"meter": "credits", "snapshot_id": 7, "reasons": [HOSTILE]},
            **finding,
        ),
    ]
    data = AccountTimeline(
        account="default",
        meter="credits",
        start=T0,
        end=T0 + timedelta(minutes=10),
        timeline=timeline,
        batches=[BatchSpan("Y", T0, T0 + timedelta(minutes=3), "finished", "credits")],
        findings=findings,
        failures=[failure("j1", 4, "inconclusive", [1, 2])],
        burn=None,
        rises=[],
        generated_at=T0 + timedelta(minutes=10),
    )
    html = render_account(data)
    svg = chart_svg(html)
    assert len(by_class(svg, "use", "snap")) == 7
    assert len(by_class(svg, "rect", "unexplained")) == 1
    assert len(by_class(svg, "path", "low")) == 1
    assert [b.get("data-batch") for b in by_class(svg, "g", "band-item")] == ["Y"]
    assert [f.get("fill") for f in by_class(svg, "path", "failure-marker")] == [
        TAG_COLOURS["inconclusive"]
    ]
    page = Page(html)
    assert "script" not in {t for t, _ in page.tags}
    for link in page.links():
        assert link.startswith("#"), link
        assert link[1:] in page.ids, link


# ---------------------------------------------------------------- an open batch's forecast


def forecast_timeline(minutes_to_empty: str, minutes_to_finish: str | None) -> BatchTimeline:
    """The issue's example as stored: 200 at the check, 40 four minutes later."""
    from dataclasses import replace

    from preflight.domain.forecast import Decision, Forecast
    from preflight.services.results import ForecastView

    timeline = [snap(0, "preflight", "200", batch="B/2026:1"), snap(4, "recheck", "40")]
    base = batch_timeline(timeline)
    view = ForecastView(
        decision=Decision.STOP,
        reason="balance 40 is below the remaining need 60",
        forecast=Forecast(
            balance=Decimal(40),
            remaining_need=Decimal(60),
            affordable_jobs=4,
            own_burn_per_minute=Decimal(10),
            foreign_burn_per_minute=Decimal(30),
            minutes_to_empty=Decimal(minutes_to_empty),
            minutes_to_finish=None if minutes_to_finish is None else Decimal(minutes_to_finish),
            runs_out_first=minutes_to_finish is not None
            and Decimal(minutes_to_empty) < Decimal(minutes_to_finish),
        ),
        outstanding_other=Decimal(0),
        snapshot_id=4,
        snapshot_age_seconds=0,
    )
    report = replace(base.report, forecast=view, batch=replace(base.report.batch, status="open"))
    return replace(base, report=report, split=None, forecast_at=timeline[-1].taken_at)


def test_the_projection_is_a_dashed_line_to_empty_with_the_finish_marked() -> None:
    html = render_batch(forecast_timeline("1", "6"))
    svg = chart_svg(html)
    [line] = by_class(svg, "line", "projection-line")
    assert line.get("stroke-dasharray") == "6 4"
    [marker] = by_class(svg, "path", "projected-finish")
    # From the last snapshot (minute 4, balance 40) down to zero one minute later; the
    # finish (minute 10) after it, on zero, and the chart reaches it.
    x1, y1, x2, y2 = (float(line.get(k) or "nan") for k in ("x1", "y1", "x2", "y2"))
    assert x2 > x1
    assert y2 > y1  # down to zero
    finish_x = float(re.findall(r"M([0-9.]+) ", marker.get("d") or "")[0])
    assert finish_x > x2
    title = marker.find("title")
    assert title is not None
    assert "after the balance runs out" in (title.text or "")
    page = Page(html)
    assert "forecast" in page.ids
    assert "runs out first" in "".join(page.text)


def test_a_finish_before_empty_sits_on_the_line() -> None:
    svg = chart_svg(render_batch(forecast_timeline("6", "1.5")))
    [line] = by_class(svg, "line", "projection-line")
    [marker] = by_class(svg, "path", "projected-finish")
    x1, y1, x2, y2 = (float(line.get(k) or "nan") for k in ("x1", "y1", "x2", "y2"))
    fx, fy_top = (float(v) for v in re.findall(r"M([0-9.]+) ([0-9.]+)", marker.get("d") or "")[0])
    # A quarter of the way along the line (1.5 of 6 minutes).
    assert abs(fx - (x1 + (x2 - x1) / 4)) < 0.1
    assert abs(fy_top + 7 - (y1 + (y2 - y1) / 4)) < 0.1


def test_no_projection_for_a_finished_batch() -> None:
    svg = chart_svg(render_batch(batch_timeline(SMALL)))
    assert by_class(svg, "line", "projection-line") == []
