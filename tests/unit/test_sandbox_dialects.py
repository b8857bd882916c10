"""The sandbox speaking each vendor's dialect, over real loopback HTTP: bodies, auth, jobs,
quota answers, control API, faults and shape (the default dialect is tests/unit/test_sandbox.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import httpx
import pytest

from preflight.cli.admin import _SIMULATED_VENDORS
from preflight.sandbox import DEFAULT_TOKEN, DIALECTS, VENDORS, SandboxServer

OTHERS = [name for name in VENDORS if name != "default"]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def exact(response: httpx.Response) -> object:
    """The body with JSON numbers as exact Decimals, as preflight itself must read them."""
    return json.loads(response.content, parse_float=Decimal, parse_int=Decimal)


@contextmanager
def speaking(
    vendor: str, meters: dict[str, Decimal | None] | None = None
) -> Iterator[tuple[SandboxServer, httpx.Client]]:
    """A sandbox speaking ``vendor``, and a client that authenticates as that vendor wants."""
    with (
        SandboxServer(vendor=vendor, meters=meters) as server,
        httpx.Client(
            base_url=server.url,
            headers=server.dialect.auth_headers(DEFAULT_TOKEN),
            timeout=5,
            verify=False,  # plain HTTP on loopback: only skips loading the CA bundle
        ) as http,
    ):
        yield server, http


def balance_path(vendor: str, index: int = 0) -> str:
    dialect = DIALECTS[vendor]
    return dialect.balance_paths[index].replace("{project_id}", dialect.project_id or "")


def job_path(vendor: str) -> str:
    return DIALECTS[vendor].job_path.replace("{voice_id}", "21m00Tcm4TlvDq8ikWAM")


def without_request_id(body: object) -> object:
    assert isinstance(body, dict)
    if "request_id" in body:
        assert UUID.fullmatch(body.pop("request_id"))
    return body


# ---------------------------------------------------------------- the table


def test_the_table_names_every_vendor_the_cli_offers() -> None:
    assert VENDORS == _SIMULATED_VENDORS
    assert VENDORS[0] == "default"


@pytest.mark.parametrize(
    ("vendor", "meters", "balance_paths", "job", "auth", "quota_status"),
    [
        (
            "default",
            {"credits": Decimal(1200), "api_quota_remaining": Decimal(988000)},
            ("/api/open/v1/profile",),
            "/api/open/v1/jobs",
            {"Authorization": "Bearer t"},
            402,
        ),
        (
            "openrouter",
            {"limit_remaining": Decimal(50), "credits": Decimal(100)},
            ("/api/v1/key", "/api/v1/credits"),
            "/api/v1/chat/completions",
            {"Authorization": "Bearer t"},
            402,
        ),
        (
            "elevenlabs",
            {"characters": Decimal(100000)},
            ("/v1/user/subscription",),
            "/v1/text-to-speech/{voice_id}",
            {"xi-api-key": "t"},
            401,
        ),
        (
            "deepgram",
            {"usd": Decimal("250.00"), "hour": None},
            ("/v1/projects/{project_id}/balances",),
            "/v1/listen",
            {"Authorization": "Token t"},
            402,
        ),
        (
            "deepseek",
            {"usd": Decimal("110.00"), "cny": None},
            ("/user/balance",),
            "/chat/completions",
            {"Authorization": "Bearer t"},
            402,
        ),
        (
            "custom",
            {"requests": Decimal(1000), "wallet": Decimal("25.00")},
            ("/v2/account/balance",),
            "/v2/jobs",
            {"X-Api-Key": "t"},
            400,
        ),
    ],
)
def test_each_dialect_says_how_to_talk_to_it(
    vendor: str,
    meters: dict[str, Decimal | None],
    balance_paths: tuple[str, ...],
    job: str,
    auth: dict[str, str],
    quota_status: int,
) -> None:
    dialect = DIALECTS[vendor]

    assert dialect.defaults == meters
    assert dialect.meter_names == tuple(meters)
    assert dialect.balance_paths == balance_paths
    assert dialect.job_path == job
    assert dialect.auth_headers("t") == auth
    assert dialect.quota_status == quota_status
    assert dialect.project_id == ("sandbox-project" if vendor == "deepgram" else None)


# ---------------------------------------------------------------- balance bodies


def test_openrouter_bodies() -> None:
    with speaking("openrouter") as (_, http):
        key, credits = http.get("/api/v1/key"), http.get("/api/v1/credits")

    assert key.status_code == 200
    assert exact(key) == {
        "data": {
            "label": "sk-or-v1-san...box",
            "limit": 50,
            "limit_remaining": 50,
            "limit_reset": None,
            "usage": 0,
            "usage_daily": 0,
            "usage_weekly": 0,
            "usage_monthly": 0,
            "is_free_tier": False,
            "is_provisioning_key": False,
            "include_byok_in_limit": False,
        }
    }
    assert exact(credits) == {"data": {"total_credits": 100, "total_usage": 0}}


def test_elevenlabs_body() -> None:
    with speaking("elevenlabs", {"characters": Decimal(10000)}) as (_, http):
        response = http.get("/v1/user/subscription")

    assert response.status_code == 200
    assert exact(response) == {
        "tier": "creator",
        "character_count": 0,
        "character_limit": 10000,
        "can_extend_character_limit": False,
        "allowed_to_extend_character_limit": False,
        "next_character_count_reset_unix": 1798761600,
        "voice_slots_used": 3,
        "voice_limit": 30,
        "professional_voice_limit": 1,
        "can_extend_voice_limit": False,
        "can_use_instant_voice_cloning": True,
        "can_use_professional_voice_cloning": True,
        "currency": "usd",
        "status": "active",
        "billing_period": "monthly_period",
        "character_refresh_period": "monthly_period",
    }


def test_deepgram_body_splits_each_meter_over_two_balances() -> None:
    with speaking("deepgram", {"hour": Decimal("3.5")}) as (_, http):
        response = http.get("/v1/projects/sandbox-project/balances")

    assert response.status_code == 200
    # Two entries per unit, whose amounts add up to the meter, with its exact digits.
    assert b'"amount": 200.00,' in response.content
    assert b'"amount": 50.00,' in response.content
    assert exact(response) == {
        "balances": [
            {
                "balance_id": "5a4d0b1e-0001-4c2f-9a7e-000000000001",
                "amount": Decimal("200.00"),
                "units": "usd",
                "purchase_order_id": "promo-sandbox-usd",
            },
            {
                "balance_id": "5a4d0b1e-0001-4c2f-9a7e-100000000001",
                "amount": Decimal("50.00"),
                "units": "usd",
                "purchase_order_id": "po-sandbox-0001",
            },
            {
                "balance_id": "5a4d0b1e-0002-4c2f-9a7e-000000000002",
                "amount": Decimal("3.5"),
                "units": "hour",
                "purchase_order_id": "promo-sandbox-hour",
            },
            {
                "balance_id": "5a4d0b1e-0002-4c2f-9a7e-100000000002",
                "amount": Decimal("0.0"),
                "units": "hour",
                "purchase_order_id": "po-sandbox-0002",
            },
        ]
    }


def test_deepgram_knows_only_its_project() -> None:
    with speaking("deepgram") as (server, http):
        response = http.get("/v1/projects/someone-else/balances")

        assert response.status_code == 404
        assert without_request_id(response.json()) == {
            "err_code": "NOT_FOUND",
            "err_msg": "Project not found",
        }
        # Counted under the route's template, whatever project the path named.
        assert server.request_counts["GET /v1/projects/{project_id}/balances"] == 1


def test_deepseek_body_has_amounts_as_strings() -> None:
    with speaking("deepseek") as (_, http):
        response = http.get("/user/balance")

    assert response.status_code == 200
    assert response.json() == {
        "is_available": True,
        "balance_infos": [
            {
                "currency": "USD",
                "total_balance": "110.00",
                "granted_balance": "10.00",
                "topped_up_balance": "100.00",
            }
        ],
    }


def test_deepseek_balance_may_be_negative_and_then_is_not_available() -> None:
    with speaking("deepseek") as (server, http):
        http.post("/_sandbox/balance", json={"usd": "-1.25", "cny": "5"})

        assert server.balance == {"usd": Decimal("-1.25"), "cny": Decimal("5")}
        assert http.get("/user/balance").json()["balance_infos"] == [
            {
                "currency": "USD",
                "total_balance": "-1.25",
                "granted_balance": "0.00",
                "topped_up_balance": "-1.25",
            },
            {
                "currency": "CNY",
                "total_balance": "5",
                "granted_balance": "5",
                "topped_up_balance": "0",
            },
        ]
        assert http.get("/user/balance").json()["is_available"] is True  # the CNY

        server.set_balance(cny=None)
        assert http.get("/user/balance").json()["is_available"] is False
        # Spending never takes a meter further below zero.
        assert http.post("/_sandbox/consume", json={"amount": "1"}).json()["consumed"] == "0"


def test_custom_body_in_whole_numbers_and_cents() -> None:
    with speaking("custom", {"wallet": Decimal("12.3")}) as (_, http):
        response = http.get("/v2/account/balance")

    assert response.status_code == 200
    assert response.content == (
        b'{"account": {"id": "acct_sandbox", "plan": {"quota": 1000, "used": 0}, '
        b'"wallet": {"balance_cents": 1230}}}'
    )


@pytest.mark.parametrize(
    ("vendor", "absent", "left_out"),
    [
        ("openrouter", "credits", ("total_credits", "total_usage")),
        ("elevenlabs", "characters", ("character_count", "character_limit")),
        ("deepgram", "usd", ("balances",)),
        ("deepseek", "usd", ("balance_infos",)),
        ("custom", "wallet", ("wallet",)),
    ],
)
def test_an_absent_meter_is_left_out_of_the_body(
    vendor: str, absent: str, left_out: tuple[str, ...]
) -> None:
    with speaking(vendor, {absent: None}) as (_, http):
        body = http.get(balance_path(vendor, -1)).json()

    inner = body.get("data") or body.get("account") or body
    for name in left_out:
        assert not inner.get(name), body


# ---------------------------------------------------------------- auth


UNAUTHORIZED = {
    "openrouter": {"error": {"message": "User not found.", "code": 401}},
    "elevenlabs": {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}},
    "deepgram": {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."},
    "deepseek": {
        "error": {
            "message": "Authentication Fails, Your api key is invalid",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_request_error",
        }
    },
    "custom": {"error": "unauthorized", "message": "Invalid API key."},
}


@pytest.mark.parametrize("vendor", OTHERS)
@pytest.mark.parametrize("how", ["wrong token", "wrong scheme", "other header"])
def test_a_bad_token_gets_the_vendors_401_on_every_route(vendor: str, how: str) -> None:
    dialect = DIALECTS[vendor]
    with speaking(vendor) as (server, http):
        before = server.balance
        good = dialect.auth_headers(DEFAULT_TOKEN)
        headers = {
            "wrong token": dialect.auth_headers("nope"),
            "wrong scheme": {dialect.auth_header: f"Basic {DEFAULT_TOKEN}"},
            "other header": {"X-Other": next(iter(good.values()))},
        }[how]
        http.headers.clear()
        responses = [
            http.get(balance_path(vendor, i), headers=headers)
            for i in range(len(dialect.balance_paths))
        ]
        responses.append(http.post(job_path(vendor), json={"cost": "1"}, headers=headers))

        expected = UNAUTHORIZED[vendor]
        if vendor == "openrouter" and how == "other header":
            expected = {"error": {"message": "No auth credentials found", "code": 401}}
        for response in responses:
            assert response.status_code == 401
            assert without_request_id(response.json()) == expected
        assert server.balance == before


def test_openrouter_says_when_no_credentials_came() -> None:
    with speaking("openrouter") as (_, http):
        http.headers.clear()
        response = http.get("/api/v1/key")

    assert response.json() == {"error": {"message": "No auth credentials found", "code": 401}}


# ---------------------------------------------------------------- jobs and quota answers


QUOTA_ANSWERS = {
    "openrouter": (
        402,
        {
            "error": {
                "code": 402,
                "message": "Insufficient credits. Add more using https://openrouter.ai/credits",
            }
        },
    ),
    "elevenlabs": (
        401,
        {
            "detail": {
                "status": "quota_exceeded",
                "message": "This request exceeds your quota of 100. You have 40 credits "
                "remaining, while 41 credits are required for this request.",
            }
        },
    ),
    "deepgram": (
        402,
        {
            "err_code": "INSUFFICIENT_CREDITS",
            "err_msg": "Project does not have enough credits for this request.",
        },
    ),
    "deepseek": (
        402,
        {
            "error": {
                "message": "Insufficient Balance",
                "type": "unknown_error",
                "param": None,
                "code": "invalid_request_error",
            }
        },
    ),
    "custom": (
        400,
        {"error": "bad_request", "message": "Your credit balance is too low to run this job."},
    ),
}


@pytest.mark.parametrize("vendor", OTHERS)
def test_a_job_is_charged_until_the_balance_is_short(vendor: str) -> None:
    first = DIALECTS[vendor].meter_names[-1 if vendor == "openrouter" else 0]
    meters: dict[str, Decimal | None] = {first: Decimal(100)}
    if vendor == "openrouter":
        meters["limit_remaining"] = None  # the credits decide alone (the cap is tested below)
    with speaking(vendor, meters) as (server, http):
        paid = http.post(job_path(vendor), json={"cost": "60"})

        assert paid.status_code == 200
        assert paid.json() == {"ok": True, "charged": "60", "meter": first, "balance": "40"}
        assert server.balance[first] == Decimal(40)
        assert server.spent[first] == Decimal(60)

        short = http.post(job_path(vendor), json={"cost": "41"})

        status, body = QUOTA_ANSWERS[vendor]
        assert (short.status_code, without_request_id(short.json())) == (status, body)
        assert server.balance[first] == Decimal(40)  # nothing charged
        assert http.post(job_path(vendor), json={"cost": "40"}).status_code == 200


@pytest.mark.parametrize("vendor", OTHERS)
@pytest.mark.parametrize("body", [{}, {"cost": "abc"}, {"cost": "-1"}, {"cost": True}])
def test_a_bad_job_is_a_plain_400(vendor: str, body: object) -> None:
    with speaking(vendor) as (server, http):
        before = server.balance
        response = http.post(job_path(vendor), json=body)

        assert response.status_code == 400
        assert response.json()["error"] == "bad_request"
        assert response.json()["message"] != QUOTA_ANSWERS["custom"][1]["message"]
        assert server.balance == before


def test_openrouter_job_counts_against_the_keys_cap_and_the_credits() -> None:
    with speaking("openrouter", {"limit_remaining": Decimal(10)}) as (server, http):
        assert http.post("/api/v1/chat/completions", json={"cost": "0.5"}).status_code == 200
        # The cap is short while the credits are not: still no completion.
        assert http.post("/api/v1/chat/completions", json={"cost": "9.6"}).status_code == 402

        key = exact(http.get("/api/v1/key"))
        assert isinstance(key, dict)
        assert (key["data"]["limit"], key["data"]["limit_remaining"]) == (10, Decimal("9.5"))
        assert key["data"]["usage"] == Decimal("0.5")
        assert exact(http.get("/api/v1/credits")) == {
            "data": {"total_credits": 100, "total_usage": Decimal("0.5")}
        }

        # Another key on the account spends credits: the account's usage, not this key's.
        server.consume(Decimal(20), "credits")
        assert exact(http.get("/api/v1/credits")) == {
            "data": {"total_credits": 100, "total_usage": Decimal("20.5")}
        }
        server.topup(Decimal(5))  # buying credits, not raising the cap
        assert server.balance == {"limit_remaining": Decimal("9.5"), "credits": Decimal("84.5")}


def test_openrouter_key_without_a_cap() -> None:
    with speaking("openrouter", {"limit_remaining": None}) as (server, http):
        assert http.post("/api/v1/chat/completions", json={"cost": "30"}).status_code == 200

        data = http.get("/api/v1/key").json()["data"]
        assert (data["limit"], data["limit_remaining"], data["usage"]) == (None, None, 30)
        assert server.balance["credits"] == Decimal(70)
        with pytest.raises(ValueError, match="no limit_remaining meter"):
            server.consume(Decimal(1), "limit_remaining")


def test_elevenlabs_spending_counts_up_and_a_new_period_resets_it() -> None:
    with speaking("elevenlabs", {"characters": Decimal(1000)}) as (server, http):
        spoken = http.post("/v1/text-to-speech/voice-1", json={"text": "Hello there"})
        assert spoken.json()["charged"] == "11"  # the real request sends only the text
        server.consume(Decimal(89))
        server.topup(Decimal(500))  # a bigger allowance

        body = http.get("/v1/user/subscription").json()
        assert (body["character_count"], body["character_limit"]) == (100, 1500)
        assert server.balance == {"characters": Decimal(1400)}

        reset = http.post("/_sandbox/reset_period")
        assert reset.status_code == 200
        assert reset.json()["next_character_count_reset_unix"] == 1801440000  # 2027-02-01

        body = http.get("/v1/user/subscription").json()
        assert (body["character_count"], body["character_limit"]) == (0, 1500)
        assert body["next_character_count_reset_unix"] == 1801440000
        assert server.balance == {"characters": Decimal(1500)}


def test_elevenlabs_counts_whole_characters() -> None:
    with speaking("elevenlabs") as (server, http):
        assert http.post("/v1/text-to-speech/v", json={"cost": "1.5"}).status_code == 400
        assert http.post("/_sandbox/consume", json={"amount": "0.5"}).status_code == 400
        with pytest.raises(ValueError, match="whole number"):
            server.set_balance(characters=Decimal("10.5"))
        server.set_balance(characters=Decimal("10.00"))  # a whole number, written with places
        assert http.get("/v1/user/subscription").json()["character_limit"] == 10


def test_only_elevenlabs_has_a_period_to_reset() -> None:
    with speaking("deepgram") as (server, http):
        response = http.post("/_sandbox/reset_period")

        assert response.status_code == 404
        assert "no billing period" in response.json()["message"]
        with pytest.raises(ValueError, match="no billing period"):
            server.reset_period()


def test_deepgram_job_takes_the_meter_named() -> None:
    with speaking("deepgram", {"hour": Decimal(2)}) as (server, http):
        assert http.post("/v1/listen", json={"cost": "0.25", "meter": "hour"}).status_code == 200
        assert http.post("/v1/listen", json={"cost": "60"}).status_code == 200

        assert server.balance == {"usd": Decimal("190.00"), "hour": Decimal("1.75")}
        amounts = [b["amount"] for b in http.get(balance_path("deepgram")).json()["balances"]]
        assert amounts == [190, 0, 1.75, 0]
        assert http.post("/v1/listen", json={"cost": "1", "meter": "gold"}).status_code == 400


def test_custom_job_on_the_wallet() -> None:
    with speaking("custom") as (server, http):
        paid = http.post("/v2/jobs", json={"cost": "1.50", "meter": "wallet"})
        assert paid.json() == {"ok": True, "charged": "1.50", "meter": "wallet", "balance": "23.50"}
        assert http.post("/v2/jobs", json={"cost": "3", "meter": "requests"}).status_code == 200
        assert http.post("/v2/jobs", json={"cost": "0.001", "meter": "wallet"}).status_code == 400

        assert http.get("/v2/account/balance").json() == {
            "account": {
                "id": "acct_sandbox",
                "plan": {"quota": 1000, "used": 3},
                "wallet": {"balance_cents": 2350},
            }
        }
        assert server.balance == {"requests": Decimal(997), "wallet": Decimal("23.50")}


# ---------------------------------------------------------------- control API


@pytest.mark.parametrize("vendor", OTHERS)
def test_control_api_speaks_the_vendors_meters(vendor: str) -> None:
    dialect = DIALECTS[vendor]
    first = dialect.meter_names[0]
    with speaking(vendor, {first: Decimal(300)}) as (server, http):
        state = http.get("/_sandbox/state").json()
        assert state["vendor"] == vendor
        assert state["balance"] == {
            name: None if value is None else format(value, "f")
            for name, value in {**dialect.defaults, first: Decimal(300)}.items()
        }
        assert set(state["requests"]) == set(dialect.route_keys)

        consumed = http.post("/_sandbox/consume", json={"amount": "10"})  # the first meter
        assert consumed.status_code == 200, consumed.text
        assert consumed.json()["by_meter"] == {first: "10"}
        assert http.post("/_sandbox/topup", json={"amount": "5", "meter": first}).status_code == 200
        assert server.balance[first] == Decimal(295)
        assert http.get("/_sandbox/state").json()["spent"][first] == "10"

        assert http.post("/_sandbox/balance", json={first: "7"}).json()["balance"][first] == "7"

        for path, body in (
            ("/_sandbox/balance", {"gold": "1"}),
            ("/_sandbox/consume", {"amount": "1", "meter": "gold"}),
            ("/_sandbox/topup", {"amount": "1", "meter": "gold"}),
        ):
            refused = http.post(path, json=body)
            assert refused.status_code == 400
            for name in dialect.meter_names:  # it names the meters the vendor has
                assert name in refused.json()["message"]
        assert server.balance[first] == Decimal(7)


def test_consume_all_spends_from_each_meter_present() -> None:
    with speaking("custom") as (server, http):
        response = http.post("/_sandbox/consume", json={"amount": "2", "meter": "all"})

        assert response.json()["by_meter"] == {"requests": "2", "wallet": "2.00"}
        assert server.balance == {"requests": Decimal(998), "wallet": Decimal("23.00")}


# ---------------------------------------------------------------- faults and shape


@pytest.mark.parametrize("vendor", OTHERS)
def test_faults_answer_every_route_of_the_dialect(vendor: str) -> None:
    dialect = DIALECTS[vendor]
    with speaking(vendor) as (server, http):
        before = server.balance
        server.inject(
            {"status": 503, "count": len(dialect.routes), "headers": {"Retry-After": "1"}}
        )

        responses = [
            http.get(balance_path(vendor, i)) for i in range(len(dialect.balance_paths))
        ] + [http.post(job_path(vendor), json={"cost": "1"})]

        assert [r.status_code for r in responses] == [503] * len(dialect.routes)
        assert {r.headers["retry-after"] for r in responses} == {"1"}
        assert server.balance == before  # a faulted job charged nothing
        assert http.get(balance_path(vendor)).status_code == 200
        assert server.request_counts == {
            key: 2 if key.startswith("GET") and i == 0 else 1
            for i, key in enumerate(dialect.route_keys)
        }

        server.inject({"kind": "malformed", "body": "{", "count": -1})
        assert http.get(balance_path(vendor)).text == "{"
        http.post("/_sandbox/reset")
        assert http.get(balance_path(vendor)).status_code == 200
        assert set(server.request_counts.values()) == {0, 1}


def test_wrong_method_on_a_vendor_route_is_405() -> None:
    with speaking("deepgram") as (_, http):
        response = http.get("/v1/listen")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("vendor", "shape", "expected"),
    [
        (
            "openrouter",
            {"drop": ["limit", "usage_daily"], "extra": {"limit_reset": "monthly"}},
            {
                "data": {
                    "label": "sk-or-v1-san...box",
                    "limit_remaining": 50,
                    "limit_reset": "monthly",
                    "usage": 0,
                    "usage_weekly": 0,
                    "usage_monthly": 0,
                    "is_free_tier": False,
                    "is_provisioning_key": False,
                    "include_byok_in_limit": False,
                }
            },
        ),
        (
            "deepgram",
            {"as_strings": True, "extra": {"note": 1}},
            {
                "balances": [
                    {
                        "balance_id": "5a4d0b1e-0001-4c2f-9a7e-000000000001",
                        "amount": "200.00",
                        "units": "usd",
                        "purchase_order_id": "promo-sandbox-usd",
                    },
                    {
                        "balance_id": "5a4d0b1e-0001-4c2f-9a7e-100000000001",
                        "amount": "50.00",
                        "units": "usd",
                        "purchase_order_id": "po-sandbox-0001",
                    },
                ],
                "note": 1,
            },
        ),
        (
            "deepseek",
            {"extra": {"is_available": False}},
            {
                "is_available": False,
                "balance_infos": [
                    {
                        "currency": "USD",
                        "total_balance": "110.00",
                        "granted_balance": "10.00",
                        "topped_up_balance": "100.00",
                    }
                ],
            },
        ),
        (
            "custom",
            {"as_strings": True},
            {
                "account": {
                    "id": "acct_sandbox",
                    "plan": {"quota": "1000", "used": "0"},
                    "wallet": {"balance_cents": "2500"},
                }
            },
        ),
    ],
)
def test_shape_drifts_the_body(vendor: str, shape: dict[str, object], expected: object) -> None:
    with speaking(vendor) as (server, http):
        assert http.post("/_sandbox/shape", json=shape).status_code == 200

        assert http.get(balance_path(vendor)).json() == expected

        server.reset()
        assert http.get(balance_path(vendor)).json() != expected


def test_elevenlabs_shape_applies_to_the_top_level() -> None:
    with speaking("elevenlabs") as (server, http):
        server.set_shape({"drop": ["character_limit"], "as_strings": True})
        body = http.get("/v1/user/subscription").json()

    assert "character_limit" not in body
    assert body["character_count"] == "0"
    assert body["voice_limit"] == 30  # not an amount: a count of voices


# ---------------------------------------------------------------- the Python API


def test_server_built_for_a_vendor() -> None:
    with SandboxServer(vendor="elevenlabs", meters={"characters": Decimal(10000)}) as server:
        assert server.vendor == "elevenlabs"
        assert server.dialect is DIALECTS["elevenlabs"]
        assert server.balance == {"characters": Decimal(10000)}
        server.consume(Decimal(51), "characters")
        server.set_balance({"characters": Decimal(20)})
        assert (server.balance, server.spent) == ({"characters": Decimal(20)}, {"characters": 51})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vendor": "acme"}, "vendor must be one of default, openrouter"),
        ({"vendor": "deepgram", "credits": Decimal(1)}, "credits= is the default vendor's"),
        ({"vendor": "deepgram", "meters": {"eur": Decimal(1)}}, "its meters: usd, hour"),
        ({"vendor": "deepgram", "meters": {"usd": Decimal(-1)}}, "must not be negative"),
        ({"meters": {"credits": Decimal(1)}, "credits": Decimal(2)}, "given twice"),
    ],
)
def test_a_server_refuses_what_its_vendor_lacks(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SandboxServer(**kwargs)  # type: ignore[arg-type]


def test_default_vendor_keeps_its_keywords_and_takes_meters_too() -> None:
    server = SandboxServer(meters={"api_quota_remaining": None}, credits=Decimal(5))
    try:
        assert server.vendor == "default"
        assert server.balance == {"credits": Decimal(5), "api_quota_remaining": None}
        server.set_balance({"credits": Decimal(7)}, quota=Decimal(3))
        assert server.balance == {"credits": Decimal(7), "api_quota_remaining": Decimal(3)}
    finally:
        server.stop()
