"""Operation figures for /metrics, read from the database at scrape time (two queries)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, DurationField, ExpressionWrapper, F, Sum
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from apps.operations.choices import FINAL_STATES, State
from apps.operations.models import Operation


class OperationsCollector(Collector):
    def describe(self) -> list[Metric]:
        # Registering must not query the database (it happens at start-up, before migrate).
        return []

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily(
            "opsportal_operations", "Operations by kind and state.", labels=["kind", "state"]
        )
        queued = 0
        rows = Operation.objects.values("kind", "state").annotate(n=Count("id")).order_by()
        for row in rows:
            by_state.add_metric([row["kind"], row["state"]], row["n"])
            if row["state"] == State.QUEUED:
                queued += row["n"]
        yield by_state
        yield GaugeMetricFamily(
            "opsportal_operations_queue_depth",
            "Operations queued and not yet claimed by a worker.",
            value=queued,
        )
        elapsed = ExpressionWrapper(
            F("finished_at") - F("started_at"), output_field=DurationField()
        )
        durations = (
            Operation.objects.filter(state__in=FINAL_STATES, started_at__isnull=False)
            .values("kind")
            .annotate(n=Count("id"), total=Sum(elapsed))
            .order_by()
        )
        summary = SummaryMetricFamily(
            "opsportal_operation_duration_seconds",
            "Running time of finished operations, by kind.",
            labels=["kind"],
        )
        for finished in durations:
            total = finished["total"]
            seconds = total.total_seconds() if total is not None else 0.0
            summary.add_metric([finished["kind"]], count_value=finished["n"], sum_value=seconds)
        yield summary
