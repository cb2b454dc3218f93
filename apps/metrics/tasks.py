"""Celery tasks of metrics: thin entry points the beat schedule names."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from celery import shared_task

from apps.common.locks import Lock, exclusively
from apps.metrics import evaluator

logger = logging.getLogger(__name__)


@shared_task(name="apps.metrics.tasks.evaluate_metrics", ignore_result=True)
def evaluate_metrics() -> dict[str, Any]:
    """Evaluate every metric definition (every minute from the beat schedule), unless the
    previous run still works."""
    with exclusively(Lock.EVALUATE_METRICS) as acquired:
        if not acquired:
            logger.info("evaluate_metrics skipped: the previous run is still working")
            return {"skipped": True}
        return asdict(evaluator.evaluate())
