"""`preflight report` over a large window: 100,000 snapshots around one batch.

Prints the file's size, how many markers the chart drew (downsampled: each pixel
column's lowest and highest reading, and every snapshot evidence cites), and the time
to load the read model, render it and write the file; then the same report through the
CLI in a fresh process. The targets: under 2 MB, written in under 2 s.

    .venv/bin/python benchmarks/report_large.py [--snapshots 100000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert

from preflight.api import Preflight
from preflight.db.models import Account, Batch, Outcome, Snapshot
from preflight.report.render import render_batch
from preflight.settings import load_settings

BATCH = "bench/large:1"
START = datetime(2026, 11, 24, tzinfo=UTC)


def populate(app: Preflight, count: int) -> None:
    """One account, a batch checked at the start and finished at the end with two quota
    failures, another batch spending alongside, and ``count`` snapshots in between (an
    audit every few seconds, a top-up now and then)."""
    step = timedelta(seconds=3)
    end = START + step * (count + 1)
    with app.database.write() as session:
        account = Account(name="default", created_at=START)
        session.add(account)
        session.flush()
        batches = {}
        for name, need in ((BATCH, "900000"), ("bench-other", "100000")):
            batch = Batch(
                batch_id=name, account_id=account.id, meter="credits", need=Decimal(need),
                reserve=Decimal(0), status="finished", verdict="go", verified=True,
                labels={}, created_at=START, checked_at=START, finished_at=end,
                last_activity_at=end,
            )  # fmt: skip
            session.add(batch)
            session.flush()
            batches[name] = batch.id
        rows = []
        balance = Decimal(1_000_000)
        for n in range(count):
            kind = "preflight" if n == 0 else ("finish" if n == count - 1 else "audit")
            balance -= Decimal(n % 17) / 4
            if n % 25_000 == 24_999:
                balance += Decimal(50_000)  # a top-up
            rows.append(
                {
                    "account_id": account.id,
                    "batch_pk": batches[BATCH] if kind != "audit" else None,
                    "kind": kind,
                    "taken_at": START + step * n,
                    "credits": balance,
                    "api_quota_remaining": None,
                    "tier": "pro",
                    "user_id": "bench",
                    "raw": "{}",
                    "http_status": 200,
                    "latency_ms": 20,
                }
            )
        session.execute(insert(Snapshot), rows)
        outcomes = []
        for name, pk in batches.items():
            for n in range(40):
                failed = name == BATCH and n in (19, 39)
                outcomes.append(
                    {
                        "batch_pk": pk,
                        "job_id": f"job-{n:03d}",
                        "attempt": 1,
                        "status": "failed" if failed else "succeeded",
                        "http_status": 402 if failed else 200,
                        "cost": None if failed else Decimal("12.5"),
                        "expected_cost": Decimal("12.5") if failed else None,
                        "error": None,
                        "quota_failure": failed,
                        "occurred_at": START + step * (count * (n + 1) // 41),
                        "recorded_at": START + step * (count * (n + 1) // 41),
                    }
                )
        session.execute(insert(Outcome), outcomes)
    app.classify(BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--snapshots", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
        env["PREFLIGHT_DATABASE_URL"] = url
        with Preflight(load_settings(env)) as app:
            populate(app, args.snapshots)
            output = Path(tmp) / "report.html"
            started = time.perf_counter()
            data = app.report(BATCH)
            loaded = time.perf_counter()
            html = render_batch(data)
            rendered = time.perf_counter()
            output.write_text(html, encoding="utf-8")
            written = time.perf_counter()
        size = output.stat().st_size
        markers = len(re.findall(r'<use href="#k-[a-z]+" class="snap', html))
        print(f"snapshots in the window   {len(data.timeline):>10,}")
        print(f"markers drawn             {markers:>10,}")
        print(f"file size                 {size:>10,} bytes  ({size / 2**20:.2f} MiB; limit 2 MB)")
        print(f"load the read model       {loaded - started:>10.3f} s")
        print(f"render (chart + Jinja2)   {rendered - loaded:>10.3f} s")
        print(f"write                     {written - rendered:>10.3f} s")
        print(f"in all                    {written - started:>10.3f} s  (limit 2 s)")
        cli_started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "preflight", "report", BATCH, "-o", str(output)],
            env=env,
            check=True,
            capture_output=True,
        )
        print(f"`preflight report` (CLI)  {time.perf_counter() - cli_started:>10.3f} s  "
              "(a fresh process: imports, migrations check, load, render, write)")  # fmt: skip


if __name__ == "__main__":
    main()
