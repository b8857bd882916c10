"""`preflight token create | list | revoke`: shown once, stored as SHA-256 only."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from tests.e2e.conftest import Cli


def test_create_list_revoke_and_only_the_hash_is_stored(cli: Cli, tmp_path: Path) -> None:
    created = cli("token", "create", "--name", "ci", "--scope", "check,record")
    assert created.code == 0, created.err
    token = created.out.strip()
    assert token.startswith("pft_")
    assert "shown only this once" in created.err
    listed = cli("token", "list", "--format", "json")
    [row] = json.loads(listed.out)
    assert row["name"] == "ci"
    assert row["scopes"] == ["check", "record"]
    assert row["active"] is True
    assert token not in listed.out
    database = tmp_path / "data" / "preflight" / "preflight.db"
    with sqlite3.connect(database) as connection:
        dump = "\n".join(connection.iterdump())
    assert token not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump
    assert cli("token", "revoke", "ci").code == 0
    assert json.loads(cli("token", "list", "--format", "json").out)[0]["active"] is False


def test_bad_scopes_names_and_duplicates_are_usage_errors(cli: Cli) -> None:
    assert cli("token", "create", "--name", "x", "--scope", "root").code == 2
    assert cli("token", "create", "--name", "bad name", "--scope", "read").code == 2
    assert cli("token", "create", "--name", "dup", "--scope", "read").code == 0
    again = cli("token", "create", "--name", "dup", "--scope", "read")
    assert again.code == 2
    assert "exists" in again.err
    assert cli("token", "revoke", "nobody").code == 2
