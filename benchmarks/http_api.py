"""The HTTP API against in-process calls: one check, and a bulk JSON Lines import.

Targets (docs/performance.md, "HTTP API"):

- a check over HTTP (``Preflight.remote(...).check``, keep-alive) costs at most 1.5 x an
  in-process check plus one bare loopback HTTP round trip (``GET /healthz``);
- NDJSON ingest over HTTP (``record --from`` in remote mode: streamed) runs at least
  0.5 x as fast as the local bulk import.

The sandbox vendor and ``preflight serve`` run in their own processes (as in production,
the server does not share the client's interpreter); A and B runs are interleaved so that
drift on a shared machine hits both alike. Prints a table of medians.

    .venv/bin/python benchmarks/http_api.py [--checks 60] [--imports 5] [--lines 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from preflight.api import Preflight
from preflight.logs import configure_logging
from preflight.sandbox import DEFAULT_TOKEN
from preflight.services.runtime import Runtime
from preflight.services.tokens import create_token
from preflight.settings import load_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def process(args: list[str], env: dict[str, str], ready_url: str) -> Iterator[None]:
    child = subprocess.Popen(
        [sys.executable, "-m", "preflight", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(ready_url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit(f"{args[0]} did not start") from None
                time.sleep(0.05)
        yield
    finally:
        child.terminate()
        child.wait(timeout=30)


def lines(batch: str, count: int) -> Iterator[str]:
    for n in range(count):
        yield json.dumps({"job_id": f"{batch}-{n:07d}", "status": "succeeded", "cost": "0.25"})


def timed(func: Callable[[], object]) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=60)
    parser.add_argument("--imports", type=int, default=5)
    parser.add_argument("--lines", type=int, default=20_000)
    options = parser.parse_args()
    configure_logging("warning")

    work = Path(tempfile.mkdtemp(prefix="preflight-http-bench-"))
    vendor_port, api_port = free_port(), free_port()
    vendor_url, api_url = f"http://127.0.0.1:{vendor_port}", f"http://127.0.0.1:{api_port}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    common = {
        **base,
        "PREFLIGHT_VENDOR_URL": vendor_url,
        "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
        "PREFLIGHT_LOG_LEVEL": "warning",
    }
    local_env = {**common, "PREFLIGHT_DATABASE_URL": f"sqlite:///{work / 'local.db'}"}
    server_env = {**common, "PREFLIGHT_DATABASE_URL": f"sqlite:///{work / 'server.db'}"}

    with Runtime(load_settings(server_env)) as runtime:
        token = create_token(runtime, "bench", "admin").token.reveal()
    simulate = ["simulate", "--port", str(vendor_port), "--credits", "1000000000"]
    with (
        process(simulate, base, f"{vendor_url}/_sandbox/state"),
        process(["serve", "--port", str(api_port)], server_env, f"{api_url}/healthz"),
        Preflight(load_settings(local_env)) as local,
        Preflight.remote(api_url, token, settings=load_settings(local_env)) as remote,
        httpx.Client(base_url=api_url, timeout=10) as bare,
    ):
        # Warm both paths up (engines, pools, first-use imports) before measuring.
        for n in range(5):
            local.check(f"warm-local-{n}", need="1")
            remote.check(f"warm-remote-{n}", need="1")
            bare.get("/healthz")
        in_process, over_http, round_trip = [], [], []
        for n in range(options.checks):
            in_process.append(timed(lambda n=n: local.check(f"a-{n}", need="1")))
            over_http.append(timed(lambda n=n: remote.check(f"b-{n}", need="1")))
            round_trip.append(timed(lambda: bare.get("/healthz")))
        local_ingest, http_ingest = [], []
        count = options.lines
        for n in range(options.imports):
            local_ingest.append(
                count / timed(lambda n=n: local.record_many(f"li-{n}", lines(f"li{n}", count)))
            )
            http_ingest.append(
                count / timed(lambda n=n: remote.record_many(f"hi-{n}", lines(f"hi{n}", count)))
            )

    check_a = statistics.median(in_process) * 1000
    check_b = statistics.median(over_http) * 1000
    rtt = statistics.median(round_trip) * 1000
    ingest_a = statistics.median(local_ingest)
    ingest_b = statistics.median(http_ingest)
    budget = 1.5 * (check_a + rtt)
    print(f"{'measure':44} {'median':>12}")
    print(f"{'check, in process (ms)':44} {check_a:12.2f}")
    print(f"{'check, over HTTP (ms)':44} {check_b:12.2f}")
    print(f"{'bare loopback round trip, GET /healthz (ms)':44} {rtt:12.2f}")
    print(f"{'budget 1.5 x (in process + round trip) (ms)':44} {budget:12.2f}")
    print(f"{'bulk import, local (lines/s)':44} {ingest_a:12.0f}")
    print(f"{'bulk import, NDJSON over HTTP (lines/s)':44} {ingest_b:12.0f}")
    print(f"{'HTTP / local ingest':44} {ingest_b / ingest_a:12.2f}")
    check_ok = check_b <= budget
    ingest_ok = ingest_b >= 0.5 * ingest_a
    print(f"check target (<= 1.5 x): {'met' if check_ok else 'MISSED'}; ", end="")
    print(f"ingest target (>= 0.5 x): {'met' if ingest_ok else 'MISSED'}")
    raise SystemExit(0 if check_ok and ingest_ok else 1)


if __name__ == "__main__":
    main()
