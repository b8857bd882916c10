"""The Airflow provider's tests, for real: Airflow 3.3 in its own virtual environment.

They run only there (``.ci/run`` builds it from tests/airflow/constraints.txt); the main
suite never collects this directory (``--ignore=tests/airflow`` in pyproject's addopts).
Airflow reads its configuration once, at import: ``AIRFLOW_HOME`` (a temporary directory
with its SQLite metadata database, migrated once per session by ``airflow db migrate``)
and the DAGs folder are set here, before any test module imports it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from preflight.sandbox import DEFAULT_TOKEN, SandboxServer

HERE = Path(__file__).resolve().parent
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="preflight-airflow-"))
DAGS = AIRFLOW_HOME / "dags"
EXAMPLE_DAGS = HERE.parent.parent / "preflight" / "airflow" / "example_dags"

os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)
DAGS.mkdir()
for source in [*sorted((HERE / "dags").glob("*.py")), *sorted(EXAMPLE_DAGS.glob("*.py"))]:
    if source.name != "__init__.py":
        shutil.copy(source, DAGS / source.name)


#: Warnings Airflow's own dependencies raise inside Airflow (not ours to fix): tolerated in
#: this directory only; every other warning is still an error.
AIRFLOW_WARNINGS = (
    # Airflow's in-process execution API imports starlette's test client, which warns
    # that it would rather have httpx2.
    "ignore::starlette.exceptions.StarletteDeprecationWarning",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            for spec in AIRFLOW_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(spec))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata database, migrated once (SQLite in AIRFLOW_HOME)."""
    migrated = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]


# ---------------------------------------------------------------- preflight, two ways


@dataclass
class Preflight:
    """How the DAG's tasks reach preflight, and how a test reads preflight's own ledger."""

    mode: str  # "local" or "serve"
    database_url: str
    vendor: SandboxServer

    def ledger(self) -> Any:
        """A facade on preflight's database, to read what the tasks stored."""
        from preflight.api import Preflight as Facade
        from preflight.settings import load_settings

        return Facade(
            load_settings(
                {
                    "PREFLIGHT_DATABASE_URL": self.database_url,
                    "PREFLIGHT_VENDOR_URL": self.vendor.url,
                    "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
                }
            )
        )


def _preflight_env(
    database_url: str, vendor: SandboxServer, token: str, **extra: str
) -> dict[str, str]:
    return {
        "PREFLIGHT_DATABASE_URL": database_url,
        "PREFLIGHT_VENDOR_URL": vendor.url,
        "PREFLIGHT_API_TOKEN": token,
        "PREFLIGHT_BACKOFF_BASE": "0.01",
        "PREFLIGHT_BACKOFF_MAX": "0.05",
        "PREFLIGHT_DEADLINE": "5",
        **extra,
    }


def _serve(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`preflight serve --port 0` as a process; its base URL once it says where it listens."""
    server = subprocess.Popen(
        [sys.executable, "-m", "preflight", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    url = None
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = server.stderr.readline()
        if not line and server.poll() is not None:
            break
        found = re.search(r"running on (http://127\.0\.0\.1:[0-9]+)", line)
        url = found[1] if found else None
    if url is None:
        server.kill()
        pytest.fail("preflight serve never said where it listens")
    # Keep reading its log, so that a full pipe never blocks the server.
    threading.Thread(target=server.stderr.read, name="serve-log", daemon=True).start()
    return server, url


def _stop(server: subprocess.Popen[str]) -> None:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    for thread in threading.enumerate():
        if thread.name == "serve-log":
            thread.join(timeout=30)  # it reads to the end of the log, then ends
    if server.stderr is not None:
        server.stderr.close()


Connect = Callable[..., Preflight]


@pytest.fixture(params=["local", pytest.param("serve", marks=pytest.mark.postgres)])
def connect(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    airflow_db: None,
) -> Iterator[Connect]:
    """``connect(vendor, vendor_token=..., PREFLIGHT_X=...)`` points the ``preflight_default``
    connection at preflight: ``local`` (no host: the worker's PREFLIGHT_* settings, SQLite)
    or ``serve`` (a ``preflight serve`` process on PostgreSQL, the connection's password its
    API token; the worker then has no PREFLIGHT_* setting at all). Extra keywords are more
    settings of preflight's (e.g. ``PREFLIGHT_VENDOR``)."""
    servers: list[subprocess.Popen[str]] = []

    def connect(
        vendor: SandboxServer, vendor_token: str = DEFAULT_TOKEN, **settings: str
    ) -> Preflight:
        monkeypatch.setenv("SANDBOX_URL", vendor.url)
        monkeypatch.setenv("SANDBOX_TOKEN", DEFAULT_TOKEN)
        monkeypatch.setenv("VENDOR_API_TOKEN", DEFAULT_TOKEN)  # the example DAG's jobs
        if request.param == "local":
            url = f"sqlite:///{tmp_path / 'preflight.db'}"
            for name, value in _preflight_env(url, vendor, vendor_token, **settings).items():
                monkeypatch.setenv(name, value)
            monkeypatch.setenv(
                "AIRFLOW_CONN_PREFLIGHT_DEFAULT", json.dumps({"conn_type": "preflight"})
            )
            return Preflight("local", url, vendor)
        url = request.getfixturevalue("postgres_url")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFLIGHT_", "AIRFLOW"))}
        env.update(_preflight_env(url, vendor, vendor_token, **settings))
        for args in (
            ["db", "upgrade"],
            ["token", "create", "--name", "airflow", "--scope", "check,record,read"],
        ):
            done = subprocess.run(
                [sys.executable, "-m", "preflight", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr
        token = done.stdout.strip()
        server, base = _serve(env)
        servers.append(server)
        monkeypatch.setenv(
            "AIRFLOW_CONN_PREFLIGHT_DEFAULT",
            json.dumps({"conn_type": "preflight", "host": base, "password": token}),
        )
        return Preflight("serve", url, vendor)

    yield connect
    for server in servers:
        _stop(server)


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, vendor: SandboxServer) -> Preflight:
    """Local mode only, for the tests that call an operator's methods directly."""
    url = f"sqlite:///{tmp_path / 'preflight.db'}"
    for name, value in _preflight_env(url, vendor, DEFAULT_TOKEN).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_CONN_PREFLIGHT_DEFAULT", json.dumps({"conn_type": "preflight"}))
    return Preflight("local", url, vendor)


@pytest.fixture
def vendor() -> Iterator[SandboxServer]:
    """The sandbox vendor with 1000 credits (and no second meter)."""
    with SandboxServer(credits=Decimal(1000), quota=None) as server:
        yield server


# ---------------------------------------------------------------- running a DAG


@dataclass
class DagRunResult:
    dag_id: str
    run_id: str
    state: str
    #: (task_id, map_index) -> (state, try_number)
    tasks: dict[tuple[str, int], tuple[str | None, int]]
    xcom: dict[str, Any]

    @property
    def batch_id(self) -> str:
        return f"{self.dag_id}/{self.run_id}"

    def states(self, task_id: str) -> list[str | None]:
        return [state for (task, _), (state, _) in sorted(self.tasks.items()) if task == task_id]

    def tries(self, task_id: str) -> list[int]:
        return [tries for (task, _), (_, tries) in sorted(self.tasks.items()) if task == task_id]


def load_dag(dag_id: str, file_name: str) -> Any:
    """The DAG object ``dag_id`` from a file of the DAGs folder (dag.test() runs its tasks)."""
    path = DAGS / file_name
    spec = importlib.util.spec_from_file_location(f"dag_file_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, dag_id) if hasattr(module, dag_id) else module.dag


def run_dag(dag_id: str, file_name: str, conf: dict[str, Any]) -> DagRunResult:
    """``dag.test(run_conf=conf)``; then every task's state and tries, and return values."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag = load_dag(dag_id, file_name)
    run = dag.test(run_conf=conf)
    with create_session() as session:
        tis = run.get_task_instances(session=session)
        tasks = {(ti.task_id, ti.map_index): (ti.state, ti.try_number) for ti in tis}
        values = session.scalars(
            XComModel.get_many(
                run_id=run.run_id, dag_ids=dag_id, key="return_value", map_indexes=-1
            )
        ).all()
        xcom = {row.task_id: XComModel.deserialize_value(row) for row in values}
    return DagRunResult(dag_id, run.run_id, str(run.state), tasks, xcom)
