"""The HTTP API against in-process calls, on SQLite alone: P6 of ``python -m benchmarks``
(benchmarks/p6_http.py says what is measured and against what), printed as medians.

    .venv/bin/python benchmarks/http_api.py [--checks 60] [--imports 5] [--lines 20000]

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, too

from benchmarks import common
from benchmarks.p6_http import CHECK_TARGET, INGEST_TARGET, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=60)
    parser.add_argument("--imports", type=int, default=5)
    parser.add_argument("--lines", type=int, default=20_000)
    options = parser.parse_args()
    with (
        common.temp_dir() as tmp,
        common.vendor() as vendor_url,
        common.scratch_database("sqlite", tmp, "local") as local,
        common.scratch_database("sqlite", tmp, "server") as server,
    ):
        common.upgrade(local.url)
        common.upgrade(server.url)
        figures = measure(
            local.url,
            server.url,
            vendor_url,
            checks=options.checks,
            imports=options.imports,
            lines=options.lines,
        )
    rows = [
        ("check, in process (ms)", figures.check_in_process * 1000, ".2f"),
        ("check, over HTTP (ms)", figures.check_over_http * 1000, ".2f"),
        ("bare loopback round trip, GET /healthz (ms)", figures.round_trip * 1000, ".2f"),
        (
            f"budget {CHECK_TARGET} x (in process + round trip) (ms)",
            CHECK_TARGET * figures.check_floor * 1000,
            ".2f",
        ),
        ("bulk import, local (lines/s)", figures.ingest_local, ".0f"),
        ("bulk import, NDJSON over HTTP (lines/s)", figures.ingest_over_http, ".0f"),
        ("HTTP / local ingest", figures.ingest_over_http / figures.ingest_local, ".2f"),
    ]
    print(f"{'measure':44} {'median':>12}")
    for label, value, spec in rows:
        print(f"{label:44} {value:12{spec}}")
    print(
        f"check target (<= {CHECK_TARGET} x): {'met' if figures.check_met else 'MISSED'}; ", end=""
    )
    print(f"ingest target (>= {INGEST_TARGET} x): {'met' if figures.ingest_met else 'MISSED'}")
    raise SystemExit(0 if figures.check_met and figures.ingest_met else 1)


if __name__ == "__main__":
    main()
