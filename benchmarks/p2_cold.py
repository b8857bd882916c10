"""P2: a cold ``preflight check BATCH --need 1`` process, and ``preflight --help``.

Floors, each a fresh ``python -c`` process on the same interpreter: importing httpx and the
driver, one profile GET and one INSERT + commit (sqlite3 or psycopg); and ``import click``
for ``--help``. Wall time of whole processes, start to exit, interleaved A B A B; the
database exists and is at the schema's head (as after ``preflight db upgrade``).

preflight's modules are byte-compiled first, as an installed wheel's are: the floor's
libraries come with their bytecode, and under ``PYTHONDONTWRITEBYTECODE`` (or in a read-only
checkout) every process would otherwise compile preflight's ~60 modules from source again.
"""

from __future__ import annotations

import compileall
import os
import sys

from benchmarks.common import (
    TOKEN,
    Report,
    Row,
    Size,
    median,
    preflight_env,
    scratch_database,
    spawn_wait,
    upgrade,
)

_GET = (
    "r = httpx.get(sys.argv[1] + '/api/open/v1/profile',"
    f" headers={{'Authorization': 'Bearer {TOKEN}'}})\n"
    "body = r.json()\n"
)
_FLOOR_SQLITE = (
    "import sqlite3, sys, httpx\n"
    + _GET
    + "conn = sqlite3.connect(sys.argv[2], isolation_level=None)\n"
    "conn.execute('CREATE TABLE IF NOT EXISTS floor"
    " (id INTEGER PRIMARY KEY, credits TEXT, raw TEXT)')\n"
    "conn.execute('INSERT INTO floor (credits, raw) VALUES (?, ?)',"
    " (str(body['credits']), r.text))\n"
    "conn.close()\n"
)
_FLOOR_POSTGRESQL = (
    "import sys, httpx, psycopg\n"
    + _GET
    + "with psycopg.connect(sys.argv[2], options='-csearch_path=' + sys.argv[3]) as conn:\n"
    "    conn.execute('CREATE TABLE IF NOT EXISTS floor"
    " (id SERIAL PRIMARY KEY, credits NUMERIC, raw TEXT)')\n"
    "    conn.execute('INSERT INTO floor (credits, raw) VALUES (%s, %s)',"
    " (body['credits'], r.text))\n"
)


def _preflight_script() -> str:
    return os.path.join(os.path.dirname(sys.executable), "preflight")


def _byte_compile() -> None:
    import preflight

    compileall.compile_dir(os.path.dirname(preflight.__file__), quiet=1)


def run(report: Report, size: Size, dialect: str, vendor_url: str, tmp: str) -> None:
    _byte_compile()
    with scratch_database(dialect, tmp, "p2") as db:
        upgrade(db.url)
        env = preflight_env(db.url, vendor_url)
        if dialect == "sqlite":
            floor_argv = [sys.executable, "-c", _FLOOR_SQLITE, vendor_url, db.url[10:] + "-floor"]
        else:
            assert db.pg_dsn is not None
            assert db.pg_schema is not None
            floor_argv = [
                sys.executable,
                "-c",
                _FLOOR_POSTGRESQL,
                vendor_url,
                db.pg_dsn,
                db.pg_schema,
            ]
        floors, ours = [], []
        for i in range(-1, size.cold_runs):  # the first pair warms the OS caches
            floor_wall, _, floor_code = spawn_wait(floor_argv, env)
            wall, _, code = spawn_wait(
                [_preflight_script(), "check", f"p2-{i}", "--need", "1"], env
            )
            assert floor_code == 0, floor_argv
            assert code == 0, "preflight check failed"
            if i >= 0:
                floors.append(floor_wall)
                ours.append(wall)
        ratio = median(ours) / median(floors)
        report.add(
            Row(
                "P2",
                dialect,
                "cold `preflight check` process",
                median(floors),
                median(ours),
                target="≤ 2.0×",
                ok=ratio <= 2.0,
            )
        )
    if dialect == "sqlite":  # --help touches no database: once is enough
        helps, clicks = [], []
        env = preflight_env("sqlite://")
        for i in range(-1, size.cold_runs):
            click_wall, _, _ = spawn_wait([sys.executable, "-c", "import click"], env)
            help_wall, _, code = spawn_wait([_preflight_script(), "--help"], env)
            assert code == 0, "preflight --help failed"
            if i >= 0:
                clicks.append(click_wall)
                helps.append(help_wall)
        ratio = median(helps) / median(clicks)
        report.add(
            Row(
                "P2",
                "—",
                '`preflight --help` vs `python -c "import click"`',
                median(clicks),
                median(helps),
                target="≤ 1.5×",
                ok=ratio <= 1.5,
            )
        )
