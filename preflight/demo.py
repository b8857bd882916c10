"""``preflight demo``: the whole story in one command, against the bundled sandbox vendor.

Two batches share one account holding 100 credits:

- ``demo-voiceover`` declares a need of 150: the check says ``insufficient``, but a
  careless orchestrator dispatches it anyway. It spends the whole balance itself, so
  its quota failure is a low balance that already existed (``pre_existing_low_balance``).
- ``demo-subtitles`` needs 30 and is checked while the balance is still 100: ``go``.
  Before its first job runs, the other batch has spent everything, so its quota failure
  is ``concurrent_consumption``, attributed to ``demo-voiceover``.

It runs on a database of its own (never the user's real one: the sandbox's balance
timeline must not mix with a real account's).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx

from preflight.api import Preflight
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import load_settings

JOB_COST = Decimal(10)
STARTING_CREDITS = Decimal(100)
UNDER_FUNDED = "demo-voiceover"
OUTSPENT = "demo-subtitles"


@dataclass(frozen=True)
class DemoResult:
    database_url: str
    batch_ids: tuple[str, ...]


def default_demo_database(environ: dict[str, str] | None = None) -> str:
    env = dict(os.environ if environ is None else environ)
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(data_home) / 'preflight' / 'demo.db'}"


def _fresh_sqlite(url: str) -> None:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)


def run_demo(database_url: str, say: Callable[[str], None] = print) -> DemoResult:
    """Play the scenario; returns where the post-mortems can be read."""
    _fresh_sqlite(database_url)
    with SandboxServer(credits=STARTING_CREDITS, quota=None) as sandbox:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
        environ |= {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
        }
        say(f"sandbox vendor on {sandbox.url} with {STARTING_CREDITS} credits")
        with (
            Preflight(load_settings(environ)) as app,
            httpx.Client(
                base_url=sandbox.url,
                headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
                timeout=httpx.Timeout(5.0),
            ) as vendor,
        ):

            def job(batch_id: str, number: int) -> bool:
                """One paid job on the sandbox, recorded like a worker would."""
                response = vendor.post("/api/open/v1/jobs", json={"cost": str(JOB_COST)})
                ok = response.status_code == httpx.codes.OK
                app.record(
                    batch_id,
                    {
                        "job_id": f"job-{number:02d}",
                        "status": "succeeded" if ok else "failed",
                        "http_status": response.status_code,
                        "cost": str(JOB_COST) if ok else None,
                        "expected_cost": str(JOB_COST),
                    },
                )
                return ok

            under = app.check(UNDER_FUNDED, need="150")
            say(f"check {UNDER_FUNDED} need 150 -> {under.verdict} ({under.reason})")
            outspent = app.check(OUTSPENT, need="30")
            say(f"check {OUTSPENT} need 30 -> {outspent.verdict} ({outspent.reason})")
            say(f"{UNDER_FUNDED} is dispatched anyway; both batches are now running")

            spent = 0
            while job(UNDER_FUNDED, spent + 1):
                spent += 1
            say(f"{UNDER_FUNDED}: {spent} jobs of {JOB_COST} succeeded, job {spent + 1} got 402")
            job(OUTSPENT, 1)
            say(f"{OUTSPENT}: its first job got 402")
            for batch_id in (UNDER_FUNDED, OUTSPENT):
                app.finish(batch_id)
    return DemoResult(database_url, (UNDER_FUNDED, OUTSPENT))
