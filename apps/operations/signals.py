"""What other apps may follow about operations without the engine knowing them: an
incident's timeline records the operations started from it and how they ended.

Both are sent inside the transaction that makes the change, with ``send_robust``: a receiver
that fails is logged and cannot undo the operation's own record (receivers that write do so
in a savepoint)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.dispatch import Signal

if TYPE_CHECKING:
    from apps.operations.models import Operation

logger = logging.getLogger(__name__)

# sender=Operation, operation=<Operation>: created (queued or awaiting approval).
operation_requested = Signal()
# sender=Operation, operation=<Operation> with its final state.
operation_finished = Signal()


def announce(signal: Signal, operation: Operation) -> None:
    """Send ``signal`` about ``operation``; a receiver's failure is logged, not raised."""
    from apps.operations.models import Operation

    for receiver, result in signal.send_robust(Operation, operation=operation):
        if isinstance(result, Exception):
            logger.error(
                "receiver %r failed for operation %s", receiver, operation.pk, exc_info=result
            )
