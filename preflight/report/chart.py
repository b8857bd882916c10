"""The balance chart's geometry: scales, ticks, the step path, downsampling, lanes.

Pure: it takes the timeline and the things to mark, and returns numbers and labels that
the template draws as inline SVG. Amounts stay ``Decimal`` until here; pixel positions
are the only floats, and labels are exact decimal text.

Downsampling keeps the picture honest at any size: over ``2 × columns`` readings, each
pixel column keeps its lowest and highest reading (so every dip and peak still shows),
the first and the last reading are kept, and so is every snapshot that evidence cites
(so every link from a quota failure to its snapshots lands on a marker and a row).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Final

from preflight.domain.exact import exact
from preflight.domain.timeline import BatchSpan, Rise, TimelineSnapshot
from preflight.domain.vocabulary import SnapshotKind, Tag

WIDTH: Final = 960
PLOT_LEFT: Final = 84
PLOT_RIGHT: Final = 16
PLOT_TOP: Final = 26
PLOT_HEIGHT: Final = 280
AXIS_HEIGHT: Final = 34
LANE_HEIGHT: Final = 18
LABEL_CHAR: Final = 6.6  # px per character of an 11px label, generously
MAX_LABEL: Final = 40

#: Quota failures by tag: readable on a light and on a dark background alike.
TAG_COLOURS: Final = {
    Tag.PRE_EXISTING_LOW_BALANCE.value: "#d1495b",
    Tag.CONCURRENT_CONSUMPTION.value: "#8e44ad",
    Tag.INCONCLUSIVE.value: "#7f8c8d",
}
UNCLASSIFIED_COLOUR: Final = "#7f8c8d"
KINDS: Final = tuple(kind.value for kind in SnapshotKind)


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height


@dataclass(frozen=True)
class TimeScale:
    start: datetime
    end: datetime
    box: Box

    def x(self, at: datetime) -> float:
        span = (self.end - self.start).total_seconds()
        offset = (at - self.start).total_seconds()
        return self.box.x + self.box.width * (offset / span if span > 0 else 0.5)

    def clamp(self, at: datetime) -> float:
        return min(max(self.x(at), self.box.x), self.box.right)


@dataclass(frozen=True)
class ValueScale:
    low: Decimal
    high: Decimal
    box: Box

    def y(self, value: Decimal) -> float:
        span = float(self.high - self.low)
        share = float(value - self.low) / span if span > 0 else 0.5
        return self.box.bottom - self.box.height * share


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Marker:
    """One snapshot on the chart (``absent``: it lacks the meter, drawn on the axis)."""

    snapshot_id: int
    kind: str
    x: float
    y: float
    title: str
    absent: bool = False


@dataclass(frozen=True)
class FailureMark:
    """A quota failure: a dashed rule at its time ``x``, and a marker at ``marker_x``
    (moved aside when failures close together would hide each other)."""

    x: float
    tag: str
    colour: str
    title: str
    anchor: str
    marker_x: float


@dataclass(frozen=True)
class Band:
    """A batch that ran in the window, in its lane below the plot."""

    batch_id: str
    x: float
    width: float
    lane: int
    label: str
    label_x: float
    title: str
    anchor: str | None = None


@dataclass(frozen=True)
class Shade:
    """A shaded stretch of the plot: the batch's window, or unexplained consumption."""

    x: float
    width: float
    kind: str
    title: str
    anchor: str | None = None


@dataclass(frozen=True)
class Point:
    """A marked point that is not a snapshot: a top-up, a low-balance finding."""

    x: float
    y: float
    kind: str
    title: str
    anchor: str | None = None


@dataclass(frozen=True)
class Projection:
    """The forecast drawn as a dashed line from the last snapshot to the projected empty
    time, and the batch's projected finish marked (on the line, or at zero after it)."""

    x1: float
    y1: float
    x2: float
    y2: float
    title: str
    finish_x: float | None = None
    finish_y: float | None = None
    finish_title: str | None = None


@dataclass(frozen=True)
class ProjectionInput:
    at: datetime
    balance: Decimal
    empty_at: datetime
    finish_at: datetime | None
    runs_out_first: bool


def projection_input(
    at: datetime,
    balance: Decimal,
    minutes_to_empty: Decimal | None,
    minutes_to_finish: Decimal | None,
    runs_out_first: bool,
) -> ProjectionInput | None:
    """Where the forecast from the snapshot at ``at`` empties and finishes (None: nothing
    burns, so there is nothing to project)."""
    if minutes_to_empty is None:
        return None

    def after(minutes: Decimal) -> datetime:
        return at + timedelta(microseconds=int(minutes * 60_000_000))

    finish = after(minutes_to_finish) if minutes_to_finish is not None else None
    return ProjectionInput(at, balance, after(minutes_to_empty), finish, runs_out_first)


@dataclass(frozen=True)
class Chart:
    """Everything the SVG template draws, already positioned."""

    width: int
    height: int
    plot: Box
    lanes_top: float
    path: str
    markers: tuple[Marker, ...]
    failures: tuple[FailureMark, ...]
    bands: tuple[Band, ...]
    shades: tuple[Shade, ...]
    points: tuple[Point, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    axis_caption: str
    total_snapshots: int
    kept: tuple[TimelineSnapshot, ...]  # the snapshots drawn, in time order
    lane_count: int = 0
    lane_height: int = LANE_HEIGHT
    projection: Projection | None = None

    @property
    def downsampled(self) -> bool:
        return len(self.kept) < self.total_snapshots


@dataclass(frozen=True)
class FailureInput:
    at: datetime
    tag: str | None
    title: str
    anchor: str


@dataclass(frozen=True)
class ShadeInput:
    start: datetime
    end: datetime
    kind: str
    title: str
    anchor: str | None = None


@dataclass(frozen=True)
class PointInput:
    at: datetime
    value: Decimal | None
    kind: str
    title: str
    anchor: str | None = None


@dataclass(frozen=True)
class ChartInput:
    timeline: Sequence[TimelineSnapshot]
    meter: str | None
    start: datetime
    end: datetime
    keep: Collection[int] = ()
    spans: Sequence[BatchSpan] = ()
    failures: Sequence[FailureInput] = ()
    shades: Sequence[ShadeInput] = ()
    points: Sequence[PointInput] = ()
    rises: Sequence[Rise] = ()
    span_anchor: dict[str, str] = field(default_factory=dict)
    projection: ProjectionInput | None = None


# ---------------------------------------------------------------- scales and ticks


@exact
def nice_ticks(low: Decimal, high: Decimal, count: int = 5) -> list[Decimal]:
    """Round tick values (1, 2 or 5 × 10^k apart) covering [low, high]."""
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(high) / 10 if high else Decimal(1)
        low, high = low - pad, high + pad
    raw = (high - low) / count
    base = Decimal(1).scaleb(raw.adjusted())
    step = next(base * m for m in (1, 2, 5, 10) if base * m >= raw)
    first = (low / step).to_integral_value(rounding=ROUND_FLOOR) * step
    last = (high / step).to_integral_value(rounding=ROUND_CEILING) * step
    ticks: list[Decimal] = []
    value = first
    while value <= last:
        ticks.append(value.normalize() if value else Decimal(0))
        value += step
    return ticks


def value_range(values: Iterable[Decimal]) -> tuple[Decimal, Decimal]:
    """The balances' range, from 0 when the lowest is under half the highest (an honest
    baseline), else zoomed in so that a small drop on a large balance still shows."""
    found = list(values)
    if not found:
        return Decimal(0), Decimal(1)
    low, high = min(found), max(found)
    if Decimal(0) <= low <= high / 2:
        low = Decimal(0)
    return low, high


def time_label(at: datetime, span: timedelta) -> str:
    if span < timedelta(minutes=1):
        return at.strftime("%H:%M:%S.%f")[:-3]
    if span < timedelta(hours=1):
        return at.strftime("%H:%M:%S")
    if span < timedelta(days=2):
        return at.strftime("%H:%M")
    return at.strftime("%m-%d %H:%M")


def time_ticks(scale: TimeScale, count: int = 6) -> list[Tick]:
    span = scale.end - scale.start
    ticks = []
    for i in range(count):
        at = scale.start + span * i / (count - 1)
        ticks.append(Tick(scale.x(at), time_label(at, span)))
    return ticks


def axis_caption(start: datetime, end: datetime) -> str:
    first, last = start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")
    return f"time (UTC), {first}" if first == last else f"time (UTC), {first} to {last}"


# ---------------------------------------------------------------- downsampling and path


def downsample(
    timeline: Sequence[TimelineSnapshot],
    meter: str | None,
    scale: TimeScale,
    keep: Collection[int] = (),
) -> list[TimelineSnapshot]:
    """The snapshots to draw, in time order (see the module docstring). Readings without
    the meter keep one per pixel column."""
    columns = max(int(scale.box.width), 1)
    if len(timeline) <= 2 * columns:
        return list(timeline)
    wanted = set(keep)
    chosen: set[int] = {0, len(timeline) - 1}
    low: dict[int, tuple[Decimal, int]] = {}
    high: dict[int, tuple[Decimal, int]] = {}
    absent: dict[int, int] = {}
    left, width = scale.box.x, scale.box.width
    for index, snapshot in enumerate(timeline):
        if snapshot.id in wanted:
            chosen.add(index)
        offset = (scale.x(snapshot.taken_at) - left) / width
        column = min(max(int(offset * columns), 0), columns - 1)
        balance = snapshot.balance(meter)
        if balance is None:
            absent.setdefault(column, index)
            continue
        if column not in low or balance < low[column][0]:
            low[column] = (balance, index)
        if column not in high or balance > high[column][0]:
            high[column] = (balance, index)
    chosen.update(index for _, index in low.values())
    chosen.update(index for _, index in high.values())
    chosen.update(absent.values())
    return [timeline[index] for index in sorted(chosen)]


def step_path(points: Sequence[tuple[float, float]]) -> str:
    """An SVG path that holds each reading until the next one (then steps to it)."""
    if not points:
        return ""
    (x0, y0), *rest = points
    parts = [f"M{x0:.1f} {y0:.1f}"]
    for x, y in rest:
        parts.append(f"H{x:.1f}V{y:.1f}")
    return "".join(parts)


# ---------------------------------------------------------------- lanes and markers


FAILURE_MARKER_WIDTH: Final = 16.0


def dodge(marks: Sequence[FailureMark], plot: Box) -> tuple[FailureMark, ...]:
    """Failure markers side by side where they would overlap (in time order), kept
    within the plot; each one's rule stays at its own time."""
    ordered = sorted(marks, key=lambda m: m.x)
    if len(ordered) * FAILURE_MARKER_WIDTH > plot.width:
        return tuple(ordered)  # too many to set side by side: each at its own time
    placed: list[float] = []
    for mark in ordered:
        placed.append(max(mark.x, placed[-1] + FAILURE_MARKER_WIDTH) if placed else mark.x)
    limit = plot.right
    for index in range(len(placed) - 1, -1, -1):
        placed[index] = min(placed[index], limit)
        limit = placed[index] - FAILURE_MARKER_WIDTH
    return tuple(replace(m, marker_x=x) for m, x in zip(ordered, placed, strict=True))


def pack_lanes(
    spans: Sequence[BatchSpan], scale: TimeScale, anchors: dict[str, str] | None = None
) -> list[Band]:
    """Each batch in the first lane where neither its band nor its label overlaps another."""
    bands: list[Band] = []
    lane_ends: list[float] = []
    for span in sorted(spans, key=lambda s: (s.start, s.batch_id)):
        x0 = scale.clamp(span.start)
        x1 = max(scale.clamp(span.end), x0 + 3)
        label = span.batch_id if len(span.batch_id) <= MAX_LABEL else span.batch_id[:39] + "…"
        label_width = len(label) * LABEL_CHAR + 6
        inside = x1 - x0 >= label_width
        label_x = x0 + 3 if inside else x1 + 3
        if not inside and label_x + label_width > scale.box.right:
            label_x = max(x0 - label_width, scale.box.x)
        occupied_from = min(x0, label_x)
        occupied_to = max(x1, label_x + label_width) + 4
        lane = next((i for i, end in enumerate(lane_ends) if end <= occupied_from), None)
        if lane is None:
            lane = len(lane_ends)
            lane_ends.append(occupied_to)
        else:
            lane_ends[lane] = occupied_to
        title = (
            f"batch {span.batch_id} ({span.status}"
            f"{', ' + span.meter if span.meter else ''}): {span.start.isoformat()} to "
            f"{span.end.isoformat()}, consumed {format(span.cost, 'f')} in the window"
        )
        bands.append(
            Band(
                batch_id=span.batch_id,
                x=x0,
                width=x1 - x0,
                lane=lane,
                label=label,
                label_x=label_x,
                title=title,
                anchor=(anchors or {}).get(span.batch_id),
            )
        )
    return bands


# ---------------------------------------------------------------- the chart


def _snapshot_title(snapshot: TimelineSnapshot, meter: str | None) -> str:
    balance = snapshot.balance(meter)
    value = f"{meter} {format(balance, 'f')}" if balance is not None else f"no {meter or 'meter'}"
    by = f" · batch {snapshot.batch_id}" if snapshot.batch_id else ""
    at = snapshot.taken_at.isoformat()
    return f"snapshot {snapshot.id} · {snapshot.kind}{by} · {at} · {value}"


def build_chart(data: ChartInput) -> Chart:
    """Position everything: the step line and its markers, failures, bands, shades."""
    start, end = data.start, data.end
    projected = data.projection
    if projected is not None:
        end = max(
            [end, projected.empty_at, *([projected.finish_at] if projected.finish_at else [])]
        )
    if end <= start:
        start, end = start - timedelta(seconds=1), end + timedelta(seconds=1)
    plot = Box(PLOT_LEFT, PLOT_TOP, WIDTH - PLOT_LEFT - PLOT_RIGHT, PLOT_HEIGHT)
    xs = TimeScale(start, end, plot)
    low, high = value_range(
        b for b in (s.balance(data.meter) for s in data.timeline) if b is not None
    )
    for item in data.points:
        if item.value is not None:
            low, high = min(low, item.value), max(high, item.value)
    if projected is not None:
        low, high = min(low, Decimal(0)), max(high, projected.balance)
    y_values = nice_ticks(low, high)
    ys = ValueScale(y_values[0], y_values[-1], plot)

    kept = downsample(data.timeline, data.meter, xs, data.keep)
    markers: list[Marker] = []
    line: list[tuple[float, float]] = []
    for snapshot in kept:
        balance = snapshot.balance(data.meter)
        x = xs.x(snapshot.taken_at)
        title = _snapshot_title(snapshot, data.meter)
        if balance is None:
            markers.append(Marker(snapshot.id, snapshot.kind, x, plot.bottom, title, absent=True))
            continue
        y = ys.y(balance)
        line.append((x, y))
        markers.append(Marker(snapshot.id, snapshot.kind, x, y, title))

    failures = dodge(
        [
            FailureMark(
                xs.clamp(f.at),
                f.tag or "unclassified",
                TAG_COLOURS.get(f.tag or "", UNCLASSIFIED_COLOUR),
                f.title,
                f.anchor,
                xs.clamp(f.at),
            )
            for f in data.failures
        ],
        plot,
    )
    shades = tuple(
        Shade(
            xs.clamp(s.start),
            max(xs.clamp(s.end) - xs.clamp(s.start), 2.0),
            s.kind,
            s.title,
            s.anchor,
        )
        for s in data.shades
    )
    points: list[Point] = []
    seen_columns: set[int] = set()
    by_id = {s.id: s for s in kept}
    for rise in data.rises:
        x = xs.x(rise.at)
        if int(x) in seen_columns and rise.after_id not in by_id:
            continue  # one top-up mark per pixel column is enough to see it
        seen_columns.add(int(x))
        y = ys.y(rise.balance)
        points.append(
            Point(
                x,
                y,
                "topup",
                f"top-up: +{format(rise.amount, 'f')} between snapshots {rise.before_id} "
                f"and {rise.after_id}",
                f"snapshot-{rise.after_id}" if rise.after_id in by_id else None,
            )
        )
    for item in data.points:
        y = ys.y(item.value) if item.value is not None else plot.bottom
        points.append(Point(xs.clamp(item.at), y, item.kind, item.title, item.anchor))

    projection = _projection(projected, xs, ys) if projected is not None else None
    bands = pack_lanes(data.spans, xs, data.span_anchor)
    lane_count = 1 + max((b.lane for b in bands), default=-1)
    lanes_top = plot.bottom + AXIS_HEIGHT
    height = int(lanes_top + lane_count * LANE_HEIGHT + 8)
    y_ticks = tuple(Tick(ys.y(v), format(v, "f")) for v in y_values)
    return Chart(
        width=WIDTH,
        height=height,
        plot=plot,
        lanes_top=lanes_top,
        path=step_path(line),
        markers=tuple(markers),
        failures=failures,
        bands=tuple(bands),
        shades=shades,
        points=tuple(points),
        y_ticks=y_ticks,
        x_ticks=tuple(time_ticks(xs)),
        axis_caption=axis_caption(start, end),
        total_snapshots=len(data.timeline),
        kept=tuple(kept),
        lane_count=lane_count,
        projection=projection,
    )


@exact
def _projection(projected: ProjectionInput, xs: TimeScale, ys: ValueScale) -> Projection:
    zero = ys.y(Decimal(0))
    title = (
        f"projected: {format(projected.balance, 'f')} runs out at "
        f"{projected.empty_at.isoformat(timespec='seconds')}"
    )
    finish = projected.finish_at
    if finish is None:
        return Projection(
            xs.x(projected.at), ys.y(projected.balance), xs.x(projected.empty_at), zero, title
        )
    span = (projected.empty_at - projected.at).total_seconds()
    done = (finish - projected.at).total_seconds()
    # On the line while the balance lasts; at zero when the batch would finish after it.
    left = projected.balance * (1 - Decimal(done) / Decimal(span)) if span > 0 else Decimal(0)
    finish_value = max(left, Decimal(0))
    finish_title = f"projected finish at {finish.isoformat(timespec='seconds')}" + (
        ": after the balance runs out" if projected.runs_out_first else ""
    )
    return Projection(
        xs.x(projected.at),
        ys.y(projected.balance),
        xs.x(projected.empty_at),
        zero,
        title,
        xs.x(finish),
        ys.y(finish_value),
        finish_title,
    )
