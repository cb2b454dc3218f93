"""Celery tasks of the service catalog: thin entry points that the beat schedule names
(opsportal/settings.py); the work is in the modules they call."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from celery import shared_task
from django.db import DatabaseError, connection

from apps.services import observe, probes

logger = logging.getLogger(__name__)

# Keys of PostgreSQL advisory locks (any bigint, the same in every process of the portal).
PROBE_HEALTH_LOCK = 0x4F50_5350_0001  # "OPSP" 1


@contextmanager
def exclusively(lock_key: int) -> Iterator[bool]:
    """Yield whether this process may run the work guarded by ``lock_key``: a PostgreSQL
    session advisory lock, released on exit (or by the server when the worker dies with its
    connection). A beat that fires while the previous run still works thus skips a turn
    instead of piling runs up. With SQLite (one machine, the embedded demo) there is nothing
    to take and it always yields True.

    Session locks need a session of our own: behind a transaction-pooling PgBouncer they
    would not hold."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key])
        (acquired,) = cursor.fetchone()
    try:
        yield bool(acquired)
    finally:
        if acquired:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key])
            except DatabaseError:
                # The connection is gone or its transaction failed; gone with it, the lock.
                logger.warning("could not release advisory lock %s", lock_key, exc_info=True)


@shared_task(name="apps.services.tasks.probe_health", ignore_result=True)
def probe_health() -> dict[str, Any]:
    """One probe cycle over every target, unless the previous one is still running."""
    with exclusively(PROBE_HEALTH_LOCK) as acquired:
        if not acquired:
            logger.info("probe_health skipped: the previous cycle is still running")
            return {"skipped": True}
        # Returned for the worker's "succeeded" log line.
        return asdict(probes.probe_all())


@shared_task(name="apps.services.tasks.roll_up_health", ignore_result=True)
def roll_up_health() -> int:
    """Hourly counts of the raw probes, and the raw probes past their retention deleted."""
    return probes.roll_up()


REFRESH_DEPLOYMENTS_LOCK = 0x4F50_5350_0002  # "OPSP" 2


@shared_task(name="apps.services.tasks.refresh_deployments", ignore_result=True)
def refresh_deployments() -> dict[str, Any]:
    """Read every target's deployment from its cluster, unless the previous run still works."""
    with exclusively(REFRESH_DEPLOYMENTS_LOCK) as acquired:
        if not acquired:
            return {"skipped": True}
        return {"answered": observe.refresh_all()}
