"""Shared fixtures. PREFLIGHT_* variables are cleared here, at import, so a developer's
own settings never leak into a test; tests set exactly what they need."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from preflight.sandbox import SandboxServer
from tests.support import CLOCK_START, Clock

#: No test asserts wall-clock time, Hypothesis's own checks included: its per-example
#: deadline and its "too slow" health check would fail a correct test on a loaded machine
#: (CI runs the main suite beside the Airflow and orchestrator jobs on two cores).
settings.register_profile("no-clock", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("no-clock")
#: For mutation testing (docs/classification.md): the same examples on every run and no
#: example database, so whether a mutant is killed never depends on an earlier mutant.
settings.register_profile(
    "mutation", parent=settings.get_profile("no-clock"), derandomize=True, database=None
)

for _name in [name for name in os.environ if name.startswith("PREFLIGHT_")]:
    if _name != "PREFLIGHT_TEST_POSTGRES_URL":
        del os.environ[_name]

POSTGRES_URL = os.environ.get(
    "PREFLIGHT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = bool(os.environ.get("CI"))

#: The orchestrator integrations' tests need Celery and Prefect, which live in a virtual
#: environment of their own (.ci/runners.sh sets this variable there): the main suite
#: leaves them out rather than skip them, and there a missing orchestrator fails.
collect_ignore = [] if os.environ.get("PREFLIGHT_TEST_RUNNERS") else ["runners"]


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """configure_logging() (and the CLI's defer_logging()) change process-wide state: undo
    it after every test."""
    import logging

    import structlog

    from preflight.logs import reset_deferred

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    reset_deferred()  # a CLI run in process deferred its set-up and logged nothing
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("preflight").setLevel(logging.NOTSET)  # apply_level() sets it


@pytest.fixture(autouse=True)
def _metrics_recording() -> Iterator[None]:
    """A CLI command run in process stops metrics recording (a one-shot process would
    not be scraped): start every test recording again."""
    from preflight import metrics

    yield
    metrics.resume_recording()


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{os.path.join(tmp_path, 'preflight.db')}"


def _postgres_unreachable(reason: str) -> None:
    # In CI a PostgreSQL test that cannot connect fails: a skip would hide a broken run.
    if IN_CI:
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not reachable ({reason}); set PREFLIGHT_TEST_POSTGRES_URL")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema, dropped afterwards."""
    with fresh_postgres_schema() as url:
        yield url


@contextmanager
def fresh_postgres_schema() -> Iterator[str]:
    """:func:`postgres_url`'s schema, for a test that needs more than one."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_URL, poolclass=sa.pool.NullPool)
    schema = f"pf_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        _postgres_unreachable(str(exc.orig).splitlines()[0] if exc.orig else str(exc))
    url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each integration test runs once on SQLite and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def sandbox_options() -> dict[str, Any]:
    """Keyword arguments of the ``sandbox`` fixture's SandboxServer, e.g. ``credits``; a module
    overrides this fixture to give its vendor another starting balance."""
    return {}


@pytest.fixture
def sandbox(sandbox_options: dict[str, Any]) -> Iterator[SandboxServer]:
    """The sandbox vendor, serving on a free loopback port for the length of the test."""
    with SandboxServer(**sandbox_options) as server:
        yield server


@pytest.fixture
def clock_start() -> datetime:
    """Where the ``clock`` fixture starts; a module overrides this fixture to start elsewhere."""
    return CLOCK_START


@pytest.fixture
def clock(clock_start: datetime) -> Clock:
    """A :class:`tests.support.Clock` at ``clock_start``, for ``Preflight(..., clock=clock)``."""
    return Clock(clock_start)
