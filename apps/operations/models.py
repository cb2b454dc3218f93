from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from apps.operations.choices import ACTIVE_STATES, FINAL_STATES, LogLevel, State
from apps.operations.registry import Target


def hash_params(params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class OperationQuerySet(models.QuerySet["Operation"]):
    def active(self) -> OperationQuerySet:
        return self.filter(state__in=ACTIVE_STATES)

    def for_list(self) -> OperationQuerySet:
        return self.select_related("requested_by").defer("params", "error").order_by("-id")


class Operation(models.Model):
    """One long-running or dangerous action, from request to outcome.

    The row, not the broker, is the truth about the operation: a worker claims it with a
    conditional UPDATE (queued → running), beats its heartbeat while it works, and records the
    outcome; the reaper fails it if the heartbeat stops.
    """

    kind = models.CharField(max_length=100)
    # What it acts on: a reference that survives the target being renamed or deleted.
    target_type = models.CharField(max_length=100)
    target_id = models.CharField(max_length=64)
    target_label = models.CharField(max_length=255)
    target_key = models.CharField(max_length=200)
    environment = models.CharField(max_length=50, blank=True)
    is_production = models.BooleanField(default=False)

    params = models.JSONField(default=dict, blank=True)
    params_hash = models.CharField(max_length=64)
    reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="operations"
    )
    idempotency_key = models.CharField(max_length=64, null=True, blank=True, unique=True)

    state = models.CharField(max_length=20, choices=State.choices)
    progress = models.PositiveSmallIntegerField(default=0)
    status_text = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)

    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    send_count = models.PositiveSmallIntegerField(default=0)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # An admin started it through a closed gate (a freeze, an open incident), with a reason.
    gate_overridden = models.BooleanField(default=False)
    # Where it was started from ("incident:12"; see origins.py), or blank.
    origin = models.CharField(max_length=100, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="approved_operations",
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    approval_expires_at = models.DateTimeField(null=True, blank=True)
    approval_params_hash = models.CharField(max_length=64, blank=True)
    approval_comment = models.TextField(blank=True)

    objects = OperationQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["target_key"],
                condition=Q(state__in=ACTIVE_STATES),
                name="one_active_operation_per_target",
            ),
            models.CheckConstraint(
                condition=Q(progress__lte=100), name="operation_progress_at_most_100"
            ),
        ]
        # The list filters by one column and pages by id: each filter gets an index that
        # ends in id, so a filtered page is as cheap as the first.
        indexes = [
            models.Index(fields=["state", "-id"], name="operation_state_id"),
            models.Index(fields=["kind", "-id"], name="operation_kind_id"),
            models.Index(fields=["requested_by", "-id"], name="operation_requester_id"),
            models.Index(fields=["state", "heartbeat_at"], name="operation_state_heartbeat"),
            models.Index(
                fields=["origin", "-id"], name="operation_origin_id", condition=~Q(origin="")
            ),
        ]
        permissions = [
            ("run_operation", "Can start operations"),
            ("run_destructive_operation", "Can start destructive operations"),
            ("approve_operation", "Can approve or reject other people's operations"),
            ("override_gate", "Can start changes through a closed deploy gate"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} on {self.target_label}"

    def get_absolute_url(self) -> str:
        return reverse("operations:detail", args=[self.pk])

    @property
    def target(self) -> Target:
        return Target(
            self.target_type,
            self.target_id,
            self.target_label,
            self.environment,
            self.is_production,
        )

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def is_live(self) -> bool:
        """Whether the page should keep polling for news."""
        return self.state in (State.QUEUED, State.RUNNING)

    def approval_is_valid(self, now: datetime | None = None) -> bool:
        """Approved, not expired, and for exactly the parameters it has now."""
        now = now or timezone.now()
        return (
            self.approved_at is not None
            and self.approval_expires_at is not None
            and now < self.approval_expires_at
            and self.approval_params_hash == self.params_hash
        )

    @property
    def params_given(self) -> dict[str, Any]:
        """The parameters as the operation's page lists them: one left to its default (None,
        e.g. a backup into the target's own storage) says nothing there."""
        return {name: value for name, value in self.params.items() if value is not None}

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()


class OperationLogLine(models.Model):
    """One timestamped line of an operation's log; lines are only ever appended."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="log_lines")
    created_at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=10, choices=LogLevel.choices, default=LogLevel.INFO)
    message = models.TextField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["operation", "id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%H:%M:%S} {self.message}"
