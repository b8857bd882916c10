"""Architecture rules that import-linter cannot state (it checks the imports: pyproject.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "preflight"


def test_the_facade_stays_a_facade() -> None:
    # One short method per verb: the verbs themselves live in services/.
    assert len((PACKAGE / "api.py").read_text().splitlines()) <= 250


def test_remote_mode_and_the_report_are_kept_from_every_verbs_module() -> None:
    # The import-linter contract lists the service modules by name (it has no "all but"):
    # a new one must join the list, unless it holds results.
    contracts = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"][
        "importlinter"
    ]["contracts"]
    (contract,) = (c for c in contracts if c["name"].startswith("remote mode, the contract"))
    listed = {m for m in contract["forbidden_modules"] if m.startswith("preflight.services.")}
    results = {"preflight.services.results", "preflight.services.check_result"}
    modules = {
        f"preflight.services.{path.stem}"
        for path in (PACKAGE / "services").glob("*.py")
        if path.stem != "__init__"
    }
    assert listed == modules - results


def test_the_http_app_only_assembles() -> None:
    assert len((PACKAGE / "http" / "app.py").read_text().splitlines()) <= 150
    routes = {path.stem for path in (PACKAGE / "http" / "routes").glob("*.py")}
    assert {"batches", "reports", "audit", "accounts", "health"} <= routes
