"""`preflight serve --port 0` as a process: it says where it listens, serves, stops on SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from preflight.api import Preflight
from preflight.db.migrate import SCHEMA_HEAD
from preflight.errors import NoGoError, NotFoundError
from preflight.sandbox import SandboxServer
from preflight.services.results import BatchReport, CheckResult
from tests.e2e.conftest import Cli
from tests.http_support import LiveServer


def test_serve_on_a_free_port_then_stop_on_sigterm(cli_env: dict[str, str], cli: Cli) -> None:
    created = cli("token", "create", "--name", "probe", "--scope", "read")
    assert created.code == 0, created.err
    server = subprocess.Popen(
        [sys.executable, "-m", "preflight", "serve", "--port", "0"],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            found = re.search(r"running on (http://127\.0\.0\.1:[0-9]+)", line)
            url = found[1] if found else None
        assert url is not None, "the server never said where it listens"
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        headers = {"Authorization": f"Bearer {created.out.strip()}"}
        ready = httpx.get(f"{url}/readyz", headers=headers)
        assert ready.json() == {"status": "ready", "schema_revision": SCHEMA_HEAD}
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()
    assert code == 0


def test_the_python_api_in_remote_mode(server: LiveServer, sandbox: SandboxServer) -> None:
    with Preflight.remote(server.url, server.token("py")) as pf:
        with pf.batch("py-1", need="10") as run:
            assert isinstance(run.check, CheckResult)
            assert run.check.go
            run.record("job-1", "succeeded", cost="2.50")
        report = pf.show("py-1")
        assert isinstance(report, BatchReport)
        assert report.batch.status == "finished"
        assert str(report.outcomes.cost) == "2.50"
        assert json.loads(json.dumps(report.to_dict()))["outcomes"]["total"] == 1
        with pytest.raises(NotFoundError, match="missing"):
            pf.show("missing")
        with pytest.raises(NoGoError) as refused, pf.batch("py-2", need="999999999"):
            pass
        assert refused.value.verdict == "insufficient"
