from __future__ import annotations

from django.db import models


class Outcome(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    DENIED = "denied", "Denied"


class ReviewRule(models.TextChoices):
    """Why a sensitive event entered the manager review queue (apps/audit/review.py)."""

    PRODUCTION_RESTORE = "production_restore", "Production restore"
    APPROVAL = "approval", "Approval"
    GATE_OVERRIDE = "gate_override", "Deploy gate overridden"
    SCALE_TO_ZERO = "scale_to_zero", "Production scaled to zero"
    AUDIT_EXPORT = "audit_export", "Audit export"
    ROLE_CHANGE = "role_change", "Change of roles"
    AUTO_PRUNE = "auto_prune", "Automatic pruning turned on"
