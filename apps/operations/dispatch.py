"""Handing an operation to the broker. Sending twice is harmless: the worker claims the row
with a conditional UPDATE, so only the first delivery runs it."""

from __future__ import annotations

import logging

from apps.operations.models import Operation
from apps.operations.registry import UnknownKind, get_kind

logger = logging.getLogger(__name__)


def send(operation_id: int) -> None:
    """Publish the task; if the broker is down the operation stays queued and the reaper sends
    it again later, so the request that started it does not fail."""
    from apps.operations.tasks import run_operation

    operation = Operation.objects.only("kind").get(pk=operation_id)
    try:
        kind = get_kind(operation.kind)
    except UnknownKind:
        logger.error("operation %s has unknown kind %s", operation_id, operation.kind)
        return
    try:
        result = run_operation.apply_async(
            args=(operation_id,),
            soft_time_limit=kind.soft_time_limit,
            time_limit=kind.time_limit,
        )
    except Exception:
        logger.exception("could not publish operation %s; the reaper will retry", operation_id)
        return
    Operation.objects.filter(pk=operation_id).update(celery_task_id=result.id or "")
