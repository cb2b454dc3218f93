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
