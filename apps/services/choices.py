from __future__ import annotations

from django.db import models


class Tier(models.TextChoices):
    TIER_1 = "1", "Tier 1 (customer-facing, 24/7)"
    TIER_2 = "2", "Tier 2 (business hours)"
    TIER_3 = "3", "Tier 3 (internal, best effort)"


class Health(models.TextChoices):
    """A probe's verdict, and what a dashboard tile shows (stale and no data are derived)."""

    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"
    NO_DATA = "no_data", "No data"
    STALE = "stale", "Stale"


class ClusterAccess(models.TextChoices):
    KUBECONFIG = "kubeconfig", "Kubeconfig (pasted or uploaded)"
    IN_CLUSTER = "in_cluster", "In-cluster service account"
