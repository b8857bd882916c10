"""Sixteen checks of one account at once from other processes: real `preflight check` CLI
processes (SQLite and PostgreSQL), and HTTP clients through two real `preflight serve`
replicas on one PostgreSQL database. Balance 100, need 10 each, no outcomes: exactly 10
`go` and 6 `at_risk` in every round, as one after another.

Each round's checks meet at the vendor gate; between rounds the round's batches are
finished, so the next one starts from a held need of 0 again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path

import httpx
import pytest

from preflight.api import Preflight
from preflight.domain.verdict import Verdict
from preflight.sandbox import SandboxServer
from preflight.services.runtime import Runtime
from preflight.services.tokens import create_token
from tests.concurrency.conftest import settings_with, vendor_env
from tests.concurrency.support import (
    BARRIER_TIMEOUT,
    VendorGate,
    account_rows,
    assert_serialised,
    run_together,
)

CHECKS = 16
#: Rounds per test: three, but two of CLI processes (each round starts sixteen cold
#: interpreters, half a minute or more on a busy two-core machine).
ROUNDS = 3
CLI_ROUNDS = 2
ACCOUNT = "default"
PREFLIGHT = (sys.executable, "-m", "preflight")


def process_env(url: str, gate: VendorGate, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    env.update(
        {"XDG_DATA_HOME": str(tmp_path / "data"), "PREFLIGHT_DATABASE_URL": url, **vendor_env(gate)}
    )
    return env


def rounds(
    url: str,
    gate: VendorGate,
    sandbox: SandboxServer,
    run_round: Callable[[str], dict[str, Verdict]],
    *,
    count: int = ROUNDS,
) -> None:
    """``count`` rounds of CHECKS checks of 10 at a balance of 100, each checked as above."""
    sandbox.set_balance(credits=Decimal(100))
    with Preflight(settings_with(url, gate)) as admin:
        for number in range(count):
            prefix = f"round-{number}-"
            gate.arm(CHECKS)
            answered = run_round(prefix)
            gate.disarm()
            rows = assert_serialised(
                url, ACCOUNT, answered, batch_prefix=prefix, held_before=Decimal(0)
            )
            assert Counter(answered.values()) == {Verdict.GO: 10, Verdict.AT_RISK: 6}
            assert rows.held_need == Decimal(160)  # an at_risk batch goes ahead too
            for batch_id in answered:
                admin.finish(batch_id, snapshot=False)
            assert account_rows(url, ACCOUNT).held_need == 0


@pytest.mark.slow
def test_sixteen_cli_processes(
    url: str, gate: VendorGate, sandbox: SandboxServer, tmp_path: Path
) -> None:
    env = process_env(url, gate, tmp_path)

    def run_round(prefix: str) -> dict[str, Verdict]:
        processes = [
            subprocess.Popen(
                [*PREFLIGHT, "check", f"{prefix}{i}", "--need", "10", "--format", "json"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(CHECKS)
        ]
        answered: dict[str, Verdict] = {}
        for process in processes:
            out, err = process.communicate(timeout=BARRIER_TIMEOUT + 60)
            assert process.returncode == 0, err
            # A deadlock would be retried, and said so, as a database retry.
            assert "database_retry" not in err, err
            result = json.loads(out)
            answered[result["batch_id"]] = Verdict(result["verdict"])
        return answered

    rounds(url, gate, sandbox, run_round, count=CLI_ROUNDS)


@contextmanager
def replica(env: dict[str, str]) -> Iterator[str]:
    """`preflight serve --port 0` as a process of its own; its URL, once it listens."""
    server = subprocess.Popen(
        [*PREFLIGHT, "serve", "--port", "0"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    stderr = server.stderr
    try:
        url = None
        for line in stderr:  # blocks until the server says where it listens
            found = re.search(r"running on (http://127\.0\.0\.1:[0-9]+)", line)
            if found:
                url = found[1]
                break
        assert url is not None, "the replica exited before it listened"
        # Read on, so that the server never blocks on a full pipe.
        drain = threading.Thread(target=stderr.read, daemon=True)
        drain.start()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        stderr.close()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_sixteen_http_clients_through_two_replicas(
    url: str, gate: VendorGate, sandbox: SandboxServer, tmp_path: Path
) -> None:
    with Runtime(settings_with(url, gate)) as runtime:
        token = create_token(runtime, "replicas", "check").token.reveal()
    headers = {"Authorization": f"Bearer {token}"}
    env = process_env(url, gate, tmp_path)
    with ExitStack() as stack:
        replicas = [stack.enter_context(replica(env)) for _ in range(2)]
        client = stack.enter_context(httpx.Client(timeout=BARRIER_TIMEOUT + 60))
        for n, base in enumerate(replicas):
            # Each replica's first check before the barrier (no need: it holds nothing):
            # a fresh server's first requests at once are another test's subject.
            first = client.post(f"{base}/v1/batches/warm-up-{n}/check", json={}, headers=headers)
            assert first.status_code == 200, first.text

        def check(base: str, batch_id: str) -> tuple[str, Verdict]:
            answer = client.post(
                f"{base}/v1/batches/{batch_id}/check", json={"need": "10"}, headers=headers
            )
            assert answer.status_code == 200, answer.text
            return batch_id, Verdict(answer.json()["verdict"])

        def run_round(prefix: str) -> dict[str, Verdict]:
            calls = [partial(check, replicas[i % 2], f"{prefix}{i}") for i in range(CHECKS)]
            return dict(run_together(calls))

        rounds(url, gate, sandbox, run_round)
