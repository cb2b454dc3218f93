from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from apps.common.crypto import decrypt, encrypt
from apps.metrics.choices import Comparison, MetricStatus

if TYPE_CHECKING:
    from datetime import datetime

    from apps.metrics.client import Prometheus
    from apps.services.models import DeploymentTarget

# The placeholder a template carries where the target's label matchers go:
# `http_requests_total{$labels, code=~"5.."}` becomes
# `http_requests_total{job="api", namespace="prod", code=~"5.."}`.
LABELS_PLACEHOLDER = "$labels"
# The labels a template's aggregations keep (`sum by (job, namespace) (...)`), by which the
# evaluator maps one batched query's series back to targets.
TARGET_LABELS = ("job", "namespace")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def target_matchers(target: DeploymentTarget) -> str:
    """The label matchers selecting one target's series: the job is the deployment's name."""
    return f"job={_quote(target.deployment)}, namespace={_quote(target.namespace)}"


def batch_matchers(targets: Iterable[DeploymentTarget]) -> str:
    """Label matchers selecting the series of all `targets` at once (a superset when jobs and
    namespaces combine; the evaluator ignores the pairs it does not know)."""
    jobs = sorted({t.deployment for t in targets})
    namespaces = sorted({t.namespace for t in targets})
    job_re = "|".join(re.escape(j) for j in jobs)
    namespace_re = "|".join(re.escape(n) for n in namespaces)
    return f"job=~{_quote(job_re)}, namespace=~{_quote(namespace_re)}"


class PrometheusConnection(models.Model):
    """The one Prometheus the portal reads metrics from, edited by admins.

    The bearer token and the basic-auth password are encrypted at rest like the clusters'
    kubeconfigs and never shown again once saved (write-only in the form)."""

    # A CharField: URLField refuses the one-word hosts of cluster DNS (http://prometheus:9090);
    # forms.prometheus_url checks it.
    url = models.CharField("URL", max_length=500)
    token_encrypted = models.TextField(blank=True, editable=False)
    username = models.CharField(max_length=200, blank=True)
    password_encrypted = models.TextField(blank=True, editable=False)
    verify_tls = models.BooleanField("Verify TLS certificate", default=True)
    timeout_seconds = models.FloatField(
        default=5.0, validators=[MinValueValidator(0.5)], help_text="Per request, in seconds."
    )
    checked_at = models.DateTimeField(null=True, blank=True)
    check_ok = models.BooleanField(null=True)
    check_detail = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.url

    @classmethod
    def current(cls) -> PrometheusConnection | None:
        return cls.objects.order_by("pk").first()

    def set_token(self, text: str) -> None:
        self.token_encrypted = encrypt(text) if text else ""

    def set_password(self, text: str) -> None:
        self.password_encrypted = encrypt(text) if text else ""

    @property
    def has_token(self) -> bool:
        return bool(self.token_encrypted)

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def client(self) -> Prometheus:
        from apps.metrics.client import Prometheus

        return Prometheus(
            self.url,
            token=decrypt(self.token_encrypted) if self.token_encrypted else "",
            username=self.username,
            password=decrypt(self.password_encrypted) if self.password_encrypted else "",
            verify_tls=self.verify_tls,
            timeout=self.timeout_seconds,
        )


class MetricDefinition(models.Model):
    """One metric of a service: a PromQL template (with `$labels` where the target's label
    matchers go, aggregated `by (job, namespace)`), its unit, and the thresholds that make
    it warning or critical once crossed for `for_seconds`."""

    service = models.ForeignKey(
        "services.Service", on_delete=models.CASCADE, related_name="metric_definitions"
    )
    key = models.SlugField(max_length=50)
    name = models.CharField(max_length=100)
    unit = models.CharField(max_length=20, blank=True)
    template = models.TextField("PromQL template")
    comparison = models.CharField(
        max_length=1, choices=Comparison.choices, default=Comparison.ABOVE
    )
    warning = models.FloatField(null=True, blank=True)
    critical = models.FloatField(null=True, blank=True)
    for_seconds = models.PositiveIntegerField(
        "For (seconds)", default=0, help_text="How long a threshold must be crossed."
    )
    enabled = models.BooleanField(default=True)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["service", "order", "key"]
        constraints = [
            models.UniqueConstraint(fields=["service", "key"], name="one_metric_key_per_service")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.service})"

    def promql(self, target: DeploymentTarget) -> str:
        """The query for one target: the template with that target's labels filled in."""
        return self.template.replace(LABELS_PLACEHOLDER, target_matchers(target))

    def batched_promql(self, targets: Iterable[DeploymentTarget]) -> str:
        """One query for many targets; its series carry job and namespace."""
        return self.template.replace(LABELS_PLACEHOLDER, batch_matchers(targets))

    def crosses(self, value: float, threshold: float | None) -> bool:
        if threshold is None:
            return False
        return value > threshold if self.comparison == Comparison.ABOVE else value < threshold

    def status_for(self, value: float) -> str:
        """ok, warning or critical for a (finite) value, before the "for" duration."""
        if self.crosses(value, self.critical):
            return MetricStatus.CRITICAL
        if self.crosses(value, self.warning):
            return MetricStatus.WARNING
        return MetricStatus.OK


class MetricState(models.Model):
    """The evaluator's latest verdict on one metric of one target, with when it entered that
    state and, while a threshold is crossed but not yet for long enough, the pending state."""

    definition = models.ForeignKey(
        MetricDefinition, on_delete=models.CASCADE, related_name="states"
    )
    target = models.ForeignKey(
        "services.DeploymentTarget", on_delete=models.CASCADE, related_name="metric_states"
    )
    state = models.CharField(
        max_length=12, choices=MetricStatus.choices, default=MetricStatus.NO_DATA
    )
    value = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    since = models.DateTimeField(default=timezone.now)
    pending_state = models.CharField(max_length=12, choices=MetricStatus.choices, blank=True)
    pending_since = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["definition", "target"], name="one_metric_state_per_target"
            )
        ]

    def __str__(self) -> str:
        return f"{self.definition.key} of target {self.target_id}: {self.state}"


class StateChange(models.Model):
    """An alert event: one metric of one target moved from one state to another."""

    definition = models.ForeignKey(
        MetricDefinition, on_delete=models.CASCADE, related_name="state_changes"
    )
    target = models.ForeignKey(
        "services.DeploymentTarget", on_delete=models.CASCADE, related_name="metric_state_changes"
    )
    old = models.CharField(max_length=12, choices=MetricStatus.choices)
    new = models.CharField(max_length=12, choices=MetricStatus.choices)
    value = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.definition.key} of target {self.target_id}: {self.old} → {self.new}"


# --- Alerts (part C: apps/metrics/alerts.py fires and resolves them) -------------------------


class AlertStatus(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class AlertSeverity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


class AlertSource(models.TextChoices):
    METRICS = "metrics", "Portal metrics"
    ALERTMANAGER = "alertmanager", "Alertmanager"
    BACKUPS = "backups", "Backup freshness"


class AlertQuerySet(models.QuerySet["Alert"]):
    def firing(self) -> AlertQuerySet:
        return self.filter(status=AlertStatus.FIRING)


class Alert(models.Model):
    """One episode of an alert, from firing to resolved. The same (source, fingerprint) fires
    again as a new row once the previous episode resolved; while firing there is exactly one
    row (a partial unique constraint), so a replayed notification updates it.

    ``service`` is empty for an Alertmanager alert whose labels match no service (kept, shown
    as unmatched). ``suppressed``: a silence covered it when it was last seen or silenced, so
    it opens no incident and tells no one."""

    source = models.CharField(max_length=20, choices=AlertSource.choices)
    fingerprint = models.CharField(max_length=200)
    service = models.ForeignKey(
        "services.Service",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alerts",
    )
    target = models.ForeignKey(
        "services.DeploymentTarget",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alerts",
    )
    name = models.CharField(max_length=200)
    severity = models.CharField(max_length=10, choices=AlertSeverity.choices)
    summary = models.TextField(blank=True)
    labels = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=10, choices=AlertStatus.choices, default=AlertStatus.FIRING
    )
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    times_seen = models.PositiveIntegerField(default=1)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    suppressed = models.BooleanField(default=False)
    incident = models.ForeignKey(
        "incidents.Incident",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alerts",
    )

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "fingerprint"],
                condition=models.Q(status="firing"),
                name="one_firing_alert_per_fingerprint",
            )
        ]
        indexes = [
            models.Index(fields=["source", "fingerprint", "started_at"], name="alert_episode"),
            models.Index(fields=["service", "status"], name="alert_service_status"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_severity_display()}, {self.status})"

    @property
    def is_firing(self) -> bool:
        return self.status == AlertStatus.FIRING

    def declare_url(self) -> str:
        """The incident declaration form, filled in from this alert (the person still
        chooses; a critical alert suggests SEV-2, a warning SEV-3)."""
        query: list[tuple[str, object]] = [
            ("title", f"{self.name}: {self.summary}" if self.summary else self.name),
            ("severity", "SEV-2" if self.severity == AlertSeverity.CRITICAL else "SEV-3"),
        ]
        if self.service_id is not None:
            query.append(("service", self.service_id))
        if self.target is not None:
            query.append(("environment", self.target.environment_id))
        return f"{reverse('incidents:declare')}?{urlencode(query)}"


class SilenceQuerySet(models.QuerySet["Silence"]):
    def active(self, now: datetime | None = None) -> SilenceQuerySet:
        return self.filter(lifted_at__isnull=True, expires_at__gt=now or timezone.now())


class Silence(models.Model):
    """While active, alerts of this (source, fingerprint) still record but open no incident
    and tell no one. It ends at ``expires_at`` or when someone lifts it."""

    source = models.CharField(max_length=20, choices=AlertSource.choices)
    fingerprint = models.CharField(max_length=200)
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="silences")
    reason = models.TextField()
    created_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    objects = SilenceQuerySet.as_manager()

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["source", "fingerprint"], name="silence_fingerprint")]

    def __str__(self) -> str:
        return f"Silence of {self.fingerprint} until {self.expires_at:%Y-%m-%d %H:%M}"

    def is_active(self, now: datetime | None = None) -> bool:
        return self.lifted_at is None and self.expires_at > (now or timezone.now())


class ServiceAlerting(models.Model):
    """A service's alerting switch: open an incident automatically (or attach to the open
    one) when a critical alert fires on one of its production targets."""

    service = models.OneToOneField(
        "services.Service", on_delete=models.CASCADE, related_name="alerting"
    )
    auto_incident = models.BooleanField(
        "Open incidents for critical production alerts", default=False
    )
    incident_severity = models.ForeignKey(
        "incidents.Severity",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The severity of incidents opened automatically (SEV-2 when empty).",
    )
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Alerting of {self.service}"
