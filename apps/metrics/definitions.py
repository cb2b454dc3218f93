"""The runbooks' default metrics, given to every service, and the check that a definition's
query is one Prometheus accepts.

Templates use conventional metric names (http_requests_total with a `code` label,
http_request_duration_seconds_bucket, container_cpu_usage_seconds_total, ...) and carry
`$labels` where the target's matchers go; every aggregation keeps `job` and `namespace`, so
that one query over all targets can be mapped back to each of them (evaluator.py).

Thresholds are the runbooks' (shared/runbooks, "Key Metrics" and "Alerts"): where a runbook
lists an alert rule without a warning level (queue depth, job failure rate) the rule is the
critical threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db import transaction

from apps.metrics.client import MetricsUnavailable, QueryError
from apps.metrics.connection import client
from apps.metrics.models import LABELS_PLACEHOLDER, TARGET_LABELS, MetricDefinition
from apps.services.models import Service

BY = "by (job, namespace)"


def _ratio_percent(numerator: str, denominator: str) -> str:
    # `or ... * 0`: a service with no failures has no failure series at all, and its rate is
    # 0 %, not "no data".
    return (
        f"100 * (sum {BY} ({numerator}) or sum {BY} ({denominator}) * 0) / sum {BY} ({denominator})"
    )


def _latency(quantile: float) -> str:
    return (
        f"1000 * histogram_quantile({quantile}, sum by (job, namespace, le) "
        f"(rate(http_request_duration_seconds_bucket{{{LABELS_PLACEHOLDER}}}[5m])))"
    )


@dataclass(frozen=True)
class Default:
    key: str
    name: str
    unit: str
    template: str
    warning: float | None = None
    critical: float | None = None
    for_seconds: int = 0
    comparison: str = ">"
    # DB connections, queue depth and job failures exist only where a service has them:
    # created disabled, an admin turns them on.
    enabled: bool = True


L = LABELS_PLACEHOLDER
DEFAULTS: tuple[Default, ...] = (
    Default(
        "request_rate",
        "Request rate",
        "req/s",
        f"sum {BY} (rate(http_requests_total{{{L}}}[5m]))",
    ),
    Default(
        "error_rate",
        "Error rate",
        "%",
        _ratio_percent(
            f'rate(http_requests_total{{{L}, code=~"5.."}}[5m])',
            f"rate(http_requests_total{{{L}}}[5m])",
        ),
        warning=1,
        critical=5,
        for_seconds=300,
    ),
    Default("latency_p50", "Latency p50", "ms", _latency(0.5)),
    Default("latency_p95", "Latency p95", "ms", _latency(0.95), 500, 1000, 300),
    Default("latency_p99", "Latency p99", "ms", _latency(0.99)),
    Default(
        "cpu",
        "CPU",
        "%",
        f"100 * sum {BY} (rate(container_cpu_usage_seconds_total{{{L}}}[5m]))"
        f' / sum {BY} (kube_pod_container_resource_limits{{{L}, resource="cpu"}})',
        80,
        90,
        300,
    ),
    Default(
        "memory",
        "Memory",
        "%",
        f"100 * sum {BY} (container_memory_working_set_bytes{{{L}}})"
        f' / sum {BY} (kube_pod_container_resource_limits{{{L}, resource="memory"}})',
        85,
        95,
        300,
    ),
    Default(
        "db_connections",
        "DB connections",
        "%",
        f"100 * sum {BY} (db_pool_connections_in_use{{{L}}})"
        f" / sum {BY} (db_pool_connections_max{{{L}}})",
        80,
        95,
        300,
        enabled=False,
    ),
    Default(
        "queue_depth",
        "Queue depth",
        "jobs",
        f"sum {BY} (queue_depth{{{L}}})",
        critical=1000,
        for_seconds=600,
        enabled=False,
    ),
    Default(
        "job_failure_rate",
        "Job failure rate",
        "%",
        _ratio_percent(f"rate(jobs_failed_total{{{L}}}[10m])", f"rate(jobs_total{{{L}}}[10m])"),
        critical=10,
        for_seconds=600,
        enabled=False,
    ),
)


def build_defaults(service: Service) -> list[MetricDefinition]:
    return [
        MetricDefinition(
            service=service,
            key=default.key,
            name=default.name,
            unit=default.unit,
            template=default.template,
            comparison=default.comparison,
            warning=default.warning,
            critical=default.critical,
            for_seconds=default.for_seconds,
            enabled=default.enabled,
            order=order,
        )
        for order, default in enumerate(DEFAULTS)
    ]


def create_defaults(service: Service) -> int:
    """Give `service` the default metrics it does not have yet (by key); how many were added."""
    existing = set(service.metric_definitions.values_list("key", flat=True))
    missing = [d for d in build_defaults(service) if d.key not in existing]
    MetricDefinition.objects.bulk_create(missing, ignore_conflicts=True)
    return len(missing)


def create_missing_defaults() -> int:
    """The defaults for every service that has none (the services created before metrics)."""
    added = 0
    for service in Service.objects.filter(metric_definitions__isnull=True).distinct():
        with transaction.atomic():
            added += create_defaults(service)
    return added


def on_service_saved(sender: type[Service], instance: Service, created: bool, **_: object) -> None:
    """post_save of Service: a new service gets the defaults in the same transaction."""
    if created and not getattr(instance, "_skip_metric_defaults", False):
        create_defaults(instance)


def sentence(error: QueryError) -> str:
    """Prometheus's own words about a rejected query, without its API's prefix."""
    return error.message.removeprefix('invalid parameter "query": ')


def check_query(definition: MetricDefinition) -> str:
    """Ask Prometheus to evaluate the definition for one target of its service (or a
    placeholder target when it has none). Raises QueryError with Prometheus's sentence when
    the query is rejected, or when its series cannot be mapped back to targets;
    MetricsUnavailable when Prometheus cannot be asked. Returns what was found, as a sentence."""
    target = definition.service.targets.order_by("pk").first() if definition.service.pk else None
    if target is None:
        promql = definition.template.replace(
            LABELS_PLACEHOLDER, 'job="portal-validation", namespace="portal-validation"'
        )
    else:
        promql = definition.promql(target)
    samples = client().instant(promql)
    for sample in samples:
        if any(label not in sample.labels for label in TARGET_LABELS):
            raise QueryError(
                "The result has no job and namespace labels: aggregate with "
                f"`sum {BY} (...)` so that each target's series can be found."
            )
    if not samples:
        return "Prometheus accepts the query (no series for this target yet)."
    values = ", ".join("NaN" if math.isnan(s.value) else f"{s.value:g}" for s in samples[:3])
    return f"Prometheus accepts the query (now: {values})."


__all__ = [
    "DEFAULTS",
    "MetricsUnavailable",
    "check_query",
    "create_defaults",
    "create_missing_defaults",
]
