"""Bulk `record --from FILE`: time and peak memory for growing files.

Memory must stay flat as the file grows (the import streams and writes 1000 lines
per transaction). Each size runs in a fresh process so peak RSS is its own.

    .venv/bin/python benchmarks/bulk_import.py [--sizes 10000,100000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_lines(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for n in range(count):
            failed = n % 50 == 49
            fh.write(
                json.dumps(
                    {
                        "job_id": f"job-{n:07d}",
                        "status": "failed" if failed else "succeeded",
                        "cost": None if failed else "0.25",
                        "http_status": 500 if failed else 200,
                        "at": f"2026-11-24T10:{n // 6000 % 60:02d}:{n // 100 % 60:02d}+00:00",
                    }
                )
                + "\n"
            )


def child(database_url: str, path: str) -> None:
    from preflight.api import Preflight
    from preflight.settings import load_settings

    app = Preflight(load_settings({"PREFLIGHT_DATABASE_URL": database_url}))
    _ = app.database  # migrate before timing
    started = time.perf_counter()
    with open(path, encoding="utf-8") as lines:
        result = app.record_many("bench-batch", lines)
    elapsed = time.perf_counter() - started
    app.close()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps({"lines": result.inserted, "seconds": elapsed, "peak_rss_mib": peak_kib / 1024})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"{'lines':>8}  {'seconds':>8}  {'lines/s':>8}  {'peak RSS MiB':>12}")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "outcomes.jsonl"
            write_lines(data, size)
            url = args.database_url or f"sqlite:///{tmp}/bench.db"
            env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
            out = subprocess.run(
                [sys.executable, __file__, "--child", url, str(data)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout
            figures = json.loads(out)
            print(
                f"{figures['lines']:>8}  {figures['seconds']:>8.2f}  "
                f"{figures['lines'] / figures['seconds']:>8.0f}  {figures['peak_rss_mib']:>12.1f}"
            )


if __name__ == "__main__":
    main()
