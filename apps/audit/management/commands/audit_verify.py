from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.checkpoints import check_stored_head, head_storage, latest_signed_checkpoint
from apps.audit.records import verify_chain


class Command(BaseCommand):
    help = (
        "Check the audit hash chain from the first event (or the newest signed checkpoint) "
        "to the last, and against the newest chain head copied to the backup storage; "
        "exit 1 on a break."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from-checkpoint",
            action="store_true",
            help="Start from the newest checkpoint whose signature holds, not the first event.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = latest_signed_checkpoint() if options["from_checkpoint"] else None
        if options["from_checkpoint"] and since is None:
            self.stdout.write("No signed checkpoint yet: checking from the first event.")
        report = verify_chain(since)
        if not report.ok:
            raise CommandError(
                f"Audit chain broken after {report.checked} events: {report.message}"
            )
        self.stdout.write(self.style.SUCCESS(report.message))
        storage = head_storage()
        if storage is not None:
            stored = check_stored_head(storage)
            if not stored.ok:
                raise CommandError(f"Audit chain differs from its stored head: {stored.message}")
            self.stdout.write(self.style.SUCCESS(stored.message))
