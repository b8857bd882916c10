#!/usr/bin/env bash
# The orchestrator integrations (preflight.celery, preflight.prefect, the recipes of
# docs/orchestrators.md): installed the README's way plus their extras, into a virtual
# environment of their own (Prefect alone brings ~100 packages that the main suite must not
# import), pinned by .ci/runners-constraints.txt (resolved once with `pip freeze`). Then
# their types, strictly against the real libraries, and their tests on a real Celery
# worker (Redis), Prefect's test harness and the sandbox vendor.
#
# .ci/run starts this in the background beside the main suite and fails if it fails. With
# CI set, a missing dependency fails here: nothing in tests/runners skips.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"
VENV=.venv-runners

echo "== runners: install (README: Install, plus the celery and prefect extras)"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  -c .ci/runners-constraints.txt \
  -e '.[dev,server,celery,prefect]' redis celery-types \
  dagster temporalio  # the Dagster and Temporal recipes run in the tests

echo "== runners: redis (the Celery tests' broker and result backend)"
# (waiting for the package lock: .ci/run may be installing chromium at the same time)
command -v redis-server > /dev/null \
  || (apt-get -o DPkg::Lock::Timeout=600 update \
    && apt-get -o DPkg::Lock::Timeout=600 install -y redis-server)
if ! redis-cli -h 127.0.0.1 -p 6379 ping > /dev/null 2>&1; then
  redis-server --port 6379 --bind 127.0.0.1 --daemonize yes --save '' --appendonly no
fi
for _ in $(seq 1 30); do
  redis-cli -h 127.0.0.1 -p 6379 ping > /dev/null 2>&1 && break
  sleep 1
done
redis-cli -h 127.0.0.1 -p 6379 ping

echo "== runners: types (mypy strict, the integrations against Celery and Prefect)"
"$VENV/bin/mypy" --config-file pyproject.toml preflight/celery/*.py preflight/prefect/*.py

echo "== runners: tests"
export PREFLIGHT_TEST_POSTGRES_URL="${PREFLIGHT_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
# Prefect's test harness keeps its home (database, settings) under PREFECT_HOME.
PREFECT_HOME="$(mktemp -d)" PREFECT_SERVER_ANALYTICS_ENABLED=false PREFLIGHT_TEST_RUNNERS=1 \
  "$VENV/bin/pytest" tests/runners -p no:cacheprovider
