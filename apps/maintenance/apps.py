from __future__ import annotations

from django.apps import AppConfig


class MaintenanceConfig(AppConfig):
    name = "apps.maintenance"
    label = "maintenance"

    def ready(self) -> None:
        # Gate rule, dashboard badge, operation origin and status page source.
        from apps.audit.links import model_links, register_links
        from apps.maintenance import hooks  # noqa: F401

        # Audit events about a window link to its page.
        register_links("maintenance.window", model_links("maintenance.Window"))
