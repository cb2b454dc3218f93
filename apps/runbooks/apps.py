from __future__ import annotations

from django.apps import AppConfig


class RunbooksConfig(AppConfig):
    name = "apps.runbooks"
    label = "runbooks"

    def ready(self) -> None:
        from apps.runbooks import run_hooks  # noqa: F401  (operations started from a run's step)
