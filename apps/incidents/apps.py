from __future__ import annotations

from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "apps.incidents"
    label = "incidents"

    def ready(self) -> None:
        from apps.incidents import hooks  # noqa: F401  (gate rule, badges, operation origins)
