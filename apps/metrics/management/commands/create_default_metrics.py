from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.metrics.definitions import create_missing_defaults


class Command(BaseCommand):
    help = "Give the runbooks' default metric definitions to every service that has none."

    def handle(self, *args: Any, **options: Any) -> None:
        added = create_missing_defaults()
        self.stdout.write(f"{added} metric definitions added.")
