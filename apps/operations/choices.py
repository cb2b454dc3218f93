from __future__ import annotations

from django.db import models


class State(models.TextChoices):
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    APPROVED = "approved", "Approved"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"


# While an operation is in one of these, no other may start on the same target.
ACTIVE_STATES = [State.AWAITING_APPROVAL, State.APPROVED, State.QUEUED, State.RUNNING]
FINAL_STATES = [State.SUCCEEDED, State.FAILED, State.CANCELLED, State.REJECTED]


class Approval(models.TextChoices):
    NEVER = "never", "Never"
    PRODUCTION = "production", "On production targets"
    ALWAYS = "always", "Always"


class LogLevel(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
