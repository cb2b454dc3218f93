"""Maintenance windows: a window (one-off or recurring), its occurrences, the communication
plan's stages of each occurrence, and each occurrence's checklist."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from apps.maintenance.choices import (
    STATE_LOOK,
    Impact,
    OccurrenceState,
    StageKind,
    StepKind,
    WindowState,
)
from apps.services.models import DeploymentTarget, Environment, Service
from apps.statuspage.models import StatusComponent


class Window(models.Model):
    """Planned maintenance of some services: when (stored in UTC, planned in a named IANA
    zone so that a recurrence follows that zone's clock across DST changes), what users
    will notice, and whether the portal switches the services' maintenance mode itself.

    ``start_at``/``end_at`` are the first occurrence; a recurrence (an RFC 5545 RRULE, e.g.
    ``FREQ=WEEKLY;BYDAY=SU``) repeats that wall-clock slot in ``time_zone``."""

    title = models.CharField(max_length=200)
    services = models.ManyToManyField(Service, related_name="maintenance_windows")
    environments = models.ManyToManyField(
        Environment,
        related_name="maintenance_windows",
        blank=True,
        help_text="None chosen: every environment of the services.",
    )
    time_zone = models.CharField(max_length=64, default="Europe/London")
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    recurrence = models.CharField(
        max_length=500,
        blank=True,
        help_text="Optional RFC 5545 rule, e.g. FREQ=WEEKLY;BYDAY=SU or FREQ=MONTHLY;BYDAY=1SA.",
    )
    impact = models.CharField(max_length=10, choices=Impact.choices, default=Impact.DEGRADED)
    message = models.TextField(
        "Message for users",
        max_length=1000,
        help_text="Plain text, shown as typed (HTML is not interpreted).",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="maintenance_windows"
    )
    maintenance_mode = models.BooleanField(
        default=False,
        help_text="Set MAINTENANCE_MODE=true and MAINTENANCE_MESSAGE on the services at the "
        "start, and remove them at the end.",
    )
    short_notice_reason = models.TextField(blank=True)
    state = models.CharField(
        max_length=12, choices=WindowState.choices, default=WindowState.SCHEDULED
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["start_at", "pk"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("maintenance:detail", args=[self.pk])

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def origin(self) -> str:
        return f"maintenance:{self.pk}"

    def affected_targets(self) -> models.QuerySet[DeploymentTarget]:
        targets = DeploymentTarget.objects.filter(service__in=self.services.all())
        environments = list(self.environments.values_list("pk", flat=True))
        if environments:
            targets = targets.filter(environment__in=environments)
        return targets.select_related("service", "environment").order_by(
            "service__name", "environment__order"
        )


class OccurrenceQuerySet(models.QuerySet["Occurrence"]):
    def to_start(self, now: datetime) -> OccurrenceQuerySet:
        return self.filter(state=OccurrenceState.SCHEDULED, start_at__lte=now)

    def to_end(self, now: datetime) -> OccurrenceQuerySet:
        return self.filter(state=OccurrenceState.IN_PROGRESS, end_at__lte=now)

    def active(self) -> OccurrenceQuerySet:
        return self.filter(state=OccurrenceState.IN_PROGRESS)


class Occurrence(models.Model):
    """One time a window happens: materialised ahead (the next few of a recurrence) so that
    each can be skipped or moved on its own and carries its own stages and checklist.
    ``original_start`` is where the rule put it, so a moved one is not created again."""

    window = models.ForeignKey(Window, on_delete=models.CASCADE, related_name="occurrences")
    original_start = models.DateTimeField()
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    state = models.CharField(
        max_length=12, choices=OccurrenceState.choices, default=OccurrenceState.SCHEDULED
    )
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    short_notice = models.BooleanField(default=False)
    # What the portal could not do by itself (a refused flag change), for people to see.
    problems = models.JSONField(default=list, blank=True)

    objects = OccurrenceQuerySet.as_manager()

    class Meta:
        ordering = ["start_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["window", "original_start"], name="one_occurrence_per_rule_start"
            ),
            models.CheckConstraint(
                condition=Q(end_at__gt=models.F("start_at")), name="occurrence_ends_after_start"
            ),
        ]
        indexes = [
            # The beat's two questions, each answered from a small partial index.
            models.Index(
                fields=["start_at"],
                name="occurrence_to_start",
                condition=Q(state=OccurrenceState.SCHEDULED),
            ),
            models.Index(
                fields=["end_at"],
                name="occurrence_to_end",
                condition=Q(state=OccurrenceState.IN_PROGRESS),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.window.title} ({self.start_at:%Y-%m-%d %H:%M} UTC)"

    def get_absolute_url(self) -> str:
        return f"{self.window.get_absolute_url()}#occurrence-{self.pk}"

    @property
    def look(self) -> tuple[str, str]:
        return STATE_LOOK[self.state]

    @property
    def duration(self) -> timedelta:
        return self.end_at - self.start_at

    @property
    def is_final(self) -> bool:
        return self.state in (
            OccurrenceState.COMPLETED,
            OccurrenceState.SKIPPED,
            OccurrenceState.CANCELLED,
        )


class StageQuerySet(models.QuerySet["Stage"]):
    def webhook_retries(self, now: datetime) -> StageQuerySet:
        """Stages whose webhook post failed and is due to be tried again."""
        return self.filter(webhook_retry_at__lte=now)

    def due(self, now: datetime) -> StageQuerySet:
        """Unclaimed stages whose time came: read through the partial index on due_at."""
        return self.filter(claimed_at__isnull=True, due_at__lte=now)

    def unconfirmed(self, before: datetime) -> StageQuerySet:
        """Claimed before ``before`` and never recorded: the worker stopped in between."""
        return self.filter(finished_at__isnull=True, claimed_at__lt=before)


class StageOutcome(models.TextChoices):
    PENDING = "", "Pending"
    SENT = "sent", "Sent"
    SKIPPED = "skipped", "Skipped"
    UNCONFIRMED = "unconfirmed", "Unconfirmed"


class Stage(models.Model):
    """One message of the communication plan of an occurrence (announce, remind, in progress,
    completed), due at an instant. The beat claims it (conditional UPDATE of ``claimed_at``),
    sends it, then records the outcome: sent (``late`` with a note when its time passed while
    the portal was down), skipped with the reason, or unconfirmed when the worker stopped
    between claiming and recording (never sent twice: at most once, see communication.py)."""

    occurrence = models.ForeignKey(Occurrence, on_delete=models.CASCADE, related_name="stages")
    kind = models.CharField(max_length=12, choices=StageKind.choices)
    due_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=12, choices=StageOutcome.choices, blank=True, default=StageOutcome.PENDING
    )
    late = models.BooleanField(default=False)
    note = models.TextField(blank=True)
    # A webhook post that failed is tried again by the beat (same dedupe key) until this
    # many attempts; ``webhook_retry_at`` is when the next one is due (None: nothing to retry).
    webhook_attempts = models.PositiveSmallIntegerField(default=0)
    webhook_retry_at = models.DateTimeField(null=True, blank=True)

    objects = StageQuerySet.as_manager()

    class Meta:
        ordering = ["due_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["occurrence", "kind"], name="one_stage_per_kind"),
        ]
        indexes = [
            models.Index(fields=["due_at"], name="stage_due", condition=Q(claimed_at__isnull=True)),
            models.Index(
                fields=["claimed_at"],
                name="stage_claimed_unrecorded",
                condition=Q(claimed_at__isnull=False, finished_at__isnull=True),
            ),
            models.Index(
                fields=["webhook_retry_at"],
                name="stage_webhook_retry",
                condition=Q(webhook_retry_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.occurrence}"

    @property
    def dedupe_key(self) -> str:
        """The same for every attempt at this stage: receivers can drop a repeat."""
        return f"maintenance-stage-{self.pk}"

    @property
    def status_word(self) -> str:
        if self.outcome == StageOutcome.SENT:
            return "Sent late" if self.late else "Sent"
        if self.outcome:
            return self.get_outcome_display()
        return "Sending" if self.claimed_at else "Pending"

    @property
    def look(self) -> tuple[str, str]:
        if self.outcome == StageOutcome.SENT:
            return (
                ("envelope-exclamation", "warning") if self.late else ("envelope-check", "success")
            )
        if self.outcome == StageOutcome.SKIPPED:
            return ("skip-forward", "secondary")
        if self.outcome == StageOutcome.UNCONFIRMED:
            return ("question-circle", "warning")
        return ("hourglass-split", "secondary")


class ChecklistStep(models.Model):
    """One step of an occurrence's runbook checklist, ticked by a person with a note; the
    "verify health" step also keeps what the probes answered."""

    occurrence = models.ForeignKey(Occurrence, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=10, choices=StepKind.choices)
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.TextField(blank=True, max_length=2000)
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["occurrence", "position"]
        constraints = [
            models.UniqueConstraint(fields=["occurrence", "kind"], name="one_step_per_kind"),
        ]

    def __str__(self) -> str:
        return self.get_kind_display()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class SubscriberQuerySet(models.QuerySet["Subscriber"]):
    def confirmed(self) -> SubscriberQuerySet:
        return self.filter(confirmed_at__isnull=False)


class Subscriber(models.Model):
    """Someone (inside the company or not) who asked, by email, to hear about maintenance
    (and incidents) of the status page's components: all of them, or the chosen ones.

    Double opt-in: a request creates an unconfirmed row and mails its link; confirming it
    replaces any earlier confirmed row of the same address. The token is the secret of both
    the confirmation and the one-click unsubscribe link."""

    email = models.EmailField(max_length=254)
    all_components = models.BooleanField(default=True)
    components = models.ManyToManyField(StatusComponent, blank=True, related_name="subscribers")
    token = models.CharField(max_length=64, unique=True, default=new_token)
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    objects = SubscriberQuerySet.as_manager()

    class Meta:
        ordering = ["email", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["email"],
                name="one_confirmed_subscription_per_email",
                condition=Q(confirmed_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.email
