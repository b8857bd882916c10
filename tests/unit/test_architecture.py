"""Architecture rules that import-linter cannot state (it checks the imports: pyproject.toml)."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "preflight"


def test_the_facade_stays_a_facade() -> None:
    # One short method per verb: the verbs themselves live in services/.
    assert len((PACKAGE / "api.py").read_text().splitlines()) <= 250


def test_no_sql_construct_outside_db() -> None:
    construct = re.compile(r"\b(select|insert|update|delete|text)\(\s*(?![\"'\])])")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if "db" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if construct.search(line)
        and "sqlalchemy" in path.read_text()  # SQL constructs need SQLAlchemy imported
    ]
    assert offenders == []
