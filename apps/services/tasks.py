"""Celery tasks of the service catalog: thin entry points that the beat schedule names
(opsportal/settings.py); the work is in the modules they call."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from celery import shared_task

from apps.common.locks import Lock, exclusively
from apps.services import observe, probes

logger = logging.getLogger(__name__)


@shared_task(name="apps.services.tasks.probe_health", ignore_result=True)
def probe_health() -> dict[str, Any]:
    """One probe cycle over every target, unless the previous one is still running."""
    with exclusively(Lock.PROBE_HEALTH) as acquired:
        if not acquired:
            logger.info("probe_health skipped: the previous cycle is still running")
            return {"skipped": True}
        # Returned for the worker's "succeeded" log line.
        return asdict(probes.probe_all())


@shared_task(name="apps.services.tasks.roll_up_health", ignore_result=True)
def roll_up_health() -> int:
    """Hourly counts of the raw probes, and the raw probes past their retention deleted."""
    return probes.roll_up()


@shared_task(name="apps.services.tasks.refresh_deployments", ignore_result=True)
def refresh_deployments() -> dict[str, Any]:
    """Read every target's deployment from its cluster, unless the previous run still works."""
    with exclusively(Lock.REFRESH_DEPLOYMENTS) as acquired:
        if not acquired:
            return {"skipped": True}
        return {"answered": observe.refresh_all()}
