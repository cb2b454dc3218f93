from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from apps.common.crypto import decrypt, encrypt
from apps.incidents.choices import (
    OPEN_STATES,
    Channel,
    EntryKind,
    IncidentState,
    NotificationState,
    Role,
    Visibility,
)
from apps.services.models import Environment, Service

INCIDENT_TYPE = "incidents.incident"


class Severity(models.Model):
    """How bad an incident is, and what that asks of the team: how soon someone must
    acknowledge it, how often the commander posts updates, whether a post-mortem is due and
    whether ordinary deploys stop on its services. Admins edit the table; rank 1 is worst."""

    key = models.CharField(max_length=10, unique=True)  # "SEV-1"
    rank = models.PositiveSmallIntegerField(unique=True)
    name = models.CharField(max_length=100)  # "Complete outage"
    description = models.TextField(blank=True)
    acknowledge_within = models.DurationField()
    # "Next business day": the deadline skips Saturdays and Sundays.
    business_days = models.BooleanField(default=False)
    update_every = models.DurationField(null=True, blank=True)
    requires_postmortem = models.BooleanField(default=False)
    blocks_deploys = models.BooleanField(default=False)

    class Meta:
        ordering = ["rank"]
        verbose_name_plural = "severities"

    def __str__(self) -> str:
        return f"{self.key} {self.name}"

    def acknowledge_by(self, start: datetime) -> datetime:
        """The acknowledgement deadline of an incident declared (or escalated) at ``start``."""
        deadline = start + self.acknowledge_within
        if self.business_days:
            while deadline.weekday() >= 5:
                deadline += timedelta(days=1)
        return deadline


class EscalationPolicy(models.Model):
    """Who is told, and how, as an unacknowledged incident escalates level by level. The
    webhook is a Slack-compatible incoming webhook; its URL is a secret, encrypted at rest."""

    name = models.CharField(max_length=100, unique=True)
    is_default = models.BooleanField(default=False)
    email_enabled = models.BooleanField("Send email", default=True)
    webhook_url_encrypted = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "escalation policies"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_policy"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def webhook_url(self) -> str:
        return decrypt(self.webhook_url_encrypted) if self.webhook_url_encrypted else ""

    @webhook_url.setter
    def webhook_url(self, value: str) -> None:
        self.webhook_url_encrypted = encrypt(value) if value else ""


class EscalationLevel(models.Model):
    """One step of a policy: level 1 is told when an incident is declared, each next level
    when the acknowledgement deadline passes again without an acknowledgement."""

    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="levels")
    level = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)  # "On-call engineer"
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    groups = models.ManyToManyField(Group, blank=True, related_name="+")

    class Meta:
        ordering = ["policy", "level"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "level"], name="one_level_number_per_policy")
        ]

    def __str__(self) -> str:
        return f"Level {self.level}: {self.name}"


class IncidentQuerySet(models.QuerySet["Incident"]):
    def open(self) -> IncidentQuerySet:
        return self.filter(state__in=OPEN_STATES)

    def for_list(self) -> IncidentQuerySet:
        return self.select_related("severity", "commander").prefetch_related("services")


class Incident(models.Model):
    """Something is broken for someone: from declaration to the closed post-mortem. Every
    change to it is also a timeline entry; the row keeps the current values and the
    deadlines that the beat task watches (acknowledgement, next update)."""

    title = models.CharField(max_length=200)
    severity = models.ForeignKey(Severity, on_delete=models.PROTECT, related_name="incidents")
    state = models.CharField(
        max_length=20, choices=IncidentState.choices, default=IncidentState.INVESTIGATING
    )
    customer_impact = models.TextField(blank=True)
    services = models.ManyToManyField(Service, blank=True, related_name="incidents")
    # Empty means every environment of the affected services.
    environments = models.ManyToManyField(Environment, blank=True, related_name="incidents")

    commander = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    communications_lead = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    technical_lead = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    policy = models.ForeignKey(
        EscalationPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    declared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    declared_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The level of the escalation policy told last (1 at declaration), and when the next
    # level is due if nobody acknowledges: the beat task escalates when it passes.
    escalation_level = models.PositiveSmallIntegerField(default=1)
    acknowledge_by = models.DateTimeField(null=True, blank=True)
    # When the commander owes the next update (SEV-1/SEV-2), and the due time already
    # reminded about, so that each missed update is reminded once.
    next_update_due = models.DateTimeField(null=True, blank=True)
    reminded_for = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    postmortem_due = models.DateTimeField(null=True, blank=True)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-declared_at"]
        indexes = [
            models.Index(fields=["state", "acknowledge_by"], name="incident_state_ack_by"),
            models.Index(fields=["state", "next_update_due"], name="incident_state_update_due"),
            models.Index(fields=["-declared_at"], name="incident_declared"),
        ]

    def __str__(self) -> str:
        return f"Incident #{self.pk}: {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("incidents:detail", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def is_acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    def holder_of(self, role: Role) -> models.Model | None:
        return getattr(self, role.value)  # type: ignore[no-any-return]

    @property
    def time_to_acknowledge(self) -> timedelta | None:
        return self.acknowledged_at - self.declared_at if self.acknowledged_at else None

    @property
    def time_to_resolve(self) -> timedelta | None:
        return self.resolved_at - self.declared_at if self.resolved_at else None


class TimelineEntryQuerySet(models.QuerySet["TimelineEntry"]):
    def public(self) -> TimelineEntryQuerySet:
        return self.filter(visibility=Visibility.PUBLIC)


class TimelineEntry(models.Model):
    """One thing that happened in an incident, written once and never changed: a
    correction is a new entry pointing to the one it corrects. ``occurred_at`` is when it
    happened (earlier when logged afterwards), ``created_at`` when it was written."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=20, choices=EntryKind.choices)
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.INTERNAL
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    text = models.TextField(blank=True)
    # A status update, structured as the runbooks write them.
    current_status = models.TextField(blank=True)
    findings = models.TextField(blank=True)
    next_steps = models.TextField(blank=True)
    eta = models.CharField("ETA", max_length=100, blank=True)
    # The facts of a change (from/to, who was told), for the page and the exports.
    data = models.JSONField(default=dict, blank=True)
    operation = models.ForeignKey(
        "operations.Operation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    corrects = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="corrections"
    )
    occurred_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    objects = TimelineEntryQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "timeline entries"
        indexes = [
            models.Index(fields=["incident", "id"], name="entry_incident_id"),
            models.Index(
                fields=["visibility", "-created_at"],
                name="entry_public_created",
                condition=Q(visibility="public"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} in incident #{self.incident_id}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("Timeline entries are immutable: write a correction instead.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    @property
    def is_public(self) -> bool:
        return self.visibility == Visibility.PUBLIC


class PostMortem(models.Model):
    """What the team learned: due within 48 hours of resolving a SEV-1 or SEV-2. The
    timeline excerpt starts as the entries' text and may be edited; the entries stay."""

    incident = models.OneToOneField(Incident, on_delete=models.PROTECT, related_name="postmortem")
    summary = models.TextField(blank=True)
    impact = models.TextField(blank=True)
    timeline = models.TextField("Timeline excerpt", blank=True)
    root_cause = models.TextField(blank=True)
    contributing_factors = models.TextField(blank=True)
    went_well = models.TextField("What went well", blank=True)
    went_badly = models.TextField("What went badly", blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Post-mortem of incident #{self.incident_id}"

    def get_absolute_url(self) -> str:
        return reverse("incidents:postmortem", args=[self.incident_id])

    @property
    def is_complete(self) -> bool:
        return self.completed_at is not None


class ActionItem(models.Model):
    """A follow-up from a post-mortem, with an owner and a due date, open until done."""

    postmortem = models.ForeignKey(PostMortem, on_delete=models.CASCADE, related_name="actions")
    title = models.CharField(max_length=300)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    due_date = models.DateField()
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["due_date", "id"]
        indexes = [models.Index(fields=["done_at", "due_date"], name="action_item_open_due")]

    def __str__(self) -> str:
        return self.title


class Notification(models.Model):
    """One message to one recipient about one incident event, sent by a worker with retries;
    kept with its outcome so that "was the CTO told?" has an answer."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="notifications")
    event = models.CharField(max_length=20, choices=EntryKind.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    recipient = models.CharField(max_length=254)  # an address, or "webhook"
    subject = models.CharField(max_length=300)
    body = models.TextField()
    state = models.CharField(
        max_length=10, choices=NotificationState.choices, default=NotificationState.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} to {self.recipient}: {self.subject}"
