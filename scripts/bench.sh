#!/usr/bin/env bash
# `make bench`: the figures of bench/ (dispatch latency, the operations list), printed, never
# asserted. Runs on its own database, opsportal_bench, on the test PostgreSQL server, with a
# real Celery worker on the test Redis broker.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

source scripts/test_env.sh
export CELERY_QUEUE="opsportal-bench-$$"
# Its own database: the bench empties the operations table on every run.
DATABASE_URL="$($PY -m bench.database "$DATABASE_URL")"
export DATABASE_URL

echo "== migrate and collect static files for the bench ($DATABASE_URL)" >&2
$PY manage.py migrate --noinput -v0
$PY manage.py collectstatic --noinput -v0

echo "== bench" >&2
$PY -m bench "$@"
