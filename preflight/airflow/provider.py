"""What Airflow's ``ProvidersManager`` reads about preflight (the ``apache_airflow_provider``
entry point). Airflow loads this on every DAG parse and CLI start, so it imports nothing:
no Airflow, no SQLAlchemy, no preflight service; the classes are named, not imported."""

from __future__ import annotations

from typing import Any

_PACKAGE = "preflight.airflow"


def get_provider_info() -> dict[str, Any]:
    """The provider's metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        # Airflow checks this against the distribution's own name.
        "package-name": "preflight",
        "name": "preflight",
        "description": (
            "A money-aware gate before paid batches: checks the vendor balance before "
            "dispatch, waits for a top-up without holding a worker, records each job's "
            "outcome and retries a quota failure only when retrying can help."
        ),
        "integrations": [{"integration-name": "preflight", "tags": ["service"]}],
        "hooks": [{"integration-name": "preflight", "python-modules": [f"{_PACKAGE}.hooks"]}],
        "operators": [
            {"integration-name": "preflight", "python-modules": [f"{_PACKAGE}.operators"]}
        ],
        "sensors": [{"integration-name": "preflight", "python-modules": [f"{_PACKAGE}.sensors"]}],
        "triggers": [{"integration-name": "preflight", "python-modules": [f"{_PACKAGE}.triggers"]}],
        "connection-types": [
            {
                "connection-type": "preflight",
                "hook-class-name": f"{_PACKAGE}.hooks.PreflightHook",
                "hook-name": "preflight",
            }
        ],
    }
