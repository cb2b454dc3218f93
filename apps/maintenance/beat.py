"""One beat tick (every minute, tasks.tick_maintenance): start the occurrences whose start
came, end those whose end came, then send the due stages. Each question is read through a
partial index, so a tick costs the same few queries with 5 or 5,000 windows scheduled."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from apps.audit.records import AuditTarget, record
from apps.maintenance import actions, communication
from apps.maintenance.choices import OccurrenceState
from apps.maintenance.models import Occurrence

logger = logging.getLogger(__name__)

BATCH = 200


@dataclass
class Tick:
    started: int = 0
    ended: int = 0
    missed: int = 0
    sent: int = 0
    skipped: int = 0
    unconfirmed: int = 0
    webhook_retries: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _miss(occurrence: Occurrence) -> None:
    """The whole occurrence passed while the portal was down: nothing is switched now."""
    with transaction.atomic():
        changed = Occurrence.objects.filter(
            pk=occurrence.pk, state=OccurrenceState.SCHEDULED
        ).update(
            state=OccurrenceState.SKIPPED,
            problems=[
                *occurrence.problems,
                "The portal was not running during this occurrence: it was not started and "
                "maintenance mode was not switched.",
            ],
        )
        if changed:
            record(
                "maintenance.occurrence_missed",
                actor=None,
                actor_label=communication.BEAT_ACTOR,
                target=AuditTarget(
                    "maintenance.window", str(occurrence.window_id), occurrence.window.title
                ),
                data={"occurrence": occurrence.pk},
            )


def tick(now: datetime) -> Tick:
    counts = Tick()
    for occurrence in Occurrence.objects.to_start(now).select_related("window")[:BATCH]:
        if occurrence.end_at <= now:
            _miss(occurrence)
            counts.missed += 1
            continue
        try:
            actions.do_start_occurrence(None, occurrence)
            counts.started += 1
        except actions.MaintenanceRefused as exc:
            logger.info("occurrence %s not started: %s", occurrence.pk, exc.message)
    for occurrence in Occurrence.objects.to_end(now).select_related("window")[:BATCH]:
        try:
            actions.do_end_occurrence(None, occurrence)
            counts.ended += 1
        except actions.MaintenanceRefused as exc:
            logger.info("occurrence %s not ended: %s", occurrence.pk, exc.message)
    sent = communication.send_due(now, BATCH)
    counts.sent, counts.skipped, counts.unconfirmed = sent.sent, sent.skipped, sent.unconfirmed
    counts.webhook_retries = sent.webhook_retries
    return counts
