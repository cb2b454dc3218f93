"""Celery tasks of incidents: thin entry points; the work is in notifications.py and
escalation.py."""

from __future__ import annotations

from celery import Task, shared_task

from apps.incidents import notifications

# Retries of a message that could not go out: 30 s, 1 min, 2 min, 4 min, 8 min.
NOTIFICATION_RETRIES = 5
NOTIFICATION_BACKOFF_SECONDS = 30


@shared_task(bind=True, name="apps.incidents.tasks.send_notification", ignore_result=True)
def send_notification(self: Task, notification_id: int) -> None:
    last_try = self.request.retries >= NOTIFICATION_RETRIES
    if not notifications.attempt(int(notification_id), last_try=last_try):
        raise self.retry(countdown=NOTIFICATION_BACKOFF_SECONDS * 2**self.request.retries)
