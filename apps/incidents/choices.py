from __future__ import annotations

from django.db import models


class IncidentState(models.TextChoices):
    """The runbooks' lifecycle, in order: an incident moves forward, or is reopened."""

    INVESTIGATING = "investigating", "Investigating"
    IDENTIFIED = "identified", "Identified"
    MITIGATING = "mitigating", "Mitigating"
    MONITORING = "monitoring", "Monitoring"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


OPEN_STATES = [
    IncidentState.INVESTIGATING,
    IncidentState.IDENTIFIED,
    IncidentState.MITIGATING,
    IncidentState.MONITORING,
]
STATE_ORDER = [state.value for state in IncidentState]


class Role(models.TextChoices):
    COMMANDER = "commander", "Incident commander"
    COMMUNICATIONS = "communications_lead", "Communications lead"
    TECHNICAL = "technical_lead", "Technical lead"


class EntryKind(models.TextChoices):
    DECLARED = "declared", "Declared"
    NOTE = "note", "Note"
    UPDATE = "update", "Status update"
    STATE = "state", "State change"
    SEVERITY = "severity", "Severity change"
    ROLE = "role", "Role handover"
    SERVICES = "services", "Affected services"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    ESCALATED = "escalated", "Escalated"
    REMINDER = "reminder", "Update reminder"
    ALERT = "alert", "Alert"
    OPERATION = "operation", "Operation"
    POSTMORTEM = "postmortem", "Post-mortem"


class Visibility(models.TextChoices):
    INTERNAL = "internal", "Internal"
    PUBLIC = "public", "Public"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class NotificationState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
