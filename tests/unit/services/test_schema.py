"""``schema.upgrade_schema`` (``db upgrade``), on a fresh in-memory database of its own."""

from __future__ import annotations

import pytest

from preflight.db import migrate
from preflight.services.schema import upgrade_schema
from preflight.settings import Settings


@pytest.mark.parametrize(
    ("revision", "expected"), [("head", migrate.SCHEMA_HEAD), ("0002", "0002")]
)
def test_upgrade_schema_answers_the_revision_it_reached(
    settings: Settings, revision: str, expected: str
) -> None:
    assert settings.database_url == "sqlite://"
    assert upgrade_schema(settings, revision) == expected
