"""The configured Prometheus, as a client."""

from __future__ import annotations

from apps.metrics.client import MetricsUnavailable, Prometheus
from apps.metrics.models import PrometheusConnection


def client() -> Prometheus:
    """A client for the saved connection; raises MetricsUnavailable when none is saved."""
    connection = PrometheusConnection.current()
    if connection is None:
        raise MetricsUnavailable(
            "Metrics are not configured: an admin sets the Prometheus URL on /metrics/connection/."
        )
    return connection.client()
