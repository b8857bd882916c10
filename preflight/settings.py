"""One settings object, read once: defaults < TOML file < ``PREFLIGHT_*`` environment.

The TOML file is ``$PREFLIGHT_CONFIG`` if set. Keys are the field names below
(``database_url = "..."``); extra accounts go in ``[accounts.NAME]`` tables with
``token_file`` or ``token_env`` (never an inline token), and optionally ``vendor`` (the
adapter: docs/vendors.md), ``vendor_url`` and the adapter's own keys. A
``[accounts.default]`` table configures the default account the same way; its token may
still come from ``PREFLIGHT_API_TOKEN``.

Tokens come only from the environment (``PREFLIGHT_API_TOKEN``) or a file
(``PREFLIGHT_API_TOKEN_FILE``), never from the command line.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from preflight.adapters import (
    ADAPTER_NAMES,
    DEFAULT_ADAPTER,
    METER_NAME,
    Adapter,
    build_adapter,
)
from preflight.domain import amounts
from preflight.domain.amounts import preview
from preflight.domain.outcome import EARLIEST_TIME, LATEST_TIME, parse_timestamp
from preflight.domain.vocabulary import FINDING_KINDS
from preflight.errors import ConfigError, UsageError
from preflight.secret import TOKEN_FORMAT, Secret, is_valid_token

ENV_PREFIX: Final = "PREFLIGHT_"
DEFAULT_ACCOUNT: Final = "default"


def default_database_url(environ: Mapping[str, str]) -> str:
    data_home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(data_home) / 'preflight' / 'preflight.db'}"


@dataclass(frozen=True)
class AccountSettings:
    """One vendor account: a name of ours, its token and the vendor it lives on."""

    name: str
    token: Secret | None
    vendor_url: str | None = None  # None: the settings' vendor_url, or the adapter's own
    adapter: Adapter = DEFAULT_ADAPTER


@dataclass(frozen=True)
class Settings:
    """Everything preflight can be configured with. Build it with :func:`load_settings`."""

    database_url: str
    # How long a command rides out a database outage (transient connection errors are
    # retried with backoff) before it gives up with a storage error, exit 3.
    database_outage_window: timedelta = timedelta(seconds=30)
    vendor_url: str = "https://fishaudio.org"
    account: str = DEFAULT_ACCOUNT
    accounts: Mapping[str, AccountSettings] = field(default_factory=dict)
    # Vendor client: per-phase timeouts, and one deadline over all attempts.
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    deadline: float = 30.0
    attempts: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 10.0
    max_body_bytes: int = 1_048_576
    # Verdicts.
    meter: str = "auto"
    reserve: Decimal = Decimal(0)
    hold_expiry: timedelta = timedelta(hours=6)
    fail_open: bool = False
    # Classification.
    staleness_window: timedelta = timedelta(hours=1)
    tolerance: Decimal = Decimal(0)
    # Logging.
    log_level: str = "warning"
    log_format: str = "auto"
    # Scheduled audit (docs/audit.md has the table).
    audit_interval: timedelta = timedelta(minutes=15)
    audit_cron: str | None = None  # a 5-field crontab in UTC; wins over audit_interval
    audit_lease: timedelta = timedelta(minutes=2)
    audit_accounts: tuple[str, ...] | None = None  # None: every account with a token
    low_balance_threshold: Decimal | None = None
    runway_threshold: timedelta = timedelta(hours=24)
    burn_window: timedelta = timedelta(hours=6)
    stale_after: timedelta = timedelta(hours=6)
    auto_finish_stale: bool = False
    retention_horizon: timedelta = timedelta(days=30)
    alert_webhook_url: str | None = None
    alert_kinds: tuple[str, ...] = FINDING_KINDS
    alert_timeout: float = 5.0
    alert_attempts: int = 3
    # The HTTP API (`preflight serve`) and remote mode: with server_url and server_token
    # set, the CLI and Preflight() call that server instead of a database.
    server_url: str | None = None
    server_token: Secret | None = None
    metrics_public: bool = False  # GET /metrics without a token carrying the metrics scope
    metrics_port: int | None = None  # `preflight worker` serves /metrics on it when set
    # `preflight serve`'s edge: the largest request body read whole (NDJSON streams are
    # capped per line instead), the time a client has to send a request's headers, and how
    # long an idle keep-alive connection stays open.
    http_max_body_bytes: int = 8 * 1024 * 1024
    http_header_timeout: float = 10.0
    http_keep_alive_timeout: int = 5

    def account_settings(self, name: str | None = None) -> AccountSettings:
        name = name or self.account
        try:
            return self.accounts[name]
        except KeyError:
            known = ", ".join(sorted(self.accounts)) or "none"
            raise ConfigError(f"unknown account {name!r} (configured: {known})") from None

    def vendor_url_for(self, account: AccountSettings) -> str:
        """Where ``account``'s vendor answers: its own URL, else for the default adapter the
        settings' ``vendor_url``, else the adapter's public API."""
        if account.vendor_url:
            return account.vendor_url
        if account.adapter is DEFAULT_ADAPTER:
            return self.vendor_url
        return account.adapter.default_url


# ---------------------------------------------------------------- parsing

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest duration accepted anywhere (windows, expiries, ``--since``): 100 years.
#: Longer is a typo, and would overflow datetime arithmetic (now - 10**14 days).
MAX_DURATION: Final = timedelta(days=36500)


def parse_since(value: str, field: str = "since") -> datetime:
    """A ``since`` filter: a duration back from now (``24h``, ``7d``) or an ISO 8601 time;
    a ``UsageError`` naming ``field`` otherwise."""
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        pass
    try:
        return parse_timestamp(value, field)
    except UsageError:
        raise UsageError(
            f"{field}: {value[:40]!r} is neither an ISO 8601 time from {EARLIEST_TIME.date()} "
            f"to {LATEST_TIME.date()} nor a duration like 24h of at most {MAX_DURATION.days}d"
        ) from None


def parse_duration(text: str) -> timedelta:
    """``"90"``, ``"90s"``, ``"15m"``, ``"6h"``, ``"2d"`` → timedelta, at most :data:`MAX_DURATION`.

    Raises ``ValueError``; the message says which of the two is wrong.
    """
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration: {preview(text)} (use e.g. 90s, 15m, 6h, 2d)")
    # A float is fine here: durations are not money, and inf (from 400 digits) is caught.
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if not seconds <= MAX_DURATION.total_seconds():
        raise ValueError(f"longer than {MAX_DURATION.days} days: {preview(text)}")
    return timedelta(seconds=seconds)


def parse_amount(text: object) -> Decimal:
    """A non-negative, finite decimal amount within the amount bound; never goes through float.

    The bound (digits before and after the point) is :mod:`preflight.domain.amounts`'s;
    raises ``ValueError`` (an :class:`~preflight.domain.amounts.AmountError`).
    """
    return amounts.parse_amount(text)


def _parse_bool(text: object) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


# Numbers in settings: a TOML int/float, or text of plain digits (no sign, exponent,
# "_", "nan" or "inf": float() would take all of those, and TOML's 1e999 is inf).
_PLAIN_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_PLAIN_INTEGER = re.compile(r"[0-9]+")
#: The most any timeout, deadline, backoff or wait setting may be: one hour.
MAX_SECONDS_SETTING: Final = 3600.0
#: The most attempts any retrying setting may ask for.
MAX_ATTEMPTS_SETTING: Final = 100
#: The largest body cap: a profile is a few hundred bytes, and the body is held in memory.
MAX_BODY_BYTES_SETTING: Final = 64 * 1024 * 1024


def _seconds(*, positive: bool) -> Callable[[Any], float]:
    """Seconds: finite, at most :data:`MAX_SECONDS_SETTING`; zero allowed unless ``positive``."""

    def parse(text: Any) -> float:
        if isinstance(text, int | float) and not isinstance(text, bool):
            value = float(text)
        elif isinstance(text, str) and _PLAIN_NUMBER.fullmatch(text.strip()):
            value = float(text.strip())
        else:
            raise ValueError(f"not a number of seconds: {preview(text)}")
        if value != value or value < 0 or (positive and value == 0):  # value != value: NaN
            sign = "positive" if positive else "non-negative"
            raise ValueError(f"must be {sign}: {preview(text)}")
        if not value <= MAX_SECONDS_SETTING:
            raise ValueError(f"must be at most {MAX_SECONDS_SETTING:g} seconds: {preview(text)}")
        return value

    return parse


def _count(maximum: int) -> Callable[[Any], int]:
    """A whole number from 1 to ``maximum``: a TOML integer or text of digits."""

    def parse(text: Any) -> int:
        if isinstance(text, int) and not isinstance(text, bool):
            value = text
        elif isinstance(text, str) and _PLAIN_INTEGER.fullmatch(text.strip()):
            value = int(text.strip()[:20])  # more digits than 20 is over any maximum anyway
        else:
            raise ValueError(f"not a whole number: {preview(text)}")
        if value <= 0:
            raise ValueError(f"must be positive: {preview(text)}")
        if value > maximum:
            raise ValueError(f"must be at most {maximum}: {preview(text)}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(text: Any) -> str:
        value = str(text).strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}: {text!r}")
        return value

    return parse


def _meter(text: Any) -> str:
    # Which names exist depends on the default account's adapter: checked once it is built.
    value = str(text).strip().lower()
    if value != "auto" and not METER_NAME.fullmatch(value):
        raise ValueError(f"must be one of auto or a meter name: {text!r}")
    return value


def _positive_duration(text: Any) -> timedelta:
    value = parse_duration(text)
    if value <= timedelta(0):
        raise ValueError(f"must be a positive duration: {text!r}")
    return value


def _names(text: Any) -> tuple[str, ...]:
    """A TOML list or a comma-separated string of names, in order, without duplicates."""
    items = text if isinstance(text, list | tuple) else str(text).split(",")
    names = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    if not names:
        raise ValueError(f"needs at least one name: {text!r}")
    return names


def _finding_kinds(text: Any) -> tuple[str, ...]:
    if isinstance(text, str) and text.strip().lower() == "none":
        return ()
    kinds = _names(text)
    unknown = [kind for kind in kinds if kind not in FINDING_KINDS]
    if unknown:
        raise ValueError(
            f"unknown finding kind(s) {', '.join(unknown)}: use {', '.join(FINDING_KINDS)}"
        )
    return kinds


def _crontab(text: Any) -> str:
    from apscheduler.triggers.cron import CronTrigger  # cold path: `preflight check`

    expression = " ".join(str(text).split())
    try:
        CronTrigger.from_crontab(expression)
    except ValueError as exc:
        raise ValueError(f"not a 5-field crontab ({exc}): {text!r}") from None
    return expression


def _http_url(text: Any) -> str:

    url = str(text).strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        # Not echoed: a webhook URL often carries its own secret in the path.
        raise ValueError("must be an http(s) URL with a host")
    return url


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "database_url": str,
    "vendor_url": _http_url,
    "vendor": _choice(*ADAPTER_NAMES),
    "account": str,
    "connect_timeout": _seconds(positive=True),
    "read_timeout": _seconds(positive=True),
    "deadline": _seconds(positive=True),
    "attempts": _count(MAX_ATTEMPTS_SETTING),
    "backoff_base": _seconds(positive=False),
    "backoff_max": _seconds(positive=False),
    "retry_after_max": _seconds(positive=False),
    "max_body_bytes": _count(MAX_BODY_BYTES_SETTING),
    "meter": _meter,
    "reserve": parse_amount,
    "database_outage_window": parse_duration,
    "hold_expiry": parse_duration,
    "fail_open": _parse_bool,
    "staleness_window": parse_duration,
    "tolerance": parse_amount,
    "log_level": _choice("debug", "info", "warning", "error"),
    "log_format": _choice("auto", "json", "console"),
    "audit_interval": _positive_duration,
    "audit_cron": _crontab,
    "audit_lease": _positive_duration,
    "audit_accounts": _names,
    "low_balance_threshold": parse_amount,
    "runway_threshold": parse_duration,
    "burn_window": _positive_duration,
    "stale_after": _positive_duration,
    "auto_finish_stale": _parse_bool,
    "retention_horizon": _positive_duration,
    "alert_webhook_url": _http_url,
    "alert_kinds": _finding_kinds,
    "alert_timeout": _seconds(positive=True),
    "alert_attempts": _count(MAX_ATTEMPTS_SETTING),
    "server_url": _http_url,
    "metrics_public": _parse_bool,
    "metrics_port": _count(65535),
    "http_max_body_bytes": _count(MAX_BODY_BYTES_SETTING),
    "http_header_timeout": _seconds(positive=True),
    "http_keep_alive_timeout": _count(int(MAX_SECONDS_SETTING)),
}


def _read_token(
    *, value: str | None, file: str | None, value_where: str, file_where: str
) -> Secret | None:
    """The token from its variable or its file, checked; ``*_where`` name them in errors.

    The token is never part of a message: a malformed one may be a real secret.
    """
    if value and file:
        raise ConfigError(f"{value_where}: set only one of the token and the token file")
    if file:
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{file_where}: cannot read token file {file}: {exc.strerror}"
            ) from None
        # Editors and `echo` end a file with one newline; anything else is part of the token.
        data = data.removesuffix(b"\n").removesuffix(b"\r")
        if not data:
            raise ConfigError(f"{file_where}: token file {file} is empty")
        text = data.decode("latin-1")  # any bytes; non-ASCII is refused just below
        return _checked_token(text, f"{file_where} (token file {file})")
    if value:
        return _checked_token(value, value_where)
    return None


def _no_token(**_where: str | None) -> Secret | None:
    return None


def _checked_token(text: str, where: str) -> Secret:
    # A space, line break or non-ASCII byte cannot travel in an HTTP header: httpx would
    # fail with an encoding error, or the request would be cut (and \r\n would inject).
    if not is_valid_token(text):
        raise ConfigError(f"{where}: {TOKEN_FORMAT} (the value is not shown)")
    return Secret(text)


def _account_vendor_url(name: str, value: object) -> str | None:
    if value is None:
        return None
    try:
        return _http_url(value)
    except ValueError as exc:
        raise ConfigError(f"[accounts.{name}] vendor_url: {exc}") from None


_ACCOUNT_KEYS: Final = ("token_env", "token_file", "vendor", "vendor_url")


def _account(
    name: str,
    table: object,
    env: Mapping[str, str],
    read_token: Callable[..., Secret | None],
    *,
    fallback_token: Mapping[str, Any] | None = None,
) -> AccountSettings:
    """One ``[accounts.NAME]`` table: its token, its vendor URL and its adapter."""
    where = f"[accounts.{name}]"
    if not isinstance(table, dict) or "token" in table:
        raise ConfigError(f"config file: {where} needs token_file or token_env (no inline token)")
    token_env = table.get("token_env")
    token_file = table.get("token_file")
    if fallback_token is not None and not token_env and not token_file:
        token = read_token(**fallback_token)
    else:
        token = read_token(
            value=env.get(token_env) if token_env else None,
            file=token_file,
            value_where=f"{token_env} (token_env of {where})",
            file_where=f"{where} token_file",
        )
    vendor = table.get("vendor", "default")
    if not isinstance(vendor, str):
        raise ConfigError(f"{where} vendor: must be one of {', '.join(ADAPTER_NAMES)}")
    options = {key: value for key, value in table.items() if key not in _ACCOUNT_KEYS}
    adapter = build_adapter(vendor.strip().lower(), options, where)
    vendor_url = _account_vendor_url(name, table.get("vendor_url"))
    if vendor_url is None and not adapter.default_url:
        raise ConfigError(f"{where} vendor_url: the {adapter.name} vendor needs one")
    return AccountSettings(name=name, token=token, vendor_url=vendor_url, adapter=adapter)


def load_settings(
    environ: Mapping[str, str] | None = None, *, tokens: bool = True, **overrides: Any
) -> Settings:
    """Read the settings once. ``overrides`` (already typed) win over everything.

    ``tokens=False`` reads no token (every account's and the server's are None): for commands
    that never call the vendor, such as ``db upgrade`` in a migration job without secrets.
    """
    env = dict(os.environ if environ is None else environ)
    read_token = _read_token if tokens else _no_token
    file_values: dict[str, Any] = {}
    config_path = env.get(f"{ENV_PREFIX}CONFIG")
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                file_values = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from None

    account_tables = file_values.pop("accounts", {})
    for inline in ("api_token", "token", "server_token"):
        if inline in file_values:
            raise ConfigError(
                f"config file: `{inline}` is not allowed; use api_token_file or PREFLIGHT_API_TOKEN"
            )
    token_file_from_toml = file_values.pop("api_token_file", None)
    server_token_file = file_values.pop("server_token_file", None)
    server_token_file = env.get(f"{ENV_PREFIX}SERVER_TOKEN_FILE") or server_token_file

    values: dict[str, Any] = {"database_url": default_database_url(env)}
    for name, parse in _PARSERS.items():
        raw: Any = file_values.pop(name, None)
        where = f"config file key {name}"
        env_raw = env.get(f"{ENV_PREFIX}{name.upper()}")
        if env_raw not in (None, ""):
            raw, where = env_raw, f"{ENV_PREFIX}{name.upper()}"
        if raw is None:
            continue
        try:
            values[name] = parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if file_values:
        raise ConfigError(f"config file: unknown keys {', '.join(sorted(file_values))}")

    vendor = values.pop("vendor", "default")
    default_token: dict[str, Any] = {
        "value": env.get(f"{ENV_PREFIX}API_TOKEN"),
        "file": env.get(f"{ENV_PREFIX}API_TOKEN_FILE") or token_file_from_toml,
        "value_where": f"{ENV_PREFIX}API_TOKEN",
        "file_where": (
            f"{ENV_PREFIX}API_TOKEN_FILE"
            if env.get(f"{ENV_PREFIX}API_TOKEN_FILE")
            else "config file key api_token_file"
        ),
    }
    if not isinstance(account_tables, dict):
        raise ConfigError("config file: [accounts] must be a table of tables")
    default_table = account_tables.pop(DEFAULT_ACCOUNT, None)
    accounts: dict[str, AccountSettings] = {}
    if default_table is None:
        if vendor == "declarative":
            raise ConfigError(
                f"vendor: a declarative vendor is described in an [accounts.{DEFAULT_ACCOUNT}] "
                "table (or [accounts.NAME]) of the config file: docs/vendors.md"
            )
        adapter = build_adapter(vendor, {}, "vendor")
        # An explicit vendor_url is the default account's, whatever its adapter.
        explicit_url = values.get("vendor_url") if adapter is not DEFAULT_ADAPTER else None
        accounts[DEFAULT_ACCOUNT] = AccountSettings(
            name=DEFAULT_ACCOUNT,
            token=read_token(**default_token),
            vendor_url=explicit_url,
            adapter=adapter,
        )
    else:
        accounts[DEFAULT_ACCOUNT] = _account(
            DEFAULT_ACCOUNT, default_table, env, read_token, fallback_token=default_token
        )
    for name, table in account_tables.items():
        accounts[name] = _account(name, table, env, read_token)
    values["accounts"] = accounts
    values["server_token"] = read_token(
        value=env.get(f"{ENV_PREFIX}SERVER_TOKEN"),
        file=server_token_file,
        value_where=f"{ENV_PREFIX}SERVER_TOKEN",
        file_where=f"{ENV_PREFIX}SERVER_TOKEN_FILE",
    )
    settings = Settings(**values)
    if overrides:
        known = {f.name for f in fields(Settings)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        settings = replace(settings, **overrides)
    if settings.account not in settings.accounts:
        settings.account_settings()  # raises the ConfigError naming the known accounts
    adapter = settings.account_settings().adapter
    meters = ("auto", *adapter.meters)
    if not adapter.open_meters and settings.meter not in meters:
        where = f"{ENV_PREFIX}METER" if env.get(f"{ENV_PREFIX}METER") else "config file key meter"
        raise ConfigError(
            f"{where}: must be one of {', '.join(meters)} "
            f"(the {adapter.name} vendor's meters): {settings.meter!r}"
        )
    return settings
