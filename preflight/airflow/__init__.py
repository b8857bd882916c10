"""preflight for Apache Airflow 3 (``pip install 'preflight[airflow]'``; docs/airflow.md).

A money-aware gate before paid batches::

    from preflight.airflow import PreflightCheckOperator, PreflightFinishOperator, preflight_job

Names are imported on first use: Airflow reads :mod:`preflight.airflow.provider` on every
DAG parse, and that must not load the operators, the facade or SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from preflight.airflow.decorators import preflight_job
    from preflight.airflow.hooks import PreflightHook
    from preflight.airflow.operators import (
        PreflightCheckOperator,
        PreflightFinishOperator,
        PreflightUnavailableError,
    )
    from preflight.airflow.retry import PreflightQuotaRetryPolicy
    from preflight.airflow.sensors import PreflightBalanceSensor
    from preflight.airflow.triggers import PreflightBalanceTrigger

_HOMES = {
    "PreflightHook": "preflight.airflow.hooks",
    "PreflightCheckOperator": "preflight.airflow.operators",
    "PreflightFinishOperator": "preflight.airflow.operators",
    "PreflightUnavailableError": "preflight.airflow.operators",
    "PreflightBalanceTrigger": "preflight.airflow.triggers",
    "PreflightBalanceSensor": "preflight.airflow.sensors",
    "PreflightQuotaRetryPolicy": "preflight.airflow.retry",
    "preflight_job": "preflight.airflow.decorators",
}

__all__ = [
    "PreflightBalanceSensor",
    "PreflightBalanceTrigger",
    "PreflightCheckOperator",
    "PreflightFinishOperator",
    "PreflightHook",
    "PreflightQuotaRetryPolicy",
    "PreflightUnavailableError",
    "preflight_job",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'preflight.airflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
