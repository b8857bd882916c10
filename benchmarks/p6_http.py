"""P6: the HTTP API next to the same verbs in process: a check, and a JSON Lines import.

``preflight serve`` runs in its own process (as in production, it does not share the
client's interpreter) on the dialect's database; the in-process side runs here on another
scratch database of the same dialect; both read the same sandbox vendor.

- A check over HTTP (``Preflight.remote(...).check``, keep-alive). Floor: what a remote
  check cannot avoid, an in-process check plus one bare loopback round trip to the same
  server (``GET /healthz``). Target: at most 1.5 x the floor.
- NDJSON ingest over HTTP (``record_many`` in remote mode: streamed). Floor: the local bulk
  import (``Preflight.record_many``). Target: at least 0.5 x the floor's rate.

The A and B runs are interleaved so that drift on a shared machine hits both alike.
``benchmarks/http_api.py`` runs the same measurement on SQLite alone and prints it.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import httpx

from benchmarks.common import Report, Row, Size, preflight_env, scratch_database, upgrade

CHECK_TARGET = 1.5
INGEST_TARGET = 0.5


@dataclass(frozen=True)
class HttpFigures:
    """Medians: seconds for the checks and the round trip, lines per second for ingest."""

    check_in_process: float
    check_over_http: float
    round_trip: float
    ingest_local: float
    ingest_over_http: float

    @property
    def check_floor(self) -> float:
        return self.check_in_process + self.round_trip

    @property
    def check_met(self) -> bool:
        return self.check_over_http <= CHECK_TARGET * self.check_floor

    @property
    def ingest_met(self) -> bool:
        return self.ingest_over_http >= INGEST_TARGET * self.ingest_local


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _serving(env: dict[str, str], port: int) -> Iterator[str]:
    """``preflight serve`` on ``port``, ready; its base URL."""
    url = f"http://127.0.0.1:{port}"
    child = subprocess.Popen(
        [sys.executable, "-m", "preflight", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("preflight serve did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=30)


def _lines(batch: str, count: int) -> Iterator[str]:
    for n in range(count):
        yield json.dumps({"job_id": f"{batch}-{n:07d}", "status": "succeeded", "cost": "0.25"})


def _timed(func: Callable[[], object]) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def measure(
    local_url: str, server_url: str, vendor_url: str, *, checks: int, imports: int, lines: int
) -> HttpFigures:
    """Both databases exist at the schema's head; the server gets its token here."""
    from preflight.api import Preflight
    from preflight.logs import configure_logging
    from preflight.services.runtime import Runtime
    from preflight.services.tokens import create_token
    from preflight.settings import load_settings

    configure_logging("warning")
    local_settings = load_settings(preflight_env(local_url, vendor_url))
    server_env = preflight_env(server_url, vendor_url)
    with Runtime(load_settings(server_env)) as runtime:
        token = create_token(runtime, "bench", "admin").token.reveal()
    with (
        _serving(server_env, _free_port()) as api_url,
        Preflight(local_settings) as local,
        Preflight.remote(api_url, token, settings=local_settings) as remote,
        httpx.Client(base_url=api_url, timeout=10) as bare,
    ):
        # Warm both paths up (engines, pools, first-use imports) before measuring.
        for n in range(5):
            local.check(f"warm-local-{n}", need="1")
            remote.check(f"warm-remote-{n}", need="1")
            bare.get("/healthz")
        in_process: list[float] = []
        over_http: list[float] = []
        round_trip: list[float] = []
        for n in range(checks):
            in_process.append(_timed(partial(local.check, f"a-{n}", need="1")))
            over_http.append(_timed(partial(remote.check, f"b-{n}", need="1")))
            round_trip.append(_timed(partial(bare.get, "/healthz")))
        local_ingest: list[float] = []
        http_ingest: list[float] = []
        for n in range(imports):
            local_ingest.append(
                lines / _timed(partial(local.record_many, f"li-{n}", _lines(f"li{n}", lines)))
            )
            http_ingest.append(
                lines / _timed(partial(remote.record_many, f"hi-{n}", _lines(f"hi{n}", lines)))
            )
    return HttpFigures(
        statistics.median(in_process),
        statistics.median(over_http),
        statistics.median(round_trip),
        statistics.median(local_ingest),
        statistics.median(http_ingest),
    )


def run(report: Report, size: Size, dialect: str, vendor_url: str, tmp: str) -> None:
    with (
        scratch_database(dialect, tmp, "p6local") as local,
        scratch_database(dialect, tmp, "p6server") as server,
    ):
        upgrade(local.url)
        upgrade(server.url)
        figures = measure(
            local.url,
            server.url,
            vendor_url,
            checks=size.http_checks,
            imports=size.http_imports,
            lines=size.http_lines,
        )
    report.add(
        Row(
            "P6",
            dialect,
            f"check over HTTP vs in process + loopback round trip, median of {size.http_checks}",
            figures.check_floor,
            figures.check_over_http,
            target=f"≤ {CHECK_TARGET}×",
            ok=figures.check_met,
            note=(
                f"in process {figures.check_in_process * 1e3:.2f} ms,"
                f" round trip {figures.round_trip * 1e3:.2f} ms"
            ),
        )
    )
    report.add(
        Row(
            "P6",
            dialect,
            f"NDJSON import over HTTP vs local record_many, {size.http_lines:,} lines (lines/s)",
            figures.ingest_local,
            figures.ingest_over_http,
            unit="/s",
            target=f"≥ {INGEST_TARGET}× floor",
            ok=figures.ingest_met,
        )
    )
