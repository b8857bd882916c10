"""Bulk import under fire: random JSON Lines mixing good outcomes with hostile lines.

Whatever the lines, ``Preflight.record_many`` raises nothing but ``UsageError``, and
when it refuses a line, every good line before it is stored and no good line after it
(issue 10, item 5). Runs in-process on a temporary SQLite file.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from preflight.api import Preflight
from preflight.db.models import Batch, Outcome
from preflight.domain.outcome import FIELDS as OUTCOME_FIELDS
from preflight.errors import UsageError
from preflight.settings import load_settings

_batch_numbers = itertools.count()

TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
)
ODD_NUMBERS = st.sampled_from(
    [
        "1e999999999",
        "-1e999999999",
        "1e-999999999",
        "1" * 5000,
        "1." + "5" * 5000,
        "9" * 41,
        "0." + "0" * 21 + "1",
        "-0",
        "-0.0",
        "-1",
        "0.1e1",
        "1E+39",
        "NaN",
        "Infinity",
        "-Infinity",
        "402.0",
        "1e400",
    ]
)
ODD_VALUES = st.one_of(
    st.sampled_from([[], {}, True, False, None, 1.5, "", " 402 ", "4_02", "٤٠٢", 10**30, -5]),
    TEXT,
    st.integers(),
)
# Every field an outcome line may carry, and one it may not.
FIELD_NAMES = st.sampled_from([*sorted(OUTCOME_FIELDS), "unknown"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=10,
)


@st.composite
def good_line(draw: st.DrawFn, index: int) -> bytes:
    record: dict[str, Any] = {
        "job_id": f"good-{index}",
        "status": draw(st.sampled_from(["succeeded", "failed"])),
    }
    if draw(st.booleans()):
        cost = draw(st.decimals(min_value=0, max_value=10**12, places=2))
        record["cost"] = format(cost, "f") if draw(st.booleans()) else int(cost)
    if draw(st.booleans()):
        record["http_status"] = draw(st.sampled_from([200, 402, 429, 500, "402"]))
    if draw(st.booleans()):
        record["attempt"] = draw(st.integers(1, 5))
    if draw(st.booleans()):
        moment = draw(
            st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))
        )
        record["at"] = moment.isoformat()
    if draw(st.booleans()):
        record["error"] = draw(TEXT)
    text = json.dumps(record, ensure_ascii=draw(st.booleans()))
    return text.encode() + draw(st.sampled_from([b"\n", b"\r\n"]))


def _with_field(field: str, value_text: str) -> bytes:
    return f'{{"job_id": "h", "status": "failed", "{field}": {value_text}}}\n'.encode()


HOSTILE_LINE = st.one_of(
    st.binary(max_size=120),
    st.text(max_size=80).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.builds(_with_field, FIELD_NAMES, ODD_NUMBERS),
    st.builds(_with_field, FIELD_NAMES, ODD_NUMBERS.map(json.dumps)),
    st.builds(lambda f, v: _with_field(f, json.dumps(v)), FIELD_NAMES, ODD_VALUES),
    st.integers(1, 32_000).map(lambda n: b"[" * n + b"]" * n + b"\n"),
    st.integers(1, 10_000).map(
        lambda n: b'{"job_id": "h", "status": "failed", "error": ' + b"[" * n + b"]" * n + b"}\n"
    ),
    JSON_VALUES.map(lambda value: json.dumps(value).encode() + b"\n"),
    st.sampled_from([b"\xef\xbb\xbf", b"\xef\xbb\xbf{}\n", b"\r\n", b"\x00\n", b"{\n", b"}\n"]),
)


@st.composite
def jsonl(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """Lines tagged ``good`` (a valid outcome) or ``hostile`` (anything, often invalid)."""
    lines: list[tuple[str, bytes]] = []
    for index in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 3)):
            line = draw(good_line(index))
            if index == 0 and draw(st.booleans()):
                line = "\ufeff".encode() + line  # an editor's byte-order mark
            lines.append(("good", line))
        else:
            lines.append(("hostile", draw(HOSTILE_LINE)))
    return lines


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Preflight]:
    database_url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    with Preflight(load_settings({"PREFLIGHT_DATABASE_URL": database_url})) as preflight:
        yield preflight


def _stored_job_ids(app: Preflight, batch_id: str) -> set[str]:
    with app.database.read() as session:
        rows = session.scalars(
            select(Outcome.job_id)
            .join(Batch, Outcome.batch_pk == Batch.id)
            .where(Batch.batch_id == batch_id)
        )
        return set(rows)


def _job_id_of(line: bytes) -> object:
    try:
        record = json.loads(line.decode("utf-8").removeprefix("\ufeff"))
    except (ValueError, RecursionError):
        return None
    return record.get("job_id") if isinstance(record, dict) else None


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=jsonl())
def test_bulk_import_refuses_only_with_usage_errors_and_keeps_earlier_lines(
    app: Preflight, lines: list[tuple[str, bytes]]
) -> None:
    batch_id = f"fuzz-{next(_batch_numbers)}"

    refused_at: int | None = None
    try:
        app.record_many(batch_id, iter([line for _, line in lines]), chunk_size=3)
    except UsageError as exc:  # anything else fails the test, as it is
        message = str(exc)
        assert message.startswith("line "), message
        refused_at = int(message.split(":", 1)[0].removeprefix("line "))
        assert "\n" not in message

    stored = _stored_job_ids(app, batch_id)
    last = len(lines) if refused_at is None else refused_at - 1
    if refused_at is not None:
        kind, _ = lines[refused_at - 1]
        assert kind == "hostile", f"good line {refused_at} refused"
    good_before = {f"good-{n}" for n, (kind, _) in enumerate(lines[:last]) if kind == "good"}
    good_after = {f"good-{n}" for n, (kind, _) in enumerate(lines) if kind == "good"}
    good_after -= good_before
    hostile_before = {_job_id_of(line) for kind, line in lines[:last] if kind == "hostile"}
    assert good_before <= stored
    assert not stored & good_after
    assert stored - good_before <= hostile_before
