"""The metrics are built once per process, however many threads ask for them first.

Each test runs a fresh interpreter: the race is on the first use in a process (the first
caller imports prometheus_client and registers the metrics), which a test process that
already recorded something would never meet again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from tests.support import upgrade_schema

pytestmark = pytest.mark.slow

THREADS = 16

# Threads sharing one Preflight, released together by a barrier for their first checks;
# then a second Preflight in the same process checks too (it reuses the metrics).
PROGRAM = """
import json, sys, threading
from preflight import Preflight

threads = int(sys.argv[1])
barrier = threading.Barrier(threads)
errors, verdicts = [], []

with Preflight() as pf:
    def first_check(n):
        barrier.wait()
        try:
            verdicts.append(pf.check(f"first-{n}", need="1").verdict)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=first_check, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with Preflight() as second:
        verdicts.append(second.check("second", need="1").verdict)
    stored = len([item for item in pf.batches() if item.batch.batch_id.startswith("first-")])

from preflight import metrics
from prometheus_client import REGISTRY
checks = sum(
    sample.value
    for family in REGISTRY.collect() if family.name == "preflight_checks"
    for sample in family.samples if sample.name == "preflight_checks_total"
)
print(json.dumps({"errors": errors, "verdicts": verdicts, "stored": stored, "counted": checks}))
"""


def test_threads_sharing_one_preflight_make_their_first_checks_together(
    database_url: str, sandbox: SandboxServer
) -> None:
    upgrade_schema(database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    env.update(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            "PREFLIGHT_DEADLINE": "20",
        }
    )
    run = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(THREADS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["errors"] == []
    assert len(result["verdicts"]) == THREADS + 1
    assert result["stored"] == THREADS
    # One set of metrics counted every check, the second Preflight's included.
    assert result["counted"] == THREADS + 1
