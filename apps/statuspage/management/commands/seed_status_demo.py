from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.services.models import Service
from apps.statuspage.models import StatusComponent


class Command(BaseCommand):
    help = "Make every demo service a public component of the status page. DEBUG only."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("The demo status page is for the embedded demo: refused.")
        for position, service in enumerate(Service.objects.order_by("name"), start=1):
            StatusComponent.objects.get_or_create(
                service=service,
                defaults={
                    "name": service.name,
                    "description": service.description[:300],
                    "position": position,
                },
            )
        self.stdout.write(f"{StatusComponent.objects.count()} public components on /status/.")
