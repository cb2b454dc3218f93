"""What a handler uses to tell the world how far it got: progress, status, log lines.

Every report also beats the heartbeat and checks for a cancel request, so cancellation is
cooperative: the next report after "cancel" raises ``OperationCancelled``.
"""

from __future__ import annotations

import time

from django.utils import timezone

from apps.operations.choices import LogLevel, State
from apps.operations.models import Operation, OperationLogLine


class OperationCancelled(Exception):
    """Raised inside a handler when someone asked to cancel the operation."""


class OperationFailed(Exception):
    """An expected failure with a message for people (a check failed, a target refused);
    anything else a handler raises is an error and is logged with its traceback."""


class Reporter:
    def __init__(self, operation: Operation) -> None:
        self.operation = operation

    def _touch(self, **fields: object) -> None:
        now = timezone.now()
        Operation.objects.filter(pk=self.operation.pk, state=State.RUNNING).update(
            heartbeat_at=now, **fields
        )
        cancel_requested = (
            Operation.objects.filter(pk=self.operation.pk)
            .values_list("cancel_requested_at", flat=True)
            .first()
        )
        if cancel_requested is not None:
            raise OperationCancelled("Cancelled on request.")

    def step(self, progress: int, status: str) -> None:
        """Set the progress (0–100) and the one-line status people see."""
        progress = max(0, min(100, progress))
        self.operation.progress = progress
        self.operation.status_text = status[:200]
        self.log(status)
        self._touch(progress=progress, status_text=status[:200])

    def log(self, message: str, level: str = LogLevel.INFO) -> None:
        OperationLogLine.objects.create(operation=self.operation, message=message, level=level)

    def check_cancelled(self) -> None:
        self._touch()

    def wait(self, seconds: float) -> None:
        """Sleep while still answering a cancel request within a fraction of a second."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(0.25, remaining))
            self.check_cancelled()
