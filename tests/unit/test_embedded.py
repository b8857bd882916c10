"""The embedded SQLite database without SQLAlchemy: which URLs it takes, and its one
write transaction (committed, rolled back, errors worded as a session's)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from preflight.db.driver import Cursor
from preflight.db.embedded import EmbeddedSQLite, sqlite_file
from preflight.db.migrate import SCHEMA_HEAD
from preflight.errors import StorageError


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite:////var/lib/preflight/preflight.db", "/var/lib/preflight/preflight.db"),
        ("sqlite:///relative/preflight.db", "relative/preflight.db"),
        ("sqlite+pysqlite:////tmp/a b.db", "/tmp/a b.db"),
        # Left to the engine: what its URL parser or driver would read differently.
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///file:x.db?uri=true", None),
        ("sqlite:////tmp/x.db?mode=ro", None),
        ("sqlite:////tmp/a%20b.db", None),
        ("sqlite:///~/x.db", None),
        ("SQLITE:////tmp/x.db", None),
        ("sqlite+aiosqlite:////tmp/x.db", None),
        ("postgresql://postgres@localhost/preflight", None),
    ],
)
def test_only_a_plain_sqlite_file_url_is_taken(url: str, file: str | None) -> None:
    assert sqlite_file(url) == file


def _database(path: Path, revision: str | None = SCHEMA_HEAD) -> str:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        if revision is not None:
            connection.execute("CREATE TABLE alembic_version (version_num TEXT)")
            connection.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
        connection.commit()
    return f"sqlite:///{path}"


def _values(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as connection:
        return [v for (v,) in connection.execute("SELECT v FROM t ORDER BY id")]


def test_a_file_not_at_the_schemas_head_is_left_to_the_engine(tmp_path: Path) -> None:
    assert EmbeddedSQLite.open(_database(tmp_path / "old.db", "0001")) is None
    assert EmbeddedSQLite.open(_database(tmp_path / "none.db", None)) is None
    assert EmbeddedSQLite.open(f"sqlite:///{tmp_path / 'new' / 'empty.db'}") is None
    assert (tmp_path / "new").is_dir()  # the path was checked (and made) as the engine does


def test_a_path_that_cannot_work_fails_as_it_does_for_the_engine(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="cannot create the database directory"):
        EmbeddedSQLite.open(f"sqlite:///{tmp_path / 'file' / 'x.db'}")


def test_work_is_committed_or_rolled_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    database = EmbeddedSQLite.open(_database(path))
    assert database is not None
    try:

        def insert(cursor: Cursor) -> int:
            cursor.run("INSERT INTO t (v) VALUES (?)", ("kept",))
            found = cursor.one("SELECT count(*) FROM t", ())
            assert found is not None
            return int(found[0])

        assert database.run_plain_write(insert) == 1

        def fail(cursor: Cursor) -> None:
            cursor.run("INSERT INTO t (v) VALUES (?)", ("undone",))
            raise LookupError("the caller's own error")

        with pytest.raises(LookupError):
            database.run_plain_write(fail)

        def violate(cursor: Cursor) -> None:
            cursor.run("INSERT INTO t (v) VALUES (?)", ("undone too",))
            cursor.run("INSERT INTO t (v) VALUES (NULL)", ())

        with pytest.raises(StorageError, match=r"^database error: NOT NULL constraint failed"):
            database.run_plain_write(violate)
        assert database.peek_one("SELECT v FROM t WHERE id = ?", (1,)) == ("kept",)
        assert database.peek_one("SELECT v FROM t WHERE id = ?", (2,)) is None
        with pytest.raises(StorageError, match=r"^database error: no such table: nowhere$"):
            database.peek_one("SELECT * FROM nowhere", ())
    finally:
        database.close()
    assert _values(path) == ["kept"]
