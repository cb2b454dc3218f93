from __future__ import annotations

from django.apps import AppConfig


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
