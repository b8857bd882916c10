"""Vendor adapters, parsing bodies shaped like each vendor's documented answers.

The bodies in ``vendor_bodies/`` follow each vendor's public API reference (numbers and
numeric strings, extra fields the adapter ignores); the tables below vary them: missing and
null fields, wrong types, the vendor's own error bodies. Requests go through
``httpx.MockTransport``, so paths and auth headers are checked too.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from preflight.adapters import ADAPTER_NAMES, Adapter, build_adapter
from preflight.errors import AuthError, ConfigError, UnusableResponseError, UsageError
from preflight.secret import Secret
from preflight.settings import load_settings
from preflight.vendor import RetryPolicy, VendorClient, parse_profile

BODIES = Path(__file__).parent / "vendor_bodies"
TOKEN = "vendor-key-0123456789abcdef"
D = Decimal


def body(name: str) -> str:
    return (BODIES / f"{name}.json").read_text()


def edited(name: str, change: dict[str, Any], at: str | None = None) -> str:
    """The recorded body with some fields replaced (at the top, or inside ``at``)."""
    data = json.loads(body(name))
    target = data[at] if at else data
    for key, value in change.items():
        if value is _DROP:
            target.pop(key, None)
        else:
            target[key] = value
    return json.dumps(data)


_DROP = object()
OPENROUTER = build_adapter("openrouter", {}, "t")
OPENROUTER_MANAGED = build_adapter("openrouter", {"management_key": True}, "t")
ELEVENLABS = build_adapter("elevenlabs", {}, "t")
DEEPGRAM = build_adapter("deepgram", {"project_id": "proj-42"}, "t")
DEEPSEEK = build_adapter("deepseek", {}, "t")
DECLARATIVE = build_adapter(
    "declarative",
    {
        "balance_path": "/v2/account/balance",
        "auth_header": "X-Api-Key",
        "auth_scheme": "",
        "meters": {
            "requests": {"path": "account.plan.quota", "minus": "account.plan.used"},
            "wallet": {"path": "account.wallet.balance_cents", "scale": "0.01"},
            "first": "account.list.0.value",
        },
        "quota_status": [400],
        "quota_body": "credit balance is too low",
        "user_id": "account.id",
    },
    "[accounts.acme]",
)


# ---------------------------------------------------------------- reading bodies


@pytest.mark.parametrize(
    ("adapter", "raw", "meters"),
    [
        pytest.param(
            OPENROUTER,
            body("openrouter_key"),
            {"limit_remaining": D("74.5"), "credits": None},
            id="openrouter-capped-key",
        ),
        pytest.param(
            OPENROUTER,
            body("openrouter_key_uncapped"),
            {"limit_remaining": None, "credits": None},
            id="openrouter-no-cap-is-absent",
        ),
        pytest.param(
            OPENROUTER,
            edited("openrouter_key", {"limit_remaining": "12.000001"}, at="data"),
            {"limit_remaining": D("12.000001"), "credits": None},
            id="openrouter-string",
        ),
        pytest.param(
            ELEVENLABS,
            body("elevenlabs_subscription"),
            {"characters": D(97500)},
            id="elevenlabs",
        ),
        pytest.param(
            ELEVENLABS,
            edited("elevenlabs_subscription", {"character_count": "100500"}),
            {"characters": D(0)},
            id="elevenlabs-over-the-limit-is-zero",
        ),
        pytest.param(
            ELEVENLABS,
            edited("elevenlabs_subscription", {"character_limit": _DROP}),
            {"characters": None},
            id="elevenlabs-missing-limit",
        ),
        pytest.param(
            DEEPGRAM,
            body("deepgram_balances"),
            {"usd": D("199.75"), "hour": D(3600)},
            id="deepgram-sums-by-units",
        ),
        pytest.param(DEEPGRAM, '{"balances": []}', {"usd": None}, id="deepgram-none"),
        pytest.param(DEEPGRAM, "{}", {"usd": None}, id="deepgram-no-list"),
        pytest.param(
            DEEPSEEK,
            body("deepseek_balance"),
            {"cny": D("110.00"), "usd": D("-0.42")},
            id="deepseek-negative-kept",
        ),
        pytest.param(
            DEEPSEEK,
            '{"is_available": true, "balance_infos": [{"currency": "USD", "total_balance": 5}]}',
            {"usd": D(5), "cny": None},
            id="deepseek-number",
        ),
        pytest.param(
            DECLARATIVE,
            '{"account": {"id": "acct_1", "plan": {"quota": 1000, "used": "250"},'
            ' "wallet": {"balance_cents": 12345}, "list": [{"value": "7.5"}], "x": [1]}}',
            {"requests": D(750), "wallet": D("123.45"), "first": D("7.5")},
            id="declarative",
        ),
        pytest.param(
            DECLARATIVE,
            '{"account": {"plan": {"quota": 10, "used": 12}, "wallet": {}, "list": []}}',
            {"requests": D(-2), "wallet": None, "first": None},
            id="declarative-missing-and-negative",
        ),
    ],
)
def test_meters_are_read_exactly(
    adapter: Adapter, raw: str, meters: dict[str, Decimal | None]
) -> None:
    profile = parse_profile(raw, adapter=adapter)

    assert profile.meters == meters
    assert profile.raw == raw
    for name, value in meters.items():
        assert profile.meter(name) == value
        assert value is None or str(value) == str(profile.meter(name))  # digits kept


@pytest.mark.parametrize(
    ("adapter", "raw", "detail"),
    [
        pytest.param(
            OPENROUTER,
            edited("openrouter_key", {"limit_remaining": True}, at="data"),
            "data.limit_remaining is not a number",
            id="openrouter-bool",
        ),
        pytest.param(OPENROUTER, '{"data": [1]}', "data of /api/v1/key is an array", id="or-data"),
        pytest.param(
            ELEVENLABS,
            edited("elevenlabs_subscription", {"character_count": "many"}),
            "character_count: not a decimal amount",
            id="elevenlabs-text",
        ),
        pytest.param(
            ELEVENLABS,
            edited("elevenlabs_subscription", {"character_limit": -5}),
            "character_limit: must be a non-negative amount",
            id="elevenlabs-negative",
        ),
        pytest.param(
            DEEPGRAM,
            '{"balances": [{"amount": 1, "units": "US Dollars!"}]}',
            "balances[0].units is not a usable meter name",
            id="deepgram-units",
        ),
        pytest.param(DEEPGRAM, '{"balances": {"a": 1}}', "balances is not a list", id="dg-list"),
        pytest.param(
            DEEPSEEK,
            '{"is_available": "yes", "balance_infos": []}',
            "is_available is not a boolean",
            id="deepseek-available",
        ),
        pytest.param(
            DEEPSEEK,
            '{"balance_infos": [{"currency": "USD", "total_balance": "1e999"}]}',
            "more than 40 digits",
            id="deepseek-huge",
        ),
        pytest.param(
            DECLARATIVE,
            '{"account": {"plan": {"quota": [1], "used": 0}}}',
            "account.plan.quota is not a number",
            id="declarative-list",
        ),
    ],
)
def test_unusable_values_make_the_body_unusable(adapter: Adapter, raw: str, detail: str) -> None:
    with pytest.raises(UnusableResponseError, match=r"^unusable response: ") as info:
        parse_profile(raw, adapter=adapter)

    assert detail in str(info.value)


def test_deepseek_is_available_false_blocks_whatever_the_balance() -> None:
    assert parse_profile(body("deepseek_balance"), adapter=DEEPSEEK).blocked is None
    blocked = parse_profile(body("deepseek_unavailable"), adapter=DEEPSEEK).blocked

    assert blocked is not None
    assert "is_available: false" in blocked


def test_meters_keep_the_vendors_order_for_auto() -> None:
    # DeepSeek lists CNY first: auto reads the first currency the vendor lists.
    assert list(parse_profile(body("deepseek_balance"), adapter=DEEPSEEK).meters) == [
        "cny",
        "usd",
    ]
    assert list(parse_profile(body("openrouter_key"), adapter=OPENROUTER).meters) == [
        "limit_remaining",
        "credits",
    ]


# ---------------------------------------------------------------- quota signals


@pytest.mark.parametrize(
    ("adapter", "status", "error", "quota"),
    [
        (ELEVENLABS, 401, body("elevenlabs_quota_exceeded"), True),
        (ELEVENLABS, 401, body("elevenlabs_invalid_key"), False),
        (ELEVENLABS, 401, None, False),
        (ELEVENLABS, 429, "quota_exceeded", False),
        (OPENROUTER, 401, body("elevenlabs_quota_exceeded"), False),  # only ElevenLabs says so
        (OPENROUTER, 400, body("openrouter_insufficient"), False),
        (DEEPGRAM, 400, body("deepgram_insufficient"), False),
        (DEEPSEEK, 400, body("deepseek_insufficient"), False),
        (DECLARATIVE, 400, '{"message": "Your credit balance is too low to run this"}', True),
        (DECLARATIVE, 400, '{"message": "CREDIT BALANCE IS TOO LOW"}', True),
        (DECLARATIVE, 400, '{"message": "bad request"}', False),
        (DECLARATIVE, 403, "credit balance is too low", False),
        (build_adapter("default", {}, "t"), 401, "quota_exceeded", False),
    ],
)
def test_quota_signals_beyond_402(
    adapter: Adapter, status: int, error: str | None, quota: bool
) -> None:
    assert adapter.quota_signal(status, error) is quota


# ---------------------------------------------------------------- requests


class Vendor:
    """A MockTransport vendor answering by path; records every request."""

    def __init__(self, answers: dict[str, tuple[int, str]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, text = self.answers[request.url.path]
        return httpx.Response(status, text=text, headers={"Content-Type": "application/json"})


def client_for(adapter: Adapter, vendor: Vendor) -> VendorClient:
    http = httpx.Client(base_url="https://vendor.test", transport=httpx.MockTransport(vendor))
    return VendorClient(
        http,
        Secret(TOKEN),
        policy=RetryPolicy(attempts=2, backoff_base=0),
        sleep=lambda _s: None,
        adapter=adapter,
    )


@pytest.mark.parametrize(
    ("adapter", "path", "header", "value"),
    [
        (OPENROUTER, "/api/v1/key", "Authorization", f"Bearer {TOKEN}"),
        (ELEVENLABS, "/v1/user/subscription", "xi-api-key", TOKEN),
        (DEEPGRAM, "/v1/projects/proj-42/balances", "Authorization", f"Token {TOKEN}"),
        (DEEPSEEK, "/user/balance", "Authorization", f"Bearer {TOKEN}"),
        (DECLARATIVE, "/v2/account/balance", "X-Api-Key", TOKEN),
    ],
)
def test_each_vendor_is_asked_on_its_path_with_its_auth_header(
    adapter: Adapter, path: str, header: str, value: str
) -> None:
    vendor = Vendor({path: (200, '{"data": {}, "account": {}}')})

    client_for(adapter, vendor).get_profile()

    (request,) = vendor.requests
    assert request.url.path == path
    assert request.headers[header] == value


def test_openrouter_with_a_management_key_reads_both_endpoints_and_keeps_both_bodies() -> None:
    vendor = Vendor(
        {
            "/api/v1/key": (200, body("openrouter_key_uncapped")),
            "/api/v1/credits": (200, body("openrouter_credits")),
        }
    )

    profile = client_for(OPENROUTER_MANAGED, vendor).get_profile()

    assert [r.url.path for r in vendor.requests] == ["/api/v1/key", "/api/v1/credits"]
    # No cap on the key: auto rests on the account's credits (100.5 − 25.75).
    assert profile.meters == {"limit_remaining": None, "credits": D("74.75")}
    kept = json.loads(profile.raw)
    assert kept == {
        "/api/v1/key": json.loads(body("openrouter_key_uncapped")),
        "/api/v1/credits": json.loads(body("openrouter_credits")),
    }


def test_a_plain_401_on_the_balance_endpoint_is_still_auth_failed() -> None:
    vendor = Vendor({"/v1/user/subscription": (401, body("elevenlabs_invalid_key"))})

    with pytest.raises(AuthError):
        client_for(ELEVENLABS, vendor).get_profile()
    assert len(vendor.requests) == 1  # never retried


def test_only_the_default_vendor_has_a_profile_to_update() -> None:
    vendor = Vendor({})

    with pytest.raises(UsageError, match="the elevenlabs vendor has no profile to update"):
        client_for(ELEVENLABS, vendor).update_profile({"webhookUrl": "https://x.test/h"})
    assert vendor.requests == []


# ---------------------------------------------------------------- configuration


def test_two_accounts_on_two_adapters_in_one_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "preflight.toml"
    config.write_text(
        """
[accounts.voices]
vendor = "elevenlabs"
token_env = "VOICES_KEY"

[accounts.speech]
vendor = "deepgram"
token_env = "SPEECH_KEY"
project_id = "proj-42"
vendor_url = "http://127.0.0.1:9"
"""
    )
    settings = load_settings(
        {
            "PREFLIGHT_CONFIG": str(config),
            "VOICES_KEY": "voices-key-123456",
            "SPEECH_KEY": "speech-key-123456",
        }
    )

    voices, speech = settings.accounts["voices"], settings.accounts["speech"]
    assert (voices.adapter.name, speech.adapter.name) == ("elevenlabs", "deepgram")
    assert settings.vendor_url_for(voices) == "https://api.elevenlabs.io"
    assert settings.vendor_url_for(speech) == "http://127.0.0.1:9"
    assert speech.adapter.paths() == ("/v1/projects/proj-42/balances",)
    assert settings.accounts["default"].adapter.name == "default"


def test_the_default_account_takes_its_vendor_from_preflight_vendor() -> None:
    settings = load_settings({"PREFLIGHT_VENDOR": "deepseek", "PREFLIGHT_METER": "usd"})

    account = settings.account_settings()
    assert account.adapter.name == "deepseek"
    assert settings.vendor_url_for(account) == "https://api.deepseek.com"
    explicit = load_settings(
        {"PREFLIGHT_VENDOR": "elevenlabs", "PREFLIGHT_VENDOR_URL": "http://127.0.0.1:8765"}
    )
    assert explicit.vendor_url_for(explicit.account_settings()) == "http://127.0.0.1:8765"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"vendor": "acme"}, "vendor: must be one of default, openrouter"),
        ({"vendor": "deepgram"}, "project_id: the Deepgram project id"),
        ({"vendor": "deepgram", "project_id": "a b"}, "project_id"),
        ({"vendor": "openrouter", "management_key": "yes"}, "management_key: must be true"),
        ({"vendor": "elevenlabs", "project_id": "x"}, "unknown key(s) project_id"),
        ({"vendor": "declarative", "vendor_url": "http://x.test"}, "balance_path"),
        (
            {"vendor": "declarative", "balance_path": "/b", "meters": {"m": "a.b"}},
            "vendor_url: the declarative vendor needs one",
        ),
        (
            {"vendor": "declarative", "vendor_url": "http://x.test", "balance_path": "/b"},
            "meters: needs at least one",
        ),
        (
            {
                "vendor": "declarative",
                "vendor_url": "http://x.test",
                "balance_path": "/b",
                "meters": {"Bad Name": "a"},
            },
            "a meter name is 1-32 lower-case",
        ),
        (
            {
                "vendor": "declarative",
                "vendor_url": "http://x.test",
                "balance_path": "/b",
                "meters": {"m": {"path": "a", "scale": 0.01}},
            },
            'meters.m.scale: write it as text, e.g. "0.01"',
        ),
        (
            {
                "vendor": "declarative",
                "vendor_url": "http://x.test",
                "balance_path": "/b",
                "meters": {"m": "a"},
                "quota_body": "too low",
            },
            "quota_body: needs quota_status",
        ),
        (
            {
                "vendor": "declarative",
                "vendor_url": "http://x.test",
                "balance_path": "/b",
                "meters": {"m": "a..b"},
            },
            "meters.m: must be a dotted JSON path",
        ),
    ],
)
def test_bad_adapter_tables_are_config_errors_naming_the_key(
    tmp_path: Path, table: dict[str, Any], message: str
) -> None:
    lines = ["[accounts.acme]", 'token_env = "ACME_KEY"']
    meters = table.pop("meters", None)
    for key, value in table.items():
        lines.append(f"{key} = {json.dumps(value)}")
    if meters is not None:
        lines.append("[accounts.acme.meters]")
        for name, spec in meters.items():
            if isinstance(spec, dict):
                inner = ", ".join(
                    f"{k} = {v if isinstance(v, float) else json.dumps(v)}" for k, v in spec.items()
                )
                lines.append(f'"{name}" = {{ {inner} }}')
            else:
                lines.append(f'"{name}" = {json.dumps(spec)}')
    config = tmp_path / "preflight.toml"
    config.write_text("\n".join(lines) + "\n")

    with pytest.raises(ConfigError) as info:
        load_settings({"PREFLIGHT_CONFIG": str(config), "ACME_KEY": "acme-key-123456"})

    assert "[accounts.acme]" in str(info.value)
    assert message in str(info.value)


def test_a_meter_setting_must_be_one_of_the_default_vendors() -> None:
    with pytest.raises(ConfigError, match="must be one of auto, characters"):
        load_settings({"PREFLIGHT_VENDOR": "elevenlabs", "PREFLIGHT_METER": "credits"})
    assert load_settings({"PREFLIGHT_VENDOR": "elevenlabs", "PREFLIGHT_METER": "characters"})


def test_every_adapter_is_listed() -> None:
    assert ADAPTER_NAMES == (
        "default",
        "openrouter",
        "elevenlabs",
        "deepgram",
        "deepseek",
        "declarative",
    )
