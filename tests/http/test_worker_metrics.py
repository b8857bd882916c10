"""`preflight worker` serves the metrics registry on PREFLIGHT_METRICS_PORT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from tests.http_support import free_port


def test_the_worker_serves_its_audit_and_vendor_metrics(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    env.update(
        {
            "PREFLIGHT_DATABASE_URL": f"sqlite:///{tmp_path / 'worker.db'}",
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            "PREFLIGHT_METRICS_PORT": str(port),
        }
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "preflight", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        text = ""
        deadline = time.monotonic() + 30
        while "preflight_audit_runs_total{" not in text and time.monotonic() < deadline:
            time.sleep(0.1)
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                continue
        assert 'preflight_audit_runs_total{result="ok"} 1.0' in text
        assert 'preflight_vendor_requests_total{status_class="2xx"}' in text
        assert 'preflight_balance{account="default",meter="credits"}' in text
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
