"""What every benchmark path shares: the loopback vendor, scratch databases, child processes,
paired timing and the table.

Every preflight figure sits next to a *floor*: the same work done as directly as Python can do
it (bare httpx, the bare driver: sqlite3 or psycopg, COPY on PostgreSQL), written here,
independently of preflight. Floor and preflight run interleaved (A B A B …) in the same run,
so that noise from other processes on the machine hits both.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOKEN = "sandbox-token"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Size:
    name: str
    checks: int  # P1: checks in one run (each a new open batch)
    window: int  # P1: checks per window (early window vs last window)
    cold_runs: int  # P2: process starts per side
    ingest: tuple[int, ...]  # P3: lines per file
    ingest_repeats: int  # P3: pairs per size
    records: int  # P3: in-process Preflight.record() calls
    listing: tuple[int, int]  # P4: outcomes, small and large (1,000 batches each)
    listing_repeats: int
    history: tuple[int, int]  # P5: snapshots of history, small and large
    thin: int  # P5: old audit snapshots the first tick thins
    http_checks: int  # P6: checks each way (in process, over HTTP) and round trips
    http_imports: int  # P6: imports each way
    http_lines: int  # P6: lines per import


SIZES = {
    # The CI smoke test: every path runs, figures mean little.
    "smoke": Size(
        "smoke",
        300,
        50,
        3,
        (2_000,),
        1,
        300,
        (2_000, 20_000),
        3,
        (1_000, 10_000),
        10_000,
        20,
        1,
        2_000,
    ),
    "small": Size(
        "small",
        2_000,
        100,
        10,
        (10_000, 100_000),
        2,
        2_000,
        (10_000, 500_000),
        5,
        (1_000, 100_000),
        100_000,
        60,
        3,
        20_000,
    ),
    "full": Size(
        "full",
        10_000,
        100,
        15,
        (10_000, 100_000, 1_000_000),
        2,
        5_000,
        (10_000, 5_000_000),
        9,
        (1_000, 1_000_000),
        1_000_000,
        200,
        5,
        20_000,
    ),
}


# ---------------------------------------------------------------- results


@dataclass
class Row:
    path: str
    dialect: str
    what: str
    floor: float | None  # seconds (or a unit named in `what`)
    value: float
    unit: str = "s"
    target: str = ""  # e.g. "<= 2.0x"
    ok: bool | None = None
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print("  " + format_row(row), flush=True)

    def table(self) -> str:
        header = (
            "| path | db | what | floor | preflight | ratio | target | met |\n"
            "|---|---|---|---:|---:|---:|---|---|"
        )
        return "\n".join([header, *(markdown_row(r) for r in self.rows)])


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        if value < 1e-2:
            return f"{value * 1e3:.2f} ms"
        if value < 1:
            return f"{value * 1e3:.0f} ms"
        return f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:.3g} {unit}"


def ratio_of(row: Row) -> str:
    if row.floor is None or row.floor == 0:
        return "—"
    if row.unit == "/s":  # throughput: preflight as a share of the floor
        return f"{row.value / row.floor:.2f}×"
    return f"{row.value / row.floor:.2f}×"


def markdown_row(row: Row) -> str:
    met = "—" if row.ok is None else ("yes" if row.ok else "**no**")
    note = f" ({row.note})" if row.note else ""
    return (
        f"| {row.path} | {row.dialect} | {row.what}{note} | {_fmt(row.floor, row.unit)} | "
        f"{_fmt(row.value, row.unit)} | {ratio_of(row)} | {row.target} | {met} |"
    )


def format_row(row: Row) -> str:
    met = "" if row.ok is None else ("  ok" if row.ok else "  MISSED")
    return (
        f"{row.path:<3} {row.dialect:<10} {row.what:<46} floor {_fmt(row.floor, row.unit):>10}  "
        f"preflight {_fmt(row.value, row.unit):>10}  {ratio_of(row):>7}  {row.target}{met}"
        + (f"  [{row.note}]" if row.note else "")
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


# ---------------------------------------------------------------- timing


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired(
    count: int, floor: Callable[[int], object], preflight: Callable[[int], object]
) -> tuple[list[float], list[float]]:
    """Run ``floor(i)`` and ``preflight(i)`` interleaved, ``count`` times each; their times."""
    a: list[float] = []
    b: list[float] = []
    clock = time.perf_counter
    for i in range(count):
        started = clock()
        floor(i)
        middle = clock()
        preflight(i)
        b.append(clock() - middle)
        a.append(middle - started)
    return a, b


# ---------------------------------------------------------------- the vendor


@contextlib.contextmanager
def vendor() -> Iterator[str]:
    """The bundled sandbox vendor in its own process (so it never shares our GIL)."""
    code = (
        "from decimal import Decimal\n"
        "from preflight.sandbox import serve_forever\n"
        "serve_forever(port=0, credits=Decimal(10**15), quota=Decimal(10**15), token="
        f"{TOKEN!r})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" listening on ", 1)[1].split()[0]
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------- databases


def postgres_base_url() -> str:
    url = os.environ.get("PREFLIGHT_BENCH_POSTGRES_URL") or os.environ.get(
        "PREFLIGHT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL
    )
    return url.replace("postgresql+psycopg://", "postgresql://")


def postgres_available() -> str | None:
    """None when PostgreSQL answers; else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    try:
        with psycopg.connect(postgres_base_url(), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


@dataclass
class Database:
    """A scratch database: a SQLite file, or a fresh PostgreSQL schema."""

    dialect: str
    url: str  # for preflight (SQLAlchemy URL)
    sqlite_path: str | None = None
    pg_dsn: str | None = None  # for psycopg: the base DSN
    pg_schema: str | None = None

    def connect(self) -> Any:
        """A bare driver connection (sqlite3 or psycopg) on this database."""
        if self.dialect == "sqlite":
            import sqlite3

            assert self.sqlite_path is not None
            conn = sqlite3.connect(self.sqlite_path, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            return conn
        import psycopg

        assert self.pg_dsn is not None
        return psycopg.connect(self.pg_dsn, options=f"-csearch_path={self.pg_schema}")


@contextlib.contextmanager
def scratch_database(dialect: str, directory: str, name: str = "bench") -> Iterator[Database]:
    if dialect == "sqlite":
        path = os.path.join(directory, f"{name}-{uuid.uuid4().hex[:8]}.db")
        try:
            yield Database("sqlite", f"sqlite:///{path}", sqlite_path=path)
        finally:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(path + suffix)
        return
    import psycopg

    base = postgres_base_url()
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    url = base.replace("postgresql://", "postgresql+psycopg://", 1)
    sep = "&" if "?" in url else "?"
    try:
        yield Database(
            "postgresql",
            f"{url}{sep}options=-csearch_path%3D{schema}",
            pg_dsn=base,
            pg_schema=schema,
        )
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def upgrade(url: str) -> None:
    """The schema at head, as `preflight db upgrade` makes it."""
    from preflight.db import migrate
    from preflight.db.session import build_engine

    engine = build_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def preflight_env(url: str, vendor_url: str = "http://127.0.0.1:9", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    env.update(
        PREFLIGHT_DATABASE_URL=url,
        PREFLIGHT_VENDOR_URL=vendor_url,
        PREFLIGHT_API_TOKEN=TOKEN,
        PREFLIGHT_LOG_LEVEL="warning",
        **extra,
    )
    return env


# ---------------------------------------------------------------- child processes


@dataclass(frozen=True)
class ChildResult:
    wall: float  # seconds, start to exit
    peak_rss_mib: float
    output: dict[str, Any]
    returncode: int


def run_child(
    argv: Sequence[str], env: dict[str, str] | None = None, *, parse: bool = True
) -> ChildResult:
    """Run ``argv`` (a child that prints one JSON line of figures, its own peak RSS
    included: see :func:`child_main`) to completion."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0 and parse:
        detail = err.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv[:4])}… exited {proc.returncode}: {detail}")
    output: dict[str, Any] = {}
    if parse:
        lines = out.decode().strip().splitlines()
        output = json.loads(lines[-1]) if lines else {}
    return ChildResult(wall, float(output.get("peak_rss_mib", 0.0)), output, proc.returncode)


def spawn_wait(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Run ``argv`` with output discarded; (wall seconds, peak RSS MiB, exit status)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_main(entry: Callable[..., dict[str, Any]]) -> None:
    """Entry of a child process: run, then print one JSON line with figures and peak RSS."""
    figures = entry(*sys.argv[1:])
    figures["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(figures), flush=True)


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    base = os.environ.get("PREFLIGHT_BENCH_TMP")
    return tempfile.TemporaryDirectory(prefix="preflight-bench-", dir=base)
