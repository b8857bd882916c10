"""Run the performance suite: P1–P6 on SQLite and PostgreSQL, each next to its own floor.

    .venv/bin/python -m benchmarks [--size smoke|small|full] [--dialect sqlite,postgresql]
                                   [--paths P1,P2,P3,P4,P5,P6] [--markdown FILE]

PostgreSQL: ``PREFLIGHT_BENCH_POSTGRES_URL`` (else ``PREFLIGHT_TEST_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/test``); every path works in a fresh schema it drops.
Scratch files go to ``PREFLIGHT_BENCH_TMP`` (default: the system temporary directory).
docs/performance.md explains the paths, the floors and the latest figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from benchmarks import common

PATHS = ("P1", "P2", "P3", "P4", "P5", "P6")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", choices=sorted(common.SIZES), default="small")
    parser.add_argument("--dialect", default="sqlite,postgresql")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--markdown", help="also write the table (markdown) to this file")
    args = parser.parse_args(argv)
    size = common.SIZES[args.size]
    dialects = [d.strip() for d in args.dialect.split(",") if d.strip()]
    paths = [p.strip().upper() for p in args.paths.split(",") if p.strip()]
    for name in dialects:
        if name not in ("sqlite", "postgresql"):
            parser.error(f"unknown dialect {name!r}")
    for name in paths:
        if name not in PATHS:
            parser.error(f"unknown path {name!r}")
    if "postgresql" in dialects:
        why = common.postgres_available()
        if why is not None:
            print(f"PostgreSQL unavailable, running SQLite only: {why}", file=sys.stderr)
            dialects.remove("postgresql")

    from benchmarks import p1_check, p2_cold, p3_ingest, p4_listings, p5_audit, p6_http

    modules = {
        "P1": p1_check,
        "P2": p2_cold,
        "P3": p3_ingest,
        "P4": p4_listings,
        "P5": p5_audit,
        "P6": p6_http,
    }
    report = common.Report()
    started = time.perf_counter()
    print(f"size {size.name}; {common.machine()}", flush=True)
    with common.temp_dir() as tmp, common.vendor() as vendor_url:
        for path in paths:
            for dialect in dialects:
                print(f"== {path} on {dialect}", flush=True)
                modules[path].run(report, size, dialect, vendor_url, tmp)
    elapsed = time.perf_counter() - started
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = report.table()
    heading = f"size `{size.name}`, {stamp}, {elapsed:.0f} s; {common.machine()}"
    print()
    print(heading)
    print()
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(f"{heading}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
