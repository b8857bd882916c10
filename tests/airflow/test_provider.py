"""Airflow finds preflight as a provider, with its connection type, and loading the
provider's metadata costs a DAG parse nothing: no Airflow, SQLAlchemy or service import."""

from __future__ import annotations

import json
import subprocess
import sys

from preflight.airflow.provider import get_provider_info


def test_providers_manager_lists_preflight_and_its_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    provider = ProvidersManager().providers["preflight"]
    assert provider.data["package-name"] == "preflight"
    hook = ProvidersManagerTaskRuntime().hooks["preflight"]
    assert hook is not None
    assert hook.hook_class_name == "preflight.airflow.hooks.PreflightHook"
    assert hook.connection_id_attribute_name == "preflight_conn_id"
    assert hook.package_name == "preflight"


def test_every_module_the_provider_names_imports_and_has_its_class() -> None:
    import importlib

    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for module in info[section][0]["python-modules"]:
            importlib.import_module(module)
    hook_path = info["connection-types"][0]["hook-class-name"]
    module, name = hook_path.rsplit(".", 1)
    hook = getattr(importlib.import_module(module), name)
    assert (hook.conn_type, hook.default_conn_name) == ("preflight", "preflight_default")


def test_the_provider_info_module_imports_nothing_heavy() -> None:
    probe = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "from preflight.airflow.provider import get_provider_info\n"
        "get_provider_info()\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout
    )
    heavy = (
        "airflow",
        "sqlalchemy",
        "httpx",
        "preflight.services",
        "preflight.api",
        "preflight.db",
    )
    assert [m for m in loaded if m.startswith(heavy)] == []
    assert [m for m in loaded if m.startswith("preflight")] == [
        "preflight",
        "preflight.airflow",
        "preflight.airflow.provider",
    ]


def test_what_a_dag_file_imports_of_preflight_loads_no_facade_and_no_database() -> None:
    # A DAG parse imports the operators, the decorator and the retry policy: after Airflow's
    # own modules, they add neither the facade nor the layers under it (resolved on first
    # use, in a task), nor an HTTP client or SQLAlchemy.
    probe = (
        "import json, sys\n"
        "import airflow.sdk, airflow.triggers.base\n"
        "before = set(sys.modules)\n"
        "import preflight.airflow as pa\n"
        "for name in pa.__all__:\n"
        "    getattr(pa, name)\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout
    )
    heavy = (
        "sqlalchemy",
        "httpx",
        "preflight.api",
        "preflight.remote",
        "preflight.services",
        "preflight.db",
    )
    assert [m for m in loaded if m.startswith(heavy)] == []
    assert "preflight.airflow.operators" in loaded
