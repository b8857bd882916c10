"""upgrade → the models match the migrated schema → downgrade, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from preflight.db import migrate
from preflight.db.models import Base, Snapshot
from preflight.db.session import build_engine
from preflight.errors import SchemaMissingError, StorageError
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_matches_models_then_downgrades(database_url: str) -> None:
    engine = build_engine(database_url)
    try:
        migrate.upgrade(engine)
        assert _tables(engine) == set(Base.metadata.tables)
        with engine.connect() as connection:
            assert migrate.current_revision(connection) == migrate.alembic_head()
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        migrate.downgrade(engine)
        assert _tables(engine) == set()
    finally:
        engine.dispose()


def test_schema_head_constant_is_alembics_head() -> None:
    assert migrate.alembic_head() == migrate.SCHEMA_HEAD


def test_sqlite_upgrades_itself_on_first_use(sqlite_url: str) -> None:
    engine = build_engine(sqlite_url)
    try:
        migrate.ensure_schema(engine)
        assert _tables(engine) == set(Base.metadata.tables)
        migrate.ensure_schema(engine)  # a second use is a no-op
    finally:
        engine.dispose()


def test_postgres_needs_an_explicit_upgrade(postgres_url: str) -> None:
    engine = build_engine(postgres_url)
    try:
        with pytest.raises(SchemaMissingError, match="preflight db upgrade"):
            migrate.ensure_schema(engine)
        migrate.upgrade(engine)
        migrate.ensure_schema(engine)
    finally:
        engine.dispose()


def test_0003_moves_a_stored_402s_cost_into_its_expected_cost_and_back(
    database_url: str,
) -> None:
    engine = build_engine(database_url)
    amount = sa.String() if engine.dialect.name == "sqlite" else sa.Numeric()
    select_costs = sa.text(
        "SELECT job_id, cost, expected_cost FROM outcomes ORDER BY job_id"
    ).columns(job_id=sa.String(), cost=amount, expected_cost=amount)

    def costs() -> dict[str, tuple[Decimal | None, Decimal | None]]:
        with engine.connect() as connection:
            return {
                job: (
                    None if cost is None else Decimal(str(cost)),
                    None if expected is None else Decimal(str(expected)),
                )
                for job, cost, expected in connection.execute(select_costs)
            }

    try:
        migrate.upgrade(engine, "0002")
        now = datetime(2026, 11, 1, tzinfo=UTC).replace(tzinfo=None)
        with engine.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'default', :t)"),
                {"t": now},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO batches (id, batch_id, account_id, reserve, status, verified,"
                    " labels, created_at, last_activity_at)"
                    " VALUES (1, 'B', 1, 0, 'open', false, '{}', :t, :t)"
                ),
                {"t": now},
            )
            rows = [
                # job, status, http status, quota, cost, expected cost
                ("q-cost", "failed", 402, True, "100", None),
                ("q-both", "failed", 402, True, "100", "90"),
                ("q-none", "failed", 402, True, None, "40"),
                ("charged", "failed", 500, False, "5", None),
                ("ok", "succeeded", 200, False, "7", None),
            ]
            for job, status, http, quota, cost, expected in rows:
                connection.execute(
                    sa.text(
                        "INSERT INTO outcomes (batch_pk, job_id, attempt, status, http_status,"
                        " cost, expected_cost, quota_failure, occurred_at, recorded_at)"
                        " VALUES (1, :job, 1, :status, :http, :cost, :expected, :quota, :t, :t)"
                    ),
                    {
                        "job": job,
                        "status": status,
                        "http": http,
                        "cost": cost,
                        "expected": expected,
                        "quota": quota,
                        "t": now,
                    },
                )
        before = costs()

        migrate.upgrade(engine)
        after = costs()
        assert after["q-cost"] == (Decimal(0), Decimal(100))
        assert after["q-both"] == (Decimal(0), Decimal(90))  # a declared expected cost wins
        assert after["q-none"] == (None, Decimal(40))
        assert after["charged"] == before["charged"]  # not a quota failure: consumed
        assert after["ok"] == before["ok"]

        migrate.downgrade(engine, "0002")
        restored = costs()
        assert restored["q-cost"][0] == Decimal(100)
        assert restored["q-none"] == before["q-none"]
        assert restored["charged"] == before["charged"]
        assert restored["ok"] == before["ok"]
    finally:
        engine.dispose()


def test_0004_derives_batch_totals_and_held_need_and_downgrades_keeping_the_rows(
    database_url: str,
) -> None:
    engine = build_engine(database_url)
    t = datetime(2026, 11, 1, 12, tzinfo=UTC).replace(tzinfo=None)
    later = datetime(2026, 11, 1, 13, tzinfo=UTC).replace(tzinfo=None)
    try:
        migrate.upgrade(engine, "0003")
        with engine.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'default', :t)"),
                {"t": t},
            )
            for pk, name, status, need, finished in [
                (1, "open-need", "open", "100", None),
                (2, "finished", "finished", "50", t),
                (3, "blocked", "blocked", "70", None),
                (4, "open-spent", "open", "5", None),
                (5, "no-need", "open", None, None),
            ]:
                connection.execute(
                    sa.text(
                        "INSERT INTO batches (id, batch_id, account_id, need, reserve, status,"
                        " verified, labels, created_at, finished_at, last_activity_at)"
                        " VALUES (:pk, :name, 1, :need, 0, :status, true, '{}', :t, :f, :t)"
                    ),
                    {"pk": pk, "name": name, "need": need, "status": status, "t": t, "f": finished},
                )
            for batch, job, status, http, quota, cost, recorded in [
                (1, "a", "succeeded", 200, False, "30.5", t),
                (1, "b", "failed", 402, True, "0", t),
                (1, "c", "failed", 500, False, "1.25", t),
                (2, "d", "succeeded", 200, False, "10", t),
                (2, "late", "succeeded", 200, False, "4", later),
                (4, "e", "succeeded", 200, False, "9", t),
            ]:
                connection.execute(
                    sa.text(
                        "INSERT INTO outcomes (batch_pk, job_id, attempt, status, http_status,"
                        " cost, quota_failure, occurred_at, recorded_at)"
                        " VALUES (:b, :job, 1, :status, :http, :cost, :quota, :t, :r)"
                    ),
                    {
                        "b": batch,
                        "job": job,
                        "status": status,
                        "http": http,
                        "quota": quota,
                        "cost": cost,
                        "t": t,
                        "r": recorded,
                    },
                )

        migrate.upgrade(engine)
        with engine.connect() as connection:
            rows = {
                name: (total, failed, quota, late, Decimal(str(cost)), held)
                for name, total, failed, quota, late, cost, held in connection.execute(
                    sa.text(
                        "SELECT batch_id, outcome_count, failed_count, quota_failure_count,"
                        " late_count, consumed_cost, held FROM batches"
                    )
                )
            }
            held_need = connection.execute(sa.text("SELECT held_need FROM accounts")).scalar()
        assert rows["open-need"][:5] == (3, 2, 1, 0, Decimal("31.75"))
        assert Decimal(str(rows["open-need"][5])) == Decimal("68.25")
        assert rows["finished"][:5] == (2, 0, 0, 1, Decimal(14))
        assert rows["finished"][5] is None
        assert rows["blocked"] == (0, 0, 0, 0, Decimal(0), None)
        assert Decimal(str(rows["open-spent"][5])) == Decimal(0)
        assert rows["no-need"][5] is None
        assert Decimal(str(held_need)) == Decimal("68.25")

        migrate.downgrade(engine, "0003")
        with engine.connect() as connection:
            counts = [
                connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("accounts", "batches", "outcomes")
            ]
            columns = {c["name"] for c in sa.inspect(connection).get_columns("batches")}
        assert counts == [1, 5, 6]
        assert "held" not in columns
        assert "consumed_cost" not in columns
    finally:
        engine.dispose()


def test_0006_keeps_an_old_batchs_post_mortem_identical(
    database_url: str, sandbox: SandboxServer
) -> None:
    """A database written before 0006 (downgraded to 0005: the old schema, with its rows)
    upgrades, and `show` of its batch is the same, number for number."""
    from preflight.api import Preflight
    from preflight.settings import load_settings

    engine = build_engine(database_url)
    settings = load_settings(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
        }
    )
    try:
        migrate.upgrade(engine)
        sandbox.set_balance(credits=Decimal(1000), quota=Decimal(5000))
        with Preflight(settings) as app:
            app.check("old", need="300")
            app.record("old", {"job_id": "j1", "status": "succeeded", "cost": "100.25"})
            sandbox.consume(Decimal("650.5"), "both")
            app.record("old", {"job_id": "j2", "status": "failed", "http_status": 402})
            before = app.show("old").to_dict()
        assert before["quota_failures"][0]["tag"] == "concurrent_consumption"

        migrate.downgrade(engine, "0005")
        with engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns("snapshots")}
        assert "extra_meters" not in columns
        assert {"credits", "api_quota_remaining"} <= columns
        migrate.upgrade(engine)

        with Preflight(settings) as app:
            after = app.show("old").to_dict()
        assert after == before
        assert [s["credits"] for s in after["snapshots"]] == ["1000", "349.5"]
    finally:
        engine.dispose()


def test_0006_downgrade_drops_only_the_other_vendors_meters(database_url: str) -> None:
    engine = build_engine(database_url)
    t = datetime(2026, 11, 1, 12, tzinfo=UTC).replace(tzinfo=None)
    try:
        migrate.upgrade(engine)
        with engine.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'voices', :t)"),
                {"t": t},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO snapshots (account_id, kind, taken_at, credits, extra_meters,"
                    " raw, http_status, latency_ms) VALUES (1, 'manual', :t, :c, :m, :raw, 200, 5)"
                ),
                {"t": t, "c": "7.5", "m": '{"characters":"97500"}', "raw": '{"x": 1}'},
            )
        with engine.connect() as connection:
            row = connection.execute(sa.select(Snapshot.credits, Snapshot.extra_meters)).one()
        assert row == (Decimal("7.5"), {"characters": Decimal(97500)})

        migrate.downgrade(engine, "0005")
        with engine.connect() as connection:
            kept = connection.execute(sa.text("SELECT credits, raw FROM snapshots")).one()
        assert (Decimal(str(kept[0])), kept[1]) == (Decimal("7.5"), '{"x": 1}')
    finally:
        engine.dispose()


def _batch_id_length(engine: sa.Engine) -> int | None:
    with engine.connect() as connection:
        (column,) = (
            c for c in sa.inspect(connection).get_columns("batches") if c["name"] == "batch_id"
        )
    return column["type"].length  # type: ignore[no-any-return]


def test_0007_widens_batch_ids_to_500_keeping_the_rows_and_narrows_them_back(
    database_url: str, sandbox: SandboxServer
) -> None:
    """Batches written before 0007 keep their post-mortems; after it a 500-character id
    and an Airflow run id are stored; the downgrade refuses while an id is too long for
    the older column, and once none is, narrows it keeping every row."""
    from preflight.api import Preflight
    from preflight.settings import load_settings

    engine = build_engine(database_url)
    settings = load_settings(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
        }
    )
    old_id = "o" * 200
    airflow_id = "my_dag/manual__2026-12-07T00:35:27.935842+00:00"
    long_id = "d" * 250 + "/" + "r" * 249
    t = datetime(2026, 12, 1, tzinfo=UTC).replace(tzinfo=None)
    try:
        migrate.upgrade(engine, "0006")
        assert _batch_id_length(engine) == 200
        # Rows as 0006 stores them (the facade would upgrade SQLite on first use).
        with engine.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'default', :t)"),
                {"t": t},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO batches (id, batch_id, account_id, reserve, status, verified,"
                    " labels, created_at, last_activity_at, outcome_count, consumed_cost)"
                    " VALUES (1, :b, 1, 0, 'open', true, '{}', :t, :t, 1, 2.5)"
                ),
                {"b": old_id, "t": t},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO outcomes (batch_pk, job_id, attempt, status, http_status,"
                    " cost, quota_failure, occurred_at, recorded_at)"
                    " VALUES (1, 'j1', 1, 'succeeded', 200, 2.5, false, :t, :t)"
                ),
                {"t": t},
            )

        migrate.upgrade(engine)
        assert _batch_id_length(engine) == 500
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        with Preflight(settings) as app:
            kept = app.show(old_id)
            assert (kept.outcomes.total, kept.outcomes.cost) == (1, Decimal("2.5"))
            for batch_id in (airflow_id, long_id):
                app.check(batch_id, need="1")
                app.record(batch_id, {"job_id": "j1", "status": "succeeded", "cost": "1"})
            assert app.show(long_id).batch.batch_id == long_id
            assert app.show(airflow_id).outcomes.total == 1

        with pytest.raises(StorageError, match=r"1 batch id\(s\) are longer than 200"):
            migrate.downgrade(engine, "0006")
        assert _batch_id_length(engine) == 500  # the refused downgrade changed nothing
        with engine.begin() as connection:
            pk = connection.execute(
                sa.text("SELECT id FROM batches WHERE batch_id = :b"), {"b": long_id}
            ).scalar_one()
            for table in ("outcomes", "snapshots"):
                connection.execute(sa.text(f"DELETE FROM {table} WHERE batch_pk = :pk"), {"pk": pk})
            connection.execute(sa.text("DELETE FROM batches WHERE id = :pk"), {"pk": pk})

        migrate.downgrade(engine, "0006")
        assert _batch_id_length(engine) == 200
        with engine.connect() as connection:
            kept = set(connection.execute(sa.text("SELECT batch_id FROM batches")).scalars())
        assert kept == {old_id, airflow_id}
    finally:
        engine.dispose()


def test_0007_on_postgresql_the_column_holds_500_characters_and_not_one_more(
    postgres_url: str,
) -> None:
    engine = build_engine(postgres_url)
    t = datetime(2026, 12, 7, tzinfo=UTC).replace(tzinfo=None)
    insert = sa.text(
        "INSERT INTO batches (batch_id, account_id, reserve, status, verified, labels,"
        " created_at, last_activity_at) VALUES (:b, 1, 0, 'open', false, '{}', :t, :t)"
    )
    try:
        migrate.upgrade(engine)
        with engine.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'default', :t)"),
                {"t": t},
            )
            connection.execute(insert, {"b": "x" * 500, "t": t})
        with pytest.raises(sa.exc.DataError), engine.begin() as connection:
            connection.execute(insert, {"b": "y" * 501, "t": t})
    finally:
        engine.dispose()


def _job_id_length(engine: sa.Engine) -> int | None:
    with engine.connect() as connection:
        (column,) = (
            c for c in sa.inspect(connection).get_columns("outcomes") if c["name"] == "job_id"
        )
    return column["type"].length  # type: ignore[no-any-return]


def test_0008_widens_job_ids_to_500_keeping_the_rows_and_narrows_them_back(
    database_url: str, sandbox: SandboxServer
) -> None:
    """Outcomes written before 0008 keep their post-mortem; after it a 500-character job id
    and an Airflow mapped task's (a 250-character task id and ``[map_index]``) are stored;
    the downgrade refuses while a job id is too long for the older column, and once none
    is, narrows it keeping every row."""
    from preflight.api import Preflight
    from preflight.settings import load_settings

    engine = build_engine(database_url)
    settings = load_settings(
        {
            "PREFLIGHT_DATABASE_URL": database_url,
            "PREFLIGHT_VENDOR_URL": sandbox.url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
        }
    )
    old_job = "o" * 200
    mapped_job = "t" * 250 + "[12]"
    long_job = "é" * 500  # characters, not bytes: 1000 bytes of UTF-8
    t = datetime(2026, 12, 1, tzinfo=UTC).replace(tzinfo=None)
    try:
        migrate.upgrade(engine, "0007")
        assert _job_id_length(engine) == 200
        # Rows as 0007 stores them (the facade would upgrade SQLite on first use).
        with engine.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'default', :t)"),
                {"t": t},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO batches (id, batch_id, account_id, reserve, status, verified,"
                    " labels, created_at, last_activity_at, outcome_count, consumed_cost)"
                    " VALUES (1, 'old', 1, 0, 'open', true, '{}', :t, :t, 1, 2.5)"
                ),
                {"t": t},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO outcomes (batch_pk, job_id, attempt, status, http_status,"
                    " cost, quota_failure, occurred_at, recorded_at)"
                    " VALUES (1, :j, 1, 'succeeded', 200, 2.5, false, :t, :t)"
                ),
                {"j": old_job, "t": t},
            )

        migrate.upgrade(engine)
        assert _job_id_length(engine) == 500
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        with Preflight(settings) as app:
            kept = app.show("old")
            assert (kept.outcomes.total, kept.outcomes.cost) == (1, Decimal("2.5"))
            for job_id in (mapped_job, long_job):
                app.record("old", {"job_id": job_id, "status": "succeeded", "cost": "1"})
            # Idempotent on the long ids as on any: the same outcome again is no new row.
            again = app.record("old", {"job_id": long_job, "status": "succeeded", "cost": "1"})
            assert again.outcome.job_id == long_job
            assert app.show("old").outcomes.total == 3

        with pytest.raises(StorageError, match=r"^cannot downgrade below 0008: 2 job id\(s\)"):
            migrate.downgrade(engine, "0007")
        assert _job_id_length(engine) == 500  # the refused downgrade changed nothing
        with engine.begin() as connection:
            connection.execute(
                sa.text("DELETE FROM outcomes WHERE job_id IN (:a, :b)"),
                {"a": mapped_job, "b": long_job},
            )

        migrate.downgrade(engine, "0007")
        assert _job_id_length(engine) == 200
        with engine.connect() as connection:
            kept_ids = set(connection.execute(sa.text("SELECT job_id FROM outcomes")).scalars())
            assert migrate.current_revision(connection) == "0007"
        assert kept_ids == {old_job}
    finally:
        engine.dispose()


def test_0008_on_postgresql_the_column_holds_500_characters_and_not_one_more(
    postgres_url: str,
) -> None:
    engine = build_engine(postgres_url)
    t = datetime(2026, 12, 7, tzinfo=UTC).replace(tzinfo=None)
    insert = sa.text(
        "INSERT INTO outcomes (batch_pk, job_id, attempt, status, quota_failure, occurred_at,"
        " recorded_at) VALUES (1, :j, 1, 'succeeded', false, :t, :t)"
    )
    try:
        migrate.upgrade(engine)
        with engine.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'default', :t)"),
                {"t": t},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO batches (id, batch_id, account_id, reserve, status, verified,"
                    " labels, created_at, last_activity_at) VALUES (1, 'b', 1, 0, 'open',"
                    " false, '{}', :t, :t)"
                ),
                {"t": t},
            )
            connection.execute(insert, {"j": "x" * 500, "t": t})
        with pytest.raises(sa.exc.DataError), engine.begin() as connection:
            connection.execute(insert, {"j": "y" * 501, "t": t})
    finally:
        engine.dispose()
