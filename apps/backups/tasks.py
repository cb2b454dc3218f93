"""Celery tasks of the backups app: thin entry points that the beat schedule names
(opsportal/settings.py); the work is in schedules.py and freshness.py."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.backups import freshness, pruning, schedules
from apps.common.locks import Lock, exclusively


@shared_task(name="apps.backups.tasks.start_due_test_restores", ignore_result=True)
def start_due_test_restores() -> dict[str, Any]:
    """Start the test restores that are due, unless another run of this task is at it."""
    with exclusively(Lock.START_TEST_RESTORES) as acquired:
        if not acquired:
            return {"skipped": True}
        return {"started": [operation.pk for operation in schedules.start_due_test_restores()]}


@shared_task(name="apps.backups.tasks.start_due_prunes", ignore_result=True)
def start_due_prunes() -> dict[str, Any]:
    """Prune the targets pruned automatically, unless another run of this task is at it."""
    with exclusively(Lock.START_PRUNES) as acquired:
        if not acquired:
            return {"skipped": True}
        return {"started": [operation.pk for operation in pruning.start_due_prunes()]}


@shared_task(name="apps.backups.tasks.tick_backups", ignore_result=True)
def tick_backups() -> dict[str, Any]:
    """Every minute: start the scheduled backups that are due (each due time claimed once by
    a conditional UPDATE, so a second beat or an overlapping tick starts nothing twice) and
    fire or resolve the freshness alerts."""
    started = [operation.pk for operation in schedules.start_due_backups()]
    return {"started": started, **freshness.check_freshness()}
