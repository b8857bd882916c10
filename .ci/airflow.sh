#!/usr/bin/env bash
# The Airflow provider (preflight.airflow, docs/airflow.md): installed the README's way plus
# the `airflow` extra, into a virtual environment of its own (Airflow brings ~150 packages
# that the main suite must not import), pinned by tests/airflow/constraints.txt (Airflow
# 3.3.2 and preflight resolved together once, with `pip freeze`). Then its types, against
# Airflow's own, and its tests: DAGs run by dag.test() against the sandbox vendor.
#
# .ci/run starts this in the background beside the main suite and fails if it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"
started=$SECONDS

echo "== airflow: install (README: Install, plus the airflow extra)"
rm -rf .venv-airflow
python3 -m venv .venv-airflow
.venv-airflow/bin/pip install --quiet --disable-pip-version-check \
  -c tests/airflow/constraints.txt -e '.[dev,server,airflow]'

echo "== airflow: types (mypy strict, the provider against Airflow's own types)"
.venv-airflow/bin/mypy -p preflight.airflow

echo "== airflow: tests"
export PREFLIGHT_TEST_POSTGRES_URL="${PREFLIGHT_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
.venv-airflow/bin/pytest tests/airflow -p no:cacheprovider
echo "(the Airflow part took $((SECONDS - started)) s: environment, types and tests)"
