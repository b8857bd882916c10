"""What the orchestrator integrations (:mod:`preflight.celery`, :mod:`preflight.prefect`,
:mod:`preflight.airflow`) share, free of any orchestrator: how a task's return value or
exception becomes an outcome (:mod:`.outcome`) and how it is recorded (:mod:`.recorder`)."""
