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
    with pytest.raises(ValueError, match=r"longer than 36500 days|not a duration") as info:
        parse_duration(text)

    assert len(str(info.value)) < 120


def test_a_duration_setting_over_the_bound_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^PREFLIGHT_HOLD_EXPIRY: longer than 36500 days"):
        load_settings({"PREFLIGHT_HOLD_EXPIRY": "99999999999999d"})


# ---------------------------------------------------------------- issue 10: tokens, numbers

BAD_TOKENS = [
    pytest.param("tök-123456", id="non-ascii"),
    pytest.param("abc123\ndef456", id="newline"),
    pytest.param("abc123\r\n X-Injected: 1", id="header-injection"),
    pytest.param("abc 123456", id="space"),
    pytest.param("abc123\t", id="tab"),
    pytest.param(" abc123", id="leading-space"),
    pytest.param("abc\x00123", id="nul"),
]


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_a_malformed_token_variable_is_a_config_error_without_the_value(token: str) -> None:
    with pytest.raises(ConfigError, match=r"^PREFLIGHT_API_TOKEN: a token must be") as info:
        load_settings({"PREFLIGHT_API_TOKEN": token})

    assert token.strip() not in str(info.value)
    assert "abc" not in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_a_malformed_token_file_is_a_config_error_without_the_value(
    tmp_path: Path, token: str
) -> None:
    path = tmp_path / "token"
    path.write_bytes(token.encode("utf-8"))

    with pytest.raises(ConfigError, match=r"^PREFLIGHT_API_TOKEN_FILE .*a token must be") as info:
        load_settings({"PREFLIGHT_API_TOKEN_FILE": str(path)})

    assert "abc" not in str(info.value)


def test_a_token_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"abc\xff\xfe123")

    with pytest.raises(ConfigError, match="PREFLIGHT_API_TOKEN_FILE"):
        load_settings({"PREFLIGHT_API_TOKEN_FILE": str(path)})


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""])
def test_a_token_file_may_end_with_one_newline(tmp_path: Path, ending: str) -> None:
    path = tmp_path / "token"
    path.write_bytes(f"file-token-123{ending}".encode())

    token = load_settings({"PREFLIGHT_API_TOKEN_FILE": str(path)}).account_settings().token

    assert token is not None
    assert token.reveal() == "file-token-123"


def test_a_token_file_with_two_newlines_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"file-token-123\n\n")

    with pytest.raises(ConfigError, match="PREFLIGHT_API_TOKEN_FILE"):
        load_settings({"PREFLIGHT_API_TOKEN_FILE": str(path)})


def test_account_tokens_name_their_variable_or_file(tmp_path: Path) -> None:
    config = tmp_path / "preflight.toml"
    token_file = tmp_path / "team_c"
    token_file.write_text("bad token\n")
    config.write_text(
        '[accounts.team-b]\ntoken_env = "TEAM_B_TOKEN"\n'
        f'[accounts.team-c]\ntoken_file = "{token_file}"\n'
    )
    with pytest.raises(ConfigError, match=r"^TEAM_B_TOKEN \(token_env of \[accounts.team-b\]\)"):
        load_settings({"PREFLIGHT_CONFIG": str(config), "TEAM_B_TOKEN": "tök"})
    with pytest.raises(ConfigError, match=r"^\[accounts.team-c\] token_file"):
        load_settings({"PREFLIGHT_CONFIG": str(config), "TEAM_B_TOKEN": "good-token"})


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("deadline = 1e999", "deadline"),
        ("deadline = inf", "deadline"),
        ("deadline = nan", "deadline"),
        ("read_timeout = -inf", "read_timeout"),
        ("connect_timeout = 1e300", "connect_timeout"),
        ("backoff_max = nan", "backoff_max"),
        ("backoff_base = -1", "backoff_base"),
        ("retry_after_max = inf", "retry_after_max"),
        ("alert_timeout = 1e999", "alert_timeout"),
        ("attempts = 1e999", "attempts"),
        ("attempts = 3.7", "attempts"),
        ("attempts = true", "attempts"),
        ("attempts = 1000000000", "attempts"),
        ("max_body_bytes = 99999999999999999", "max_body_bytes"),
        ('deadline = "nan"', "deadline"),
    ],
)
def test_non_finite_and_absurd_numeric_settings_name_the_key(
    tmp_path: Path, toml: str, key: str
) -> None:
    config = tmp_path / "preflight.toml"
    config.write_text(toml + "\n")

    with pytest.raises(ConfigError, match=f"^config file key {key}: "):
        load_settings({"PREFLIGHT_CONFIG": str(config)})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEADLINE", "inf"),
        ("DEADLINE", "nan"),
        ("DEADLINE", "1e999"),
        ("DEADLINE", "86401"),
        ("READ_TIMEOUT", "1_0"),
        ("ATTEMPTS", "1e3"),
        ("ATTEMPTS", " 4_0 "),
        ("MAX_BODY_BYTES", "9" * 5000),
    ],
)
def test_non_finite_and_absurd_numeric_variables_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^PREFLIGHT_{name}: ") as info:
        load_settings({f"PREFLIGHT_{name}": value})

    assert len(str(info.value)) < 150


def test_numeric_settings_within_bounds() -> None:
    settings = load_settings(
        {
            "PREFLIGHT_DEADLINE": "0.5",
            "PREFLIGHT_BACKOFF_BASE": "0",
            "PREFLIGHT_ATTEMPTS": "100",
            "PREFLIGHT_MAX_BODY_BYTES": "1024",
        }
    )
    assert (settings.deadline, settings.backoff_base, settings.attempts) == (0.5, 0.0, 100)
    assert settings.max_body_bytes == 1024


def test_the_http_edge_settings_have_defaults_and_are_read() -> None:
    default = load_settings({"PREFLIGHT_DATABASE_URL": "sqlite://"})
    assert (
        default.http_max_body_bytes,
        default.http_header_timeout,
        default.http_keep_alive_timeout,
    ) == (8 * 1024 * 1024, 10.0, 5)
    read = load_settings(
        {
            "PREFLIGHT_DATABASE_URL": "sqlite://",
            "PREFLIGHT_HTTP_MAX_BODY_BYTES": "4096",
            "PREFLIGHT_HTTP_HEADER_TIMEOUT": "0.5",
            "PREFLIGHT_HTTP_KEEP_ALIVE_TIMEOUT": "30",
        }
    )
    assert (read.http_max_body_bytes, read.http_header_timeout, read.http_keep_alive_timeout) == (
        4096,
        0.5,
        30,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PREFLIGHT_HTTP_MAX_BODY_BYTES", "0"),
        ("PREFLIGHT_HTTP_MAX_BODY_BYTES", str(64 * 1024 * 1024 + 1)),
        ("PREFLIGHT_HTTP_HEADER_TIMEOUT", "0"),
        ("PREFLIGHT_HTTP_HEADER_TIMEOUT", "NaN"),
        ("PREFLIGHT_HTTP_KEEP_ALIVE_TIMEOUT", "0.5"),
        ("PREFLIGHT_HTTP_KEEP_ALIVE_TIMEOUT", "3601"),
    ],
)
def test_the_http_edge_settings_refuse_out_of_bounds(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}"):
        load_settings({"PREFLIGHT_DATABASE_URL": "sqlite://", name: value})
