"""Celery tasks of incidents: thin entry points; the work is in notifications.py and
escalation.py."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.utils import timezone

from apps.common.locks import Lock, exclusively
from apps.incidents import escalation, notifications

logger = logging.getLogger(__name__)

# Retries of a message that could not go out: 30 s, 1 min, 2 min, 4 min, 8 min.
NOTIFICATION_RETRIES = 5
NOTIFICATION_BACKOFF_SECONDS = 30


# max_retries matches: Celery's default (3) would stop retrying before the last try that
# marks the message failed, leaving it pending for ever.
@shared_task(
    bind=True,
    name="apps.incidents.tasks.send_notification",
    ignore_result=True,
    max_retries=NOTIFICATION_RETRIES,
)
def send_notification(self: Task, notification_id: int) -> None:
    last_try = self.request.retries >= NOTIFICATION_RETRIES
    if not notifications.attempt(int(notification_id), last_try=last_try):
        raise self.retry(countdown=NOTIFICATION_BACKOFF_SECONDS * 2**self.request.retries)


@shared_task(name="apps.incidents.tasks.watch_incidents", ignore_result=True)
def watch_incidents() -> dict[str, Any]:
    """Escalate the incidents whose acknowledgement deadline passed and remind the
    commanders whose update is overdue (every 30 s from the beat schedule), unless the
    previous run still works."""
    with exclusively(Lock.WATCH_INCIDENTS) as acquired:
        if not acquired:
            logger.info("watch_incidents skipped: the previous run is still working")
            return {"skipped": True}
        now = timezone.now()
        return {
            "escalated": escalation.escalate_overdue(now),
            "reminded": escalation.remind_overdue_updates(now),
        }
