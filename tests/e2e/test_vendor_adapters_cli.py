"""Each vendor adapter end to end: the real CLI against the sandbox speaking that vendor's API,
on SQLite and PostgreSQL.

For every adapter the same story: a check while the balance is enough, the batch's own paid
jobs, an unrecorded consumer spending the balance, and the vendor refusing the next job in
its own way (a 402, ElevenLabs' 401 ``quota_exceeded``, a declarative vendor's 400) →
``concurrent_consumption`` with the exact foreign consumption; then a batch checked short and
dispatched anyway → ``pre_existing_low_balance``. Two accounts on two vendors in one file
never share their consumption.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from preflight.sandbox import DEFAULT_TOKEN, DIALECTS, SandboxServer
from tests.e2e.conftest import Cli
from tests.e2e.test_postmortem_cli import as_json, ok, only_failure, show, succeeded

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Vendor:
    """One adapter under test: the sandbox dialect that speaks its API and its settings."""

    adapter: str
    dialect: str
    meter: str
    account_table: dict[str, Any] = field(default_factory=dict)
    sandbox_meters: dict[str, Decimal | None] = field(default_factory=dict)


DECLARATIVE_TABLE: dict[str, Any] = {
    "balance_path": "/v2/account/balance",
    "auth_header": "X-Api-Key",
    "auth_scheme": "",
    "quota_status": [400],
    "quota_body": "credit balance is too low",
    "meters": {
        "requests": {"path": "account.plan.quota", "minus": "account.plan.used"},
        "wallet": {"path": "account.wallet.balance_cents", "scale": "0.01"},
    },
}

VENDORS = [
    # No cap on the key: the check rests on the account's credits (a management key).
    Vendor(
        "openrouter",
        "openrouter",
        "credits",
        {"management_key": True},
        {"limit_remaining": None},
    ),
    Vendor("elevenlabs", "elevenlabs", "characters"),
    Vendor("deepgram", "deepgram", "usd", {"project_id": "sandbox-project"}),
    Vendor("deepseek", "deepseek", "usd"),
    Vendor("declarative", "custom", "requests", DECLARATIVE_TABLE),
]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def account_table(name: str, vendor: Vendor, url: str, token_env: str | None = None) -> str:
    lines = [f"[accounts.{name}]", f'vendor = "{vendor.adapter}"', f'vendor_url = "{url}"']
    if token_env:
        lines.append(f'token_env = "{token_env}"')
    meters = vendor.account_table.get("meters")
    lines += [f"{k} = {toml_value(v)}" for k, v in vendor.account_table.items() if k != "meters"]
    if meters:
        lines.append(f"[accounts.{name}.meters]")
        lines += [f"{k} = {toml_value(v)}" for k, v in meters.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(params=VENDORS, ids=[v.adapter for v in VENDORS])
def vendor(request: pytest.FixtureRequest) -> Vendor:
    chosen: Vendor = request.param
    return chosen


@pytest.fixture
def sandbox_options(vendor: Vendor) -> dict[str, Any]:
    # A balance of 100 on the meter under test (the other meters as the sandbox starts them).
    return {"vendor": vendor.dialect, "meters": {**vendor.sandbox_meters, vendor.meter: 100}}


@pytest.fixture
def configured(
    cli_env: dict[str, str], sandbox: SandboxServer, vendor: Vendor, tmp_path: Path
) -> Vendor:
    """The default account on ``vendor``'s adapter, its token from PREFLIGHT_API_TOKEN."""
    config = tmp_path / "preflight.toml"
    config.write_text(account_table("default", vendor, sandbox.url))
    cli_env["PREFLIGHT_CONFIG"] = str(config)
    return vendor


def paid_job(sandbox: SandboxServer, cost: str, meter: str) -> httpx.Response:
    """One paid job on the sandbox, in its vendor's dialect."""
    dialect = DIALECTS[sandbox.vendor]
    path = dialect.job_path.replace("{voice_id}", "sandbox-voice")
    return httpx.post(
        f"{sandbox.url}{path}",
        json={"cost": cost, "meter": meter},
        headers=dialect.auth_headers(DEFAULT_TOKEN),
        timeout=5,
    )


def record_refusal(cli: Cli, batch: str, job: str, refused: httpx.Response) -> dict[str, Any]:
    """A job the vendor refused, recorded live with its status and its error body."""
    arguments = ["record", batch, job, "--status", "failed", "--expected-cost", "40"]
    arguments += ["--http-status", str(refused.status_code), "--error", refused.text]
    data: dict[str, Any] = as_json(cli(*arguments, "--format", "json"))
    return data


def test_each_adapter_tags_concurrent_consumption_and_a_low_balance_exactly(
    cli_any_db: Cli, sandbox: SandboxServer, configured: Vendor
) -> None:
    meter = configured.meter
    checked = as_json(cli_any_db("check", "B", "--need", "60", "--format", "json"))
    assert (checked["verdict"], checked["meter"], checked["balance"]) == ("go", meter, "100")

    assert [paid_job(sandbox, "10", meter).status_code for _ in range(2)] == [200, 200]
    ok(cli_any_db("record", "B", "--from", "-", stdin=succeeded(("j1", "10"), ("j2", "10"))))
    sandbox.consume(Decimal(50), meter)  # a consumer that records nothing
    refused = paid_job(sandbox, "40", meter)  # 100 − 20 − 50 = 30 left
    assert refused.status_code == DIALECTS[sandbox.vendor].quota_status
    recorded = record_refusal(cli_any_db, "B", "j3", refused)
    assert recorded["quota_failure"] is True
    assert recorded["tag"] == "concurrent_consumption"

    failure = only_failure(show(cli_any_db, "B"))
    evidence = failure["evidence"]
    assert (evidence["b0"], evidence["ba"], evidence["own"]) == ("100", "30", "20")
    assert (evidence["foreign"], evidence["foreign_is_lower_bound"]) == ("50", False)
    assert (failure["attribution"], failure["unattributed"]) == ([], "50")
    # The report draws the batch on the vendor's own meter.
    report = ok(cli_any_db("report", "B", "--output", "-")).out
    assert f'<th class="num">{meter}</th>' in report
    assert "concurrent_consumption" in report

    # Checked short (30 < 60) and dispatched anyway: the low balance was already there.
    short = cli_any_db("check", "C", "--need", "60", "--format", "json")
    assert short.code == 10, short.err
    assert json.loads(short.out)["verdict"] == "insufficient"
    refused = paid_job(sandbox, "40", meter)
    low = record_refusal(cli_any_db, "C", "k1", refused)
    assert low["tag"] == "pre_existing_low_balance"
    assert only_failure(show(cli_any_db, "C"))["evidence"]["b0"] == "30"


@pytest.mark.parametrize("vendor", [VENDORS[1], VENDORS[4]], ids=["elevenlabs", "declarative"])
def test_the_vendors_quota_signal_is_read_from_json_lines_and_only_its_words_count(
    cli_any_db: Cli, sandbox: SandboxServer, configured: Vendor
) -> None:
    ok(cli_any_db("check", "B", "--need", "10"))
    status = DIALECTS[sandbox.vendor].quota_status
    refused = paid_job(sandbox, "1000", configured.meter)  # far more than the balance
    assert refused.status_code == status
    lines = [
        # The vendor's own quota answer, with the cost the job would have had.
        {"job_id": "j1", "status": "failed", "http_status": status, "error": refused.text,
         "cost": "1000"},
        # The same status, other words: an ordinary failure, whose cost was consumed.
        {"job_id": "j2", "status": "failed", "http_status": status, "error": "bad request",
         "cost": "1"},
    ]  # fmt: skip
    imported = as_json(
        cli_any_db(
            "record", "B", "--from", "-", "--format", "json",
            stdin="".join(json.dumps(line) + "\n" for line in lines),
        )
    )  # fmt: skip
    assert sum(imported["tags"].values()) == 1

    data = show(cli_any_db, "B")
    assert [f["job_id"] for f in data["quota_failures"]] == ["j1"]
    assert data["outcomes"]["cost"] == "1"  # the quota failure consumed nothing


# ---------------------------------------------------------------- two accounts, two vendors


@pytest.fixture
def two_vendors() -> Iterator[tuple[SandboxServer, SandboxServer]]:
    with (
        SandboxServer(vendor="deepgram", meters={"usd": Decimal(100)}) as speech,
        SandboxServer(vendor="elevenlabs", meters={"characters": Decimal(100)}) as voices,
    ):
        yield speech, voices


# Once, not per vendor (the module's own sandbox, on the first vendor, stays unused).
@pytest.mark.parametrize("vendor", [VENDORS[0]], ids=["deepgram+elevenlabs"])
def test_two_accounts_on_two_vendors_never_share_their_consumption(
    cli_any_db: Cli,
    cli_env: dict[str, str],
    two_vendors: tuple[SandboxServer, SandboxServer],
    tmp_path: Path,
) -> None:
    speech, voices = two_vendors
    config = tmp_path / "two.toml"
    config.write_text(
        account_table("speech", VENDORS[2], speech.url, "SPEECH_KEY")
        + account_table("voices", VENDORS[1], voices.url, "VOICES_KEY")
    )
    cli_env.update(
        {"PREFLIGHT_CONFIG": str(config), "SPEECH_KEY": DEFAULT_TOKEN, "VOICES_KEY": DEFAULT_TOKEN}
    )

    speech_check = as_json(
        cli_any_db("check", "S", "--need", "60", "--account", "speech", "--format", "json")
    )
    voices_check = as_json(
        cli_any_db("check", "V", "--need", "60", "--account", "voices", "--format", "json")
    )
    assert (speech_check["meter"], voices_check["meter"]) == ("usd", "characters")
    # V spends 60 on its own account while S's account loses 50 to an unrecorded consumer.
    assert paid_job(voices, "60", "characters").status_code == 200
    ok(cli_any_db("record", "V", "--from", "-", stdin=succeeded(("v1", "60"))))
    speech.consume(Decimal(50), "usd")
    refused = paid_job(speech, "60", "usd")  # 100 − 50 = 50 left
    assert refused.status_code == 402
    arguments = ["record", "S", "s1", "--status", "failed", "--http-status", "402"]
    data = as_json(cli_any_db(*arguments, "--expected-cost", "60", "--format", "json"))
    assert data["tag"] == "concurrent_consumption"

    failure = only_failure(show(cli_any_db, "S"))
    assert failure["evidence"]["foreign"] == "50"
    # V's 60 was spent in the same window, on the other account: never attributed here.
    assert (failure["attribution"], failure["unattributed"]) == ([], "50")


@pytest.mark.parametrize("vendor", [VENDORS[1]], ids=["elevenlabs"])
def test_a_plain_401_on_the_balance_endpoint_is_still_auth_failed(
    cli_any_db: Cli, configured: Vendor
) -> None:
    run = cli_any_db(
        "check", "B", "--need", "1", "--format", "json", env={"PREFLIGHT_API_TOKEN": "wrong-key-1"}
    )

    assert run.code == 11, run.err
    assert json.loads(run.out)["verdict"] == "auth_failed"


@pytest.mark.parametrize("vendor", [VENDORS[1]], ids=["elevenlabs"])
def test_the_audit_finds_unexplained_consumption_on_the_vendors_meter(
    cli_any_db: Cli, sandbox: SandboxServer, configured: Vendor
) -> None:
    ok(cli_any_db("audit", "--force"))
    sandbox.consume(Decimal(35), "characters")
    run = as_json(cli_any_db("audit", "--force", "--format", "json"))

    [finding] = [f for f in run[0]["findings"] if f["kind"] == "unexplained_consumption"]
    assert finding["amount"] == "35"
    assert finding["detail"]["meter"] == "characters"
