from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class OperationsConfig(AppConfig):
    name = "apps.operations"
    label = "operations"

    def ready(self) -> None:
        from apps.common.metrics import register_collector
        from apps.operations import diagnostics  # noqa: F401  (registers the built-in kind)
        from apps.operations.collectors import OperationsCollector

        # Each app declares its kinds in its own operations.py.
        autodiscover_modules("operations")
        register_collector(OperationsCollector())
