from __future__ import annotations

from collections.abc import Iterable

from django.apps import AppConfig
from django.urls import reverse


def alert_links(ids: Iterable[int]) -> dict[int, str]:
    """Audit events about alerts link to their row on /alerts/ (one query): a firing alert
    is on the list's first page; a resolved one on the page of resolved alerts starting at
    it."""
    from apps.metrics.models import Alert, AlertStatus

    page = reverse("metrics:alerts")
    return {
        pk: f"{page}#alert-{pk}"
        if status == AlertStatus.FIRING
        else f"{page}?state=resolved&before={pk + 1}#alert-{pk}"
        for pk, status in Alert.objects.filter(pk__in=list(ids)).values_list("pk", "status")
    }


class MetricsConfig(AppConfig):
    name = "apps.metrics"
    label = "metrics"
    verbose_name = "Metrics and alerts"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from apps.metrics import definitions, tiles  # noqa: F401  (tiles: the dashboard badges)
        from apps.services.models import Service

        post_save.connect(
            definitions.on_service_saved, sender=Service, dispatch_uid="metrics-defaults"
        )
        from apps.metrics import verification
        from apps.operations.signals import operation_finished

        operation_finished.connect(
            verification.on_operation_finished, dispatch_uid="metrics-verification"
        )
        from apps.audit.links import register_links
        from apps.metrics.alerts import ALERT_TYPE

        register_links(ALERT_TYPE, alert_links)
