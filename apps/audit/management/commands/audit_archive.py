from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.archives import ArchiveRefused, do_archive_period
from apps.backups.models import BackupStorage
from apps.backups.storage import StorageError


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = (
        "Copy the audit events of a period (days inclusive) as a gzip JSON Lines or CSV export "
        "to a backup storage. Nothing is deleted: the portal keeps every audit event."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="first day, YYYY-MM-DD")
        parser.add_argument("--until", required=True, help="last day, YYYY-MM-DD")
        parser.add_argument("--storage", required=True, help="the backup storage, by name")
        parser.add_argument("--format", default="jsonl", choices=["jsonl", "csv"])

    def handle(self, *args: Any, **options: Any) -> None:
        storage = BackupStorage.objects.filter(name=options["storage"]).first()
        if storage is None:
            raise CommandError(f"No backup storage is called {options['storage']!r}.")
        try:
            archive = do_archive_period(
                None, storage, _day(options["since"]), _day(options["until"]), options["format"]
            )
        except (ArchiveRefused, StorageError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"{archive.events} events archived to {storage.name}: {archive.key} "
                f"({archive.compressed_bytes} bytes; newest event #{archive.last_seq}, "
                f"hash {archive.last_hash})"
            )
        )
