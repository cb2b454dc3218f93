from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.audit.records import verify_chain


class Command(BaseCommand):
    help = "Check the audit hash chain from the first event to the last; exit 1 on a break."

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify_chain()
        if not report.ok:
            raise CommandError(
                f"Audit chain broken after {report.checked} events: {report.message}"
            )
        self.stdout.write(self.style.SUCCESS(report.message))
