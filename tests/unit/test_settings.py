from __future__ import annotations

import pickle
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from preflight.errors import ConfigError
from preflight.secret import Secret, scrub
from preflight.settings import load_settings, parse_amount, parse_duration


def test_defaults_put_sqlite_under_xdg_data_home(tmp_path: Path) -> None:
    settings = load_settings({"XDG_DATA_HOME": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path}/preflight/preflight.db"
    assert settings.vendor_url == "https://fishaudio.org"
    assert settings.attempts == 3
    assert settings.meter == "auto"
    assert settings.reserve == Decimal(0)
    assert settings.account_settings().token is None


def test_environment_wins_over_toml(tmp_path: Path) -> None:
    config = tmp_path / "preflight.toml"
    config.write_text('reserve = "5"\nattempts = 4\nhold_expiry = "2h"\nmeter = "credits"\n')
    settings = load_settings(
        {"PREFLIGHT_CONFIG": str(config), "PREFLIGHT_RESERVE": "7.25", "HOME": str(tmp_path)}
    )
    assert settings.reserve == Decimal("7.25")
    assert settings.attempts == 4
    assert settings.hold_expiry == timedelta(hours=2)
    assert settings.meter == "credits"


def test_token_from_env_or_file_is_redacted(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token-123\n")
    from_file = load_settings({"PREFLIGHT_API_TOKEN_FILE": str(token_file)})
    token = from_file.account_settings().token
    assert token is not None
    assert token.reveal() == "file-token-123"
    from_env = load_settings({"PREFLIGHT_API_TOKEN": "env-token-456"})
    assert "env-token-456" not in repr(from_env)
    assert "file-token-123" not in repr(from_file) + str(token) + f"{token}"
    with pytest.raises(TypeError):
        pickle.dumps(token)


def test_extra_accounts_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "preflight.toml"
    config.write_text(
        '[accounts.team-b]\ntoken_env = "TEAM_B_TOKEN"\nvendor_url = "http://127.0.0.1:1"\n'
    )
    settings = load_settings({"PREFLIGHT_CONFIG": str(config), "TEAM_B_TOKEN": "tb-token"})
    team_b = settings.account_settings("team-b")
    assert team_b.token is not None
    assert team_b.token.reveal() == "tb-token"
    assert settings.vendor_url_for(team_b) == "http://127.0.0.1:1"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PREFLIGHT_ATTEMPTS": "zero"}, "PREFLIGHT_ATTEMPTS"),
        ({"PREFLIGHT_ATTEMPTS": "0"}, "must be positive"),
        ({"PREFLIGHT_RESERVE": "-1"}, "non-negative"),
        ({"PREFLIGHT_METER": "dollars"}, "must be one of"),
        ({"PREFLIGHT_HOLD_EXPIRY": "soon"}, "not a duration"),
        ({"PREFLIGHT_API_TOKEN": "a", "PREFLIGHT_API_TOKEN_FILE": "/x"}, "only one"),
        ({"PREFLIGHT_API_TOKEN_FILE": "/nonexistent/token"}, "cannot read token file"),
        ({"PREFLIGHT_ACCOUNT": "ghost"}, "unknown account"),
        ({"PREFLIGHT_CONFIG": "/nonexistent.toml"}, "cannot read config file"),
    ],
)
def test_bad_settings_are_config_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ)


def test_inline_token_in_toml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "preflight.toml"
    config.write_text('api_token = "leaky"\n')
    with pytest.raises(ConfigError, match="not allowed"):
        load_settings({"PREFLIGHT_CONFIG": str(config)})


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("6h", 21600), ("2d", 172800)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["-1", "abc", "NaN", "Infinity", "1e", ""])
def test_parse_amount_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="amount"):
        parse_amount(text)


def test_parse_amount_is_exact() -> None:
    assert parse_amount("0.1") + parse_amount("0.2") == Decimal("0.3")
    with pytest.raises(ValueError, match="exact"):
        parse_amount(0.1)


def test_scrub_removes_known_secrets_and_bearer_values() -> None:
    Secret("s3cr3t-token-value")
    text = "token=s3cr3t-token-value; Authorization: Bearer anything-else"
    assert scrub(text) == "token=[REDACTED]; Authorization: Bearer [REDACTED]"


@pytest.mark.parametrize("url", ["ftp://vendor", "vendor.example", "", "http://"])
def test_a_vendor_url_must_be_http_or_https(url: str) -> None:
    with pytest.raises(ConfigError, match="PREFLIGHT_VENDOR_URL"):
        load_settings({"PREFLIGHT_VENDOR_URL": url or " "})


def test_a_trivially_short_secret_does_not_garble_messages() -> None:
    Secret("x")
    assert scrub("exit 2: invalid batch id 'xx'") == "exit 2: invalid batch id 'xx'"


@pytest.mark.parametrize("text", ["36501d", "99999999999999d", "9" * 400 + "s", "١٠s"])
def test_parse_duration_refuses_absurd_durations(text: str) -> None:
    with pytest.raises(ValueError, match="longer than 36500 days|not a duration") as info:
        parse_duration(text)

    assert len(str(info.value)) < 120


def test_a_duration_setting_over_the_bound_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="^PREFLIGHT_HOLD_EXPIRY: longer than 36500 days"):
        load_settings({"PREFLIGHT_HOLD_EXPIRY": "99999999999999d"})
