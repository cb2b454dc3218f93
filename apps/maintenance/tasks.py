"""Celery tasks of maintenance windows: thin entry points; the work is in beat.py."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.utils import timezone

from apps.common.locks import Lock, exclusively
from apps.maintenance import beat

logger = logging.getLogger(__name__)


@shared_task(name="apps.maintenance.tasks.tick_maintenance", ignore_result=True)
def tick_maintenance() -> dict[str, Any]:
    """Start, end and announce on time (every minute from the beat schedule), unless the
    previous tick still works: then this one skips its turn."""
    with exclusively(Lock.TICK_MAINTENANCE) as acquired:
        if not acquired:
            logger.info("tick_maintenance skipped: the previous tick is still working")
            return {"skipped": True}
        return beat.tick(timezone.now()).as_dict()
