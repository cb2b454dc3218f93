from __future__ import annotations

from django.apps import AppConfig


class MaintenanceConfig(AppConfig):
    name = "apps.maintenance"
    label = "maintenance"

    def ready(self) -> None:
        # Gate rule, dashboard badge, operation origin and status page source.
        from apps.maintenance import hooks  # noqa: F401
