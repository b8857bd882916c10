"""`preflight simulate --vendor NAME`: the sandbox as another vendor, run as a new user would."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from decimal import Decimal

import httpx
import pytest


def test_simulate_as_deepgram_says_how_to_connect_and_serves_its_api() -> None:
    command = [sys.executable, "-m", "preflight", "simulate", "--vendor", "deepgram"]
    with subprocess.Popen(
        [*command, "--port", "0", "--balance", "usd=12.50", "--token", "tok"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        assert process.stdout is not None
        try:
            ready, _, _ = select.select([process.stdout], [], [], 20)
            assert ready, "simulate did not announce itself"
            lines = [process.stdout.readline() for _ in range(4)]
            url = lines[0].split(" listening on ", 1)[1].split()[0]

            assert lines == [
                f"sandbox vendor deepgram listening on {url} (token: tok)\n",
                "starting balance: usd 12.50, hour absent\n",
                "point preflight at it: PREFLIGHT_VENDOR=deepgram "
                f"PREFLIGHT_VENDOR_URL={url} PREFLIGHT_API_TOKEN=tok\n",
                "deepgram project id: sandbox-project\n",
            ]
            with httpx.Client(
                base_url=url, headers={"Authorization": "Token tok"}, timeout=5
            ) as http:
                assert http.post("/v1/listen", json={"cost": "0.25"}).status_code == 200
                balances = http.get("/v1/projects/sandbox-project/balances").json()["balances"]
                assert sum(Decimal(str(b["amount"])) for b in balances) == Decimal("12.25")
                assert http.post("/v1/listen", json={"cost": "13"}).status_code == 402
                assert http.get("/_sandbox/state").json()["spent"] == {"usd": "0.25", "hour": "0"}
        finally:
            process.terminate()
            out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert (out, err) == ("", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--vendor", "deepgram", "--balance", "gold=1"],
            "Invalid value for --balance: the deepgram vendor has no meter gold "
            "(its meters: usd, hour)",
        ),
        (
            ["--vendor", "elevenlabs", "--credits", "5"],
            "--credits is the default vendor's; give the elevenlabs vendor's meters as "
            "--balance METER=AMOUNT (characters)",
        ),
        (["--balance", "credits"], "Invalid value for --balance: 'credits' is not METER=AMOUNT"),
    ],
)
def test_a_meter_the_vendor_lacks_is_one_line_exit_2(args: list[str], message: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "preflight", "simulate", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"preflight: error: {message} (see `preflight simulate --help`)"
    ]


def test_simulate_help_lists_the_vendors() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "preflight", "simulate", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert run.returncode == 0
    assert "[default|openrouter|elevenlabs|deepgram|deepseek|custom]" in run.stdout
    assert "/_sandbox/reset_period" in run.stdout
