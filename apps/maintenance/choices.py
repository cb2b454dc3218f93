from __future__ import annotations

from django.db import models


class Impact(models.TextChoices):
    NONE = "none", "No impact"
    DEGRADED = "degraded", "Degraded"
    OUTAGE = "outage", "Full outage"


class WindowState(models.TextChoices):
    """A window as a whole: a recurring one stays scheduled while it has occurrences ahead."""

    SCHEDULED = "scheduled", "Scheduled"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class OccurrenceState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"


FINAL_OCCURRENCE_STATES = [
    OccurrenceState.COMPLETED,
    OccurrenceState.SKIPPED,
    OccurrenceState.CANCELLED,
]


class StageKind(models.TextChoices):
    """The runbooks' communication plan, in the order people hear it."""

    ANNOUNCE = "announce", "Announcement"
    REMIND = "remind", "Reminder"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"


class StepKind(models.TextChoices):
    """The runbooks' checklist, in order."""

    ANNOUNCE = "announce", "Announce"
    REMIND = "remind", "Remind"
    ENABLE = "enable", "Enable maintenance mode"
    WORK = "work", "Perform the work"
    VERIFY = "verify", "Verify health"
    DISABLE = "disable", "Disable maintenance mode"
    CONFIRM = "confirm", "Confirm"


# state → (Bootstrap icon, Bootstrap colour): never colour alone, the word goes beside it.
STATE_LOOK: dict[str, tuple[str, str]] = {
    OccurrenceState.SCHEDULED: ("calendar-event", "secondary"),
    OccurrenceState.IN_PROGRESS: ("tools", "info"),
    OccurrenceState.COMPLETED: ("check-circle-fill", "success"),
    OccurrenceState.SKIPPED: ("skip-forward-fill", "secondary"),
    OccurrenceState.CANCELLED: ("x-circle", "secondary"),
}
