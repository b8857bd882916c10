"""P5: one scheduled-audit tick (``preflight audit --force``) as the account's history grows.

Histories (written by :func:`benchmarks.datagen.audit_history`): the last day of audit
snapshots, already-thinned older ones, and old snapshots of finished batches, in all the
small or the large number of snapshots; and, for the thinning tick, the small history plus
a backlog of audit snapshots 5 s apart, 30 to 90 days old, that the tick thins. Each tick
runs in a child process (its own peak RSS), against the loopback vendor; the child times
the tick only. Figures: large ÷ small tick time, and the thinning tick's peak RSS ÷ a
normal tick's.

    python -m benchmarks.p5_audit URL VENDOR_URL   (a child)
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks import datagen
from benchmarks.common import (
    ROOT,
    Report,
    Row,
    Size,
    child_main,
    median,
    preflight_env,
    run_child,
    scratch_database,
    upgrade,
)


def _tick(url: str, vendor_url: str) -> dict[str, Any]:
    import contextlib
    import io
    import json
    import time

    import preflight.api
    import preflight.services.audit  # noqa: F401
    from preflight.cli import cli

    del url, vendor_url  # the child's settings come from its environment
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        cli.main(
            ["audit", "--force", "--format", "json"], prog_name="preflight", standalone_mode=False
        )
    elapsed = time.perf_counter() - started
    outcome = json.loads(out.getvalue())
    first = outcome[0] if isinstance(outcome, list) else outcome
    retention = first.get("steps", {}).get("retention", {})
    return {"seconds": elapsed, "deleted": retention.get("deleted"), "status": first.get("status")}


def _run_tick(url: str, vendor_url: str) -> Any:
    env = preflight_env(url, vendor_url)
    return run_child([sys.executable, "-m", "benchmarks.p5_audit", url, vendor_url], env)


def run(report: Report, size: Size, dialect: str, vendor_url: str, tmp: str) -> None:
    small_n, large_n = size.history
    with (
        scratch_database(dialect, tmp, "p5s") as small_db,
        scratch_database(dialect, tmp, "p5l") as large_db,
    ):
        for db, n in ((small_db, small_n), (large_db, large_n)):
            upgrade(db.url)
            datagen.audit_history(db, n)
        small_runs, large_runs, normal_rss = [], [], []
        for _ in range(3):
            a = _run_tick(small_db.url, vendor_url)
            b = _run_tick(large_db.url, vendor_url)
            assert a.output["status"] == "ok", a
            assert b.output["status"] == "ok", b
            small_runs.append(a.output["seconds"])
            large_runs.append(b.output["seconds"])
            normal_rss.append(a.peak_rss_mib)
        ratio = median(large_runs) / median(small_runs)
        report.add(
            Row(
                "P5",
                dialect,
                f"audit tick, {large_n:,} vs {small_n:,} snapshots of history",
                median(small_runs),
                median(large_runs),
                target="≤ 1.5×",
                ok=ratio <= 1.5,
            )
        )
    with scratch_database(dialect, tmp, "p5t") as thin_db:
        upgrade(thin_db.url)
        datagen.audit_history(thin_db, small_n, thin=size.thin)
        thinning = _run_tick(thin_db.url, vendor_url)
    normal = median(normal_rss)
    report.add(
        Row(
            "P5",
            dialect,
            f"peak RSS: tick thinning {size.thin:,} vs a normal tick",
            normal,
            thinning.peak_rss_mib,
            unit="MiB",
            target="≤ 1.2×",
            ok=thinning.peak_rss_mib <= 1.2 * normal,
            note=f"it deleted {thinning.output['deleted']:,} in {thinning.output['seconds']:.1f} s",
        )
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    child_main(_tick)
