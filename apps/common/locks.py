"""The PostgreSQL advisory lock numbers of the portal, in one place so that no two pieces of
work share one by accident: the hourly test restores once held the number of the maintenance
tick and skipped their turn whenever both ran in the same minute. ``unique``: a number given
twice fails at import."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum, unique

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


@unique
class Lock(IntEnum):
    # "OPSP" then the app and the piece of work.
    PROBE_HEALTH = 0x4F50_5350_0001
    REFRESH_DEPLOYMENTS = 0x4F50_5350_0002
    WATCH_INCIDENTS = 0x4F50_5350_0101
    TICK_MAINTENANCE = 0x4F50_5350_0201
    START_TEST_RESTORES = 0x4F50_5350_0301
    START_PRUNES = 0x4F50_5350_0302
    EVALUATE_METRICS = 0x4F50_5350_0401


@contextmanager
def exclusively(lock: Lock) -> Iterator[bool]:
    """Yield whether this process may run the work guarded by ``lock``: a PostgreSQL
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
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [int(lock)])
        (acquired,) = cursor.fetchone()
    try:
        yield bool(acquired)
    finally:
        if acquired:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [int(lock)])
            except DatabaseError:
                # The connection is gone or its transaction failed; gone with it, the lock.
                logger.warning("could not release advisory lock %s", lock.name, exc_info=True)
