from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.services.models import Service

COMPONENT_TYPE = "statuspage.statuscomponent"


class StatusComponent(models.Model):
    """A service an admin made public: it shows on the status page under the name the
    public knows it by, in the admin's order. Removing it hides the service, nothing more."""

    service = models.OneToOneField(
        Service, on_delete=models.CASCADE, related_name="status_component"
    )
    name = models.CharField("Public name", max_length=100, unique=True)
    description = models.CharField(
        "Short description",
        max_length=300,
        blank=True,
        help_text="One line for the public: what it is, not how it is built.",
    )
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name
