"""Celery tasks of maintenance windows: thin entry points; the work is in beat.py."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.utils import timezone

from apps.maintenance import beat
from apps.services.tasks import exclusively

logger = logging.getLogger(__name__)

# A PostgreSQL advisory lock key (see apps.services.tasks): "OPSP", maintenance's range, 1.
TICK_MAINTENANCE_LOCK = 0x4F50_5350_0201


@shared_task(name="apps.maintenance.tasks.tick_maintenance", ignore_result=True)
def tick_maintenance() -> dict[str, Any]:
    """Start, end and announce on time (every minute from the beat schedule), unless the
    previous tick still works: then this one skips its turn."""
    with exclusively(TICK_MAINTENANCE_LOCK) as acquired:
        if not acquired:
            logger.info("tick_maintenance skipped: the previous tick is still working")
            return {"skipped": True}
        return beat.tick(timezone.now()).as_dict()
