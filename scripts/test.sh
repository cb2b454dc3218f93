#!/usr/bin/env bash
# The whole test suite: lint, then every test on PostgreSQL + Redis + a real Celery worker +
# Chromium, then the core tests again on the embedded defaults (SQLite, filesystem broker).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

source scripts/test_env.sh

echo "== lint" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy .  # its Django plugin loads the settings, so after test_env.sh
$PY manage.py collectstatic --noinput -v0

echo "== all tests on PostgreSQL ($DATABASE_URL) and Redis ($CELERY_BROKER_URL)" >&2
$PY -m pytest "$@"

echo "== core tests on the embedded defaults (SQLite, filesystem broker)" >&2
embedded_dir="$(mktemp -d "$PWD/var/test-embedded.XXXXXX")"
cp -r var/staticfiles "$embedded_dir/staticfiles"
env -u DATABASE_URL -u CELERY_BROKER_URL OPSPORTAL_VAR_DIR="$embedded_dir" \
    $PY -m pytest -m core "$@"
rm -rf "$embedded_dir"
