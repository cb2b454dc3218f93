from __future__ import annotations

import fnmatch
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from apps.common.crypto import decrypt, encrypt
from apps.operations.registry import Target
from apps.services.choices import ClusterAccess, Health, Tier

if TYPE_CHECKING:
    from apps.services.cluster import ClusterConnection

# Kubernetes names: namespaces and containers are DNS-1123 labels, deployments subdomains.
dns_label = RegexValidator(
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
    "Use lowercase letters, digits and '-', starting and ending with a letter or digit "
    "(at most 63 characters), as Kubernetes requires.",
)
dns_subdomain = RegexValidator(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "Use lowercase letters, digits, '-' and '.', as Kubernetes requires.",
)

TARGET_TYPE = "services.target"


@cache
def services_root() -> str:
    return reverse("services:dashboard")


DEFAULT_FLAG_ALLOWLIST = "MAINTENANCE_MODE\nMAINTENANCE_MESSAGE\nFEATURE_*"


class Service(models.Model):
    """One thing the team runs: who owns it, how critical it is, and where to read more."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    team = models.CharField("Owning team", max_length=100)
    tier = models.CharField(max_length=1, choices=Tier.choices, default=Tier.TIER_2)
    repository_url = models.URLField("Repository", blank=True)
    runbook_url = models.URLField("Runbook", blank=True)
    dashboard_url = models.URLField("Dashboard", blank=True)
    flag_allowlist = models.TextField(
        "Environment flags operators may set",
        default=DEFAULT_FLAG_ALLOWLIST,
        help_text="One name per line; a trailing * allows a prefix (FEATURE_*).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        # Built from the dashboard's URL rather than reversed: the dashboard links every
        # service three times, and reverse() costs more than the rest of a tile.
        return f"{services_root()}{self.slug}/"

    @property
    def allowed_flags(self) -> list[str]:
        return [line.strip() for line in self.flag_allowlist.splitlines() if line.strip()]

    def allows_flag(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.allowed_flags)


class Environment(models.Model):
    """Staging, production, …: production is flagged, and shown in red everywhere."""

    name = models.CharField(max_length=50, unique=True)
    slug = models.SlugField(max_length=50, unique=True)
    is_production = models.BooleanField(default=False)
    order = models.PositiveSmallIntegerField(
        default=0, help_text="Columns of the dashboard, from left to right."
    )

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name


class Cluster(models.Model):
    """A Kubernetes cluster the portal talks to. The kubeconfig is encrypted at rest and only
    ever decrypted into memory for the driver: no page, log or audit record shows it."""

    name = models.CharField(max_length=100, unique=True)
    access = models.CharField(
        max_length=20, choices=ClusterAccess.choices, default=ClusterAccess.KUBECONFIG
    )
    kubeconfig_encrypted = models.TextField(blank=True, editable=False)
    context = models.CharField(max_length=200, blank=True)
    # Not secret, and what people recognise a cluster by.
    server = models.CharField("API server", max_length=500, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    check_ok = models.BooleanField(null=True)
    check_detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_kubeconfig(self, text: str) -> None:
        self.kubeconfig_encrypted = encrypt(text) if text else ""

    @property
    def has_kubeconfig(self) -> bool:
        return bool(self.kubeconfig_encrypted)

    def connection(self) -> ClusterConnection:
        from apps.services.cluster import ClusterConnection

        if self.access == ClusterAccess.IN_CLUSTER:
            return ClusterConnection(kubeconfig="", context="", in_cluster=True)
        return ClusterConnection(
            kubeconfig=decrypt(self.kubeconfig_encrypted) if self.kubeconfig_encrypted else "",
            context=self.context,
        )


class DeploymentTargetQuerySet(models.QuerySet["DeploymentTarget"]):
    def for_dashboard(self) -> DeploymentTargetQuerySet:
        """Only what a dashboard tile shows: hundreds of rows are read per view, so the wide
        columns (URLs, errors, the last change's parameters and log) stay behind."""
        return self.select_related("last_change__requested_by").only(
            "service_id",
            "environment_id",
            "observed_image",
            "desired_replicas",
            "ready_replicas",
            "health",
            "health_checked_at",
            "last_change__kind",
            "last_change__state",
            "last_change__created_at",
            "last_change__requested_by__username",
        )


class DeploymentTarget(models.Model):
    """A service in one environment: which deployment in which cluster runs it, where its
    health answers, and the replica bounds operators may scale within.

    It also keeps what was last seen of the deployment and of its health, so that the
    dashboard reads one table instead of asking hundreds of clusters and URLs per view."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="targets")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="targets")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="targets")
    namespace = models.CharField(max_length=63, validators=[dns_label])
    deployment = models.CharField(max_length=253, validators=[dns_subdomain])
    container = models.CharField(max_length=63, validators=[dns_label])
    liveness_url = models.URLField("Liveness URL", max_length=500, blank=True)
    readiness_url = models.URLField("Readiness URL", max_length=500, blank=True)
    health_url = models.URLField("Health JSON URL", max_length=500, blank=True)
    min_replicas = models.PositiveSmallIntegerField(default=1)
    max_replicas = models.PositiveSmallIntegerField(default=10)

    # What the cluster last said (refreshed by a beat task and after every operation).
    observed_image = models.CharField(max_length=500, blank=True)
    observed_revision = models.PositiveIntegerField(null=True, blank=True)
    desired_replicas = models.PositiveIntegerField(null=True, blank=True)
    ready_replicas = models.PositiveIntegerField(null=True, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)
    observed_error = models.CharField(max_length=500, blank=True)

    # The latest probe (the full history is in HealthCheck).
    health = models.CharField(max_length=10, choices=Health.choices, default=Health.NO_DATA)
    health_detail = models.CharField(max_length=300, blank=True)
    health_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    tls_expires_at = models.DateTimeField(null=True, blank=True)

    last_change = models.ForeignKey(
        "operations.Operation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The last operation that changed the deployment.",
    )

    objects = DeploymentTargetQuerySet.as_manager()

    class Meta:
        ordering = ["service__name", "environment__order"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "environment"], name="one_target_per_service_environment"
            ),
            models.CheckConstraint(
                condition=Q(min_replicas__lte=F("max_replicas")),
                name="target_min_replicas_at_most_max",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service.name} ({self.environment.name})"

    def get_absolute_url(self) -> str:
        return f"{self.service.get_absolute_url()}?env={self.environment.slug}"

    @property
    def kubectl_ref(self) -> str:
        return f"deployment/{self.deployment} -n {self.namespace}"

    @property
    def image_tag(self) -> str:
        """The part of the image people compare: the tag, or a short digest."""
        image = self.observed_image
        if "@" in image:
            return image.rsplit("@", 1)[1][:19]
        last = image.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else "latest"

    def as_operation_target(self) -> Target:
        return Target(
            type=TARGET_TYPE,
            id=str(self.pk),
            label=f"{self.service.name} ({self.environment.name})",
            environment=self.environment.name,
            is_production=self.environment.is_production,
            url=self.get_absolute_url(),
        )

    def health_now(self, now: datetime | None = None) -> str:
        """The probe's verdict, or "stale" when it is older than two probe intervals: a tile
        never shows old news as current."""
        if self.health_checked_at is None:
            return Health.NO_DATA
        now = now or timezone.now()
        if now - self.health_checked_at > 2 * settings.HEALTH_PROBE_INTERVAL:
            return Health.STALE
        return self.health

    @property
    def tls_days_left(self) -> int | None:
        if self.tls_expires_at is None:
            return None
        return (self.tls_expires_at - timezone.now()) // timedelta(days=1)


class HealthCheck(models.Model):
    """One probe of a target's health URLs: the verdict, the latency, and the checks its
    health JSON reported. Kept for HEALTH_RAW_RETENTION; hourly rollups keep the uptime."""

    target = models.ForeignKey(
        DeploymentTarget, on_delete=models.CASCADE, related_name="health_checks"
    )
    checked_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=Health.choices)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True)
    checks = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-checked_at"]
        indexes = [
            models.Index(fields=["target", "-checked_at"], name="healthcheck_target_time"),
            # The hourly rollup and the retention delete range over time alone.
            models.Index(fields=["checked_at"], name="healthcheck_time"),
        ]

    def __str__(self) -> str:
        return f"{self.target_id} {self.status} at {self.checked_at:%H:%M:%S}"


class HealthRollup(models.Model):
    """The probes of one target in one hour, counted: what uptime over 7 and 30 days is
    computed from once the raw results are gone."""

    target = models.ForeignKey(DeploymentTarget, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    probes = models.PositiveIntegerField(default=0)
    ok = models.PositiveIntegerField(default=0)
    latency_ms_total = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["target", "hour"], name="one_rollup_per_target_hour")
        ]

    def __str__(self) -> str:
        return f"{self.target_id} {self.hour:%Y-%m-%d %H}:00 {self.ok}/{self.probes}"


class DeployFreezeQuerySet(models.QuerySet["DeployFreeze"]):
    def in_force(self, now: datetime | None = None) -> DeployFreezeQuerySet:
        now = now or timezone.now()
        return self.filter(lifted_at__isnull=True, starts_at__lte=now, expires_at__gt=now)

    def covering(self, target: DeploymentTarget) -> DeployFreezeQuerySet:
        return self.filter(
            Q(service__isnull=True) | Q(service_id=target.service_id),
            Q(environment__isnull=True) | Q(environment_id=target.environment_id),
        )


class DeployFreeze(models.Model):
    """A manual stop on changes, set by an admin: everywhere, for one service, for one
    environment, or both. It ends when it expires or is lifted."""

    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.CASCADE, related_name="freezes"
    )
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.CASCADE, related_name="freezes"
    )
    reason = models.TextField()
    starts_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    objects = DeployFreezeQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("starts_at")), name="freeze_ends_after_it_starts"
            )
        ]

    def __str__(self) -> str:
        return f"Freeze of {self.scope_label}"

    @property
    def scope_label(self) -> str:
        service = self.service.name if self.service else "all services"
        environment = self.environment.name if self.environment else "every environment"
        return f"{service} in {environment}"
