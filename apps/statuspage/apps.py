from __future__ import annotations

from django.apps import AppConfig


class StatuspageConfig(AppConfig):
    name = "apps.statuspage"
    label = "statuspage"
    verbose_name = "Status page"

    def ready(self) -> None:
        from apps.statuspage import incident_source  # noqa: F401  (registers the incidents)
