"""docker-compose.yml cannot run here (no Docker engine), so it is checked by reading."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_services_are_postgres_migration_worker_and_api(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "migrate", "worker", "api"}
    assert compose["services"]["postgres"]["image"].startswith("postgres:")
    assert "healthcheck" in compose["services"]["postgres"]


def test_migration_runs_once_after_postgres_is_healthy(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_worker_starts_after_a_successful_migration(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["command"] == ["worker"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["stop_signal"] == "SIGTERM"
    assert "vendor_token" in worker["secrets"]


def test_both_use_the_compose_postgres_and_no_inline_token(compose: dict[str, Any]) -> None:
    for name in ("migrate", "worker", "api"):
        env = compose["services"][name]["environment"]
        assert env["PREFLIGHT_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["PREFLIGHT_DATABASE_URL"]
        assert "PREFLIGHT_API_TOKEN" not in env
    worker_env = compose["services"]["worker"]["environment"]
    assert worker_env["PREFLIGHT_API_TOKEN_FILE"] == "/run/secrets/vendor_token"
    db_user = compose["services"]["postgres"]["environment"]["POSTGRES_USER"]
    assert f"//{db_user}:" in compose["services"]["worker"]["environment"]["PREFLIGHT_DATABASE_URL"]


def test_the_image_it_builds_installs_preflight_with_postgres(compose: dict[str, Any]) -> None:
    assert compose["services"]["worker"]["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "'.[postgres,server]'" in dockerfile
    assert 'ENTRYPOINT ["preflight"]' in dockerfile
    for copied in ("preflight", "migrations", "pyproject.toml"):
        assert copied in dockerfile


def _resolved(value: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set in the environment: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _service_environment(compose: dict[str, Any], name: str, secrets_dir: Path) -> dict[str, str]:
    """The service's environment as its container sees it: only the secrets it mounts exist."""
    service = compose["services"][name]
    mounted = set(service.get("secrets", []))
    for secret in mounted:
        (secrets_dir / secret).write_text("tok-compose-1234567\n")
    env: dict[str, str] = {}
    for key, value in service["environment"].items():
        text = _resolved(str(value))
        if text.startswith("/run/secrets/"):
            secret = text.removeprefix("/run/secrets/")
            text = str(secrets_dir / secret) if secret in mounted else f"/nonexistent/{secret}"
        env[key] = text
    return env


def test_each_service_environment_satisfies_what_its_command_reads(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    from preflight.services.audit import accounts_to_audit
    from preflight.settings import load_settings

    # `db upgrade` reads the database settings only: no token secret is mounted for it.
    migrate = _service_environment(compose, "migrate", tmp_path)
    assert load_settings(migrate, tokens=False).database_url.startswith("postgresql")
    # `worker` audits every account with a token: the secret it mounts supplies it.
    worker = _service_environment(compose, "worker", tmp_path)
    settings = load_settings(worker)
    assert accounts_to_audit(settings) == ["default"]
    assert settings.audit_interval.total_seconds() == 15 * 60
    # `serve` checks and reads the vendor with the same token.
    api = load_settings(_service_environment(compose, "api", tmp_path))
    assert api.account_settings().token is not None
    assert api.server_url is None  # the server itself is never in remote mode


def test_the_api_serves_after_the_migration_and_checks_readiness_with_a_secret_token(
    compose: dict[str, Any],
) -> None:
    api = compose["services"]["api"]
    assert api["command"][0] == "serve"
    assert api["command"][api["command"].index("--port") + 1] == "8080"
    assert api["command"][api["command"].index("--host") + 1] == "0.0.0.0"
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert {"vendor_token", "api_token"} <= set(api["secrets"])
    assert compose["secrets"]["api_token"]["file"] == "./secrets/api_token"
    probe = " ".join(api["healthcheck"]["test"])
    assert "/readyz" in probe
    assert "/run/secrets/api_token" in probe
    assert "Bearer" in probe
    assert "PREFLIGHT_SERVER_TOKEN" not in api["environment"]
    assert api["stop_signal"] == "SIGTERM"


def test_the_worker_serves_metrics(compose: dict[str, Any]) -> None:
    assert compose["services"]["worker"]["environment"]["PREFLIGHT_METRICS_PORT"] == "9100"
