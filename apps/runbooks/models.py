"""Runbooks: a team's Markdown document, kept with every version it was imported in."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

MAX_SOURCE_CHARS = 2_000_000


class RunbookQuerySet(models.QuerySet["Runbook"]):
    def search(self, text: str) -> RunbookQuerySet:
        """Runbooks whose title or current text contains ``text`` (case-insensitive)."""
        text = text.strip()
        if not text:
            return self
        return self.filter(
            models.Q(title__icontains=text) | models.Q(current__source__icontains=text)
        )


class Runbook(models.Model):
    """A Markdown runbook, global or attached to one service. Its text lives in versions:
    re-importing the team's file adds one, so that what changed stays readable."""

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    service = models.ForeignKey(
        "services.Service",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runbooks",
        help_text="Leave empty for a runbook about no one service.",
    )
    current = models.ForeignKey(
        "RunbookVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RunbookQuerySet.as_manager()

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("runbooks:detail", args=[self.slug])


class RunbookVersion(models.Model):
    """One imported text of a runbook, numbered from 1; never changed once saved."""

    runbook = models.ForeignKey(Runbook, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    source = models.TextField()
    sha256 = models.CharField(max_length=64)
    filename = models.CharField(max_length=255, blank=True)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    imported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["runbook", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["runbook", "number"], name="one_runbook_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.runbook.title} v{self.number}"

    @staticmethod
    def digest(source: str) -> str:
        return hashlib.sha256(source.encode()).hexdigest()


class RunState(models.TextChoices):
    OPEN = "open", "In progress"
    COMPLETED = "completed", "Completed"
    STOPPED = "stopped", "Stopped"


class StepState(models.TextChoices):
    PENDING = "pending", "To do"
    RUNNING = "running", "Operation started"
    FAILED = "failed", "Operation failed"
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped"


FINISHED_STEP_STATES = [StepState.DONE, StepState.SKIPPED]


class RunbookRun(models.Model):
    """A guided run of one section of a runbook version: its steps, ticked one by one or
    done through the portal's operations; left and resumed at will, until completed or
    stopped. Started from an incident, it writes into the incident's timeline."""

    runbook = models.ForeignKey(Runbook, on_delete=models.PROTECT, related_name="runs")
    version = models.ForeignKey(RunbookVersion, on_delete=models.PROTECT, related_name="runs")
    anchor = models.CharField(max_length=220)
    title = models.CharField(max_length=300)
    incident = models.ForeignKey(
        "incidents.Incident",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runbook_runs",
    )
    state = models.CharField(max_length=20, choices=RunState.choices, default=RunState.OPEN)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["state", "-started_at"], name="runbook_run_state")]

    def __str__(self) -> str:
        return f"Run #{self.pk}: {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("runbooks:run", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.state == RunState.OPEN


class RunStep(models.Model):
    """One step of a run, numbered from 1, with the commands fenced in it."""

    run = models.ForeignKey(RunbookRun, on_delete=models.CASCADE, related_name="steps")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=10)  # "step", "check" or "command" (procedures.py)
    text = models.TextField()
    details = models.JSONField(default=list, blank=True)
    commands = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=10, choices=StepState.choices, default=StepState.PENDING)
    note = models.TextField(blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    done_at = models.DateTimeField(null=True, blank=True)
    operation = models.ForeignKey(
        "operations.Operation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="one_run_step_number")
        ]

    def __str__(self) -> str:
        return f"Step {self.number} of run #{self.run_id}"

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STEP_STATES
