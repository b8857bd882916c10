"""P4: the post-mortem reads ``show``, ``failures`` and ``batches`` as the history grows.

Two histories of 1,000 finished batches (one tagged quota failure each, so the three
listings print the same rows) differ only in how many outcomes the batches hold: the small
and the large size. Each read runs in-process through the facade and is turned into its
JSON form (``to_dict()``), alternating small and large, warm; the figure is large ÷ small
(a read that sums or scans outcomes grows with the history, one that reads kept totals
and indexes does not). No floor: the small history is the reference.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from functools import partial
from typing import Any

from benchmarks import datagen
from benchmarks.common import TOKEN, Report, Row, Size, median, paired, scratch_database, upgrade


def _app(url: str) -> Any:
    from preflight.api import Preflight
    from preflight.settings import load_settings

    return Preflight(
        load_settings(
            {
                "PREFLIGHT_DATABASE_URL": url,
                "PREFLIGHT_VENDOR_URL": "http://127.0.0.1:9",
                "PREFLIGHT_API_TOKEN": TOKEN,
            }
        )
    )


def _reads(app: Any) -> dict[str, Callable[[int], object]]:
    def show(i: int) -> object:
        return app.show(f"batch-{1 + (i * 37) % 1000:05d}").to_dict()

    def failures(_i: int) -> object:
        return [f.to_dict() for f in app.failures()]

    def batches(_i: int) -> object:
        return [b.to_dict() for b in app.batches()]

    return {"show": show, "failures": failures, "batches": batches}


def _without_collections(
    measure: Callable[[], tuple[list[float], list[float]]],
) -> tuple[list[float], list[float]]:
    """``measure()`` with the cyclic garbage collector held off, as ``timeit`` does.

    The process has built two histories and run the paths before; a full collection then
    walks every object it holds (tens of milliseconds) and lands on whichever read happens
    to allocate past the threshold: one side's median, at random, not the history's size.
    """
    gc.collect()
    gc.disable()
    try:
        return measure()
    finally:
        gc.enable()


def run(report: Report, size: Size, dialect: str, vendor_url: str, tmp: str) -> None:
    del vendor_url
    from preflight.logs import configure_logging

    configure_logging("warning")
    small_n, large_n = size.listing
    with (
        scratch_database(dialect, tmp, "p4s") as small_db,
        scratch_database(dialect, tmp, "p4l") as large_db,
    ):
        for db, n in ((small_db, small_n), (large_db, large_n)):
            upgrade(db.url)
            datagen.listing_history(db, n)
        small, large = _app(small_db.url), _app(large_db.url)
        try:
            small_reads, large_reads = _reads(small), _reads(large)
            for name in small_reads:
                paired(2, small_reads[name], large_reads[name])  # warm caches and pools
                a, b = _without_collections(
                    partial(paired, size.listing_repeats, small_reads[name], large_reads[name])
                )
                ratio = median(b) / median(a)
                report.add(
                    Row(
                        "P4",
                        dialect,
                        f"{name}: {large_n:,} vs {small_n:,} outcomes",
                        median(a),
                        median(b),
                        target="≤ 1.5×",
                        ok=ratio <= 1.5,
                    )
                )
        finally:
            small.close()
            large.close()
