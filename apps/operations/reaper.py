"""Making sure nothing stays queued or running forever (after AWX's reaper).

An operation is never re-run after its worker died: a restore must not run twice. It is
failed, with the reason, and people decide.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from apps.operations import dispatch
from apps.operations.choices import LogLevel, State
from apps.operations.models import Operation, OperationLogLine
from apps.operations.runner import finish

logger = logging.getLogger(__name__)


def _fail(operation: Operation, message: str, *, from_state: State) -> bool:
    ended = finish(operation, State.FAILED, message, message, from_state=from_state, by="reaper")
    if ended:
        logger.warning("operation %s failed: %s", operation.pk, message)
    return ended


def fail_lost_operations(now: datetime | None = None) -> int:
    """Running operations whose heartbeat stopped: their worker died."""
    now = now or timezone.now()
    cutoff = now - settings.OPERATIONS_WORKER_LOST_AFTER
    lost = Operation.objects.filter(state=State.RUNNING, heartbeat_at__lt=cutoff)
    count = 0
    for operation in lost:
        beat = (
            operation.heartbeat_at.isoformat(timespec="seconds") if operation.heartbeat_at else "?"
        )
        message = f"Worker lost: no heartbeat from {operation.worker or 'its worker'} since {beat}."
        count += _fail(operation, message, from_state=State.RUNNING)
    return count


def fail_operations_of_restarted_worker(worker: str) -> int:
    """A worker that starts fails what it was running before it went down."""
    count = 0
    for operation in Operation.objects.filter(state=State.RUNNING, worker=worker):
        message = f"Worker lost: {worker} restarted while this was running."
        count += _fail(operation, message, from_state=State.RUNNING)
    return count


def resend_stuck_queued(now: datetime | None = None) -> tuple[int, int]:
    """Queued operations no worker claimed (the broker was down when they were sent): send
    again, and fail them after OPERATIONS_QUEUED_MAX_SENDS tries. Returns (resent, failed)."""
    now = now or timezone.now()
    cutoff = now - settings.OPERATIONS_QUEUED_RESEND_AFTER
    resent = failed = 0
    for operation in Operation.objects.filter(state=State.QUEUED, queued_at__lt=cutoff):
        if operation.send_count >= settings.OPERATIONS_QUEUED_MAX_SENDS:
            message = f"No worker picked this up after {operation.send_count} sends."
            failed += _fail(operation, message, from_state=State.QUEUED)
            continue
        bumped = Operation.objects.filter(
            pk=operation.pk, state=State.QUEUED, send_count=operation.send_count
        ).update(queued_at=now, send_count=operation.send_count + 1)
        if bumped:
            OperationLogLine.objects.create(
                operation=operation,
                level=LogLevel.WARNING,
                message=f"Not picked up yet: sent again (try {operation.send_count + 1}).",
            )
            dispatch.send(operation.pk)
            resent += 1
    return resent, failed


def reap(now: datetime | None = None) -> dict[str, int]:
    lost = fail_lost_operations(now)
    resent, never_picked = resend_stuck_queued(now)
    return {"lost": lost, "resent": resent, "never_picked": never_picked}
