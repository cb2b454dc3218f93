"""``manage.py register_portal_database``: the demo registers the portal's own database as a
backup target (a SQLite file on the embedded default, else its PostgreSQL connection), with a
local storage under BACKUP_DIR, a nightly schedule and the default retention. Idempotent:
run again, it changes nothing that exists."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from apps.backups.choices import DatabaseEngine, SslMode, StorageKind
from apps.backups.models import BackupStorage, DatabaseTarget
from apps.backups.schedules import next_due

STORAGE_NAME = "Local backups"
TARGET_NAME = "OpsPortal database"
SCHEDULE = "15 2 * * *"


def register_portal_database(
    database: dict[str, Any] | None = None,
) -> tuple[DatabaseTarget, bool]:
    """The target of the portal's own database (``database``: its DATABASES entry, the
    default one unless given), and whether it was created now."""
    config: dict[str, Any] = dict(database or settings.DATABASES["default"])
    directory = settings.BACKUP_DIR
    directory.mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        storage, _ = BackupStorage.objects.get_or_create(
            name=STORAGE_NAME,
            defaults={"kind": StorageKind.LOCAL, "directory": str(directory), "prefix": ""},
        )
        existing = DatabaseTarget.objects.filter(name=TARGET_NAME).first()
        if existing is not None:
            return existing, False
        target = DatabaseTarget(name=TARGET_NAME, storage=storage, schedule=SCHEDULE)
        if config["ENGINE"].endswith("sqlite3"):
            target.engine = DatabaseEngine.SQLITE
            target.sqlite_path = str(config["NAME"])
            target.host, target.database, target.user = "localhost", "opsportal", "sqlite"
        else:
            target.host = config.get("HOST") or "127.0.0.1"
            target.port = int(config.get("PORT") or 5432)
            target.database = str(config["NAME"])
            target.user = config.get("USER") or "postgres"
            target.ssl_mode = SslMode.PREFER
            target.set_password(config.get("PASSWORD") or "")
        target.full_clean(exclude=["storage", "check_ok"])
        target.schedule_next_at = next_due(target, timezone.now())
        target.save()
    return target, True


class Command(BaseCommand):
    help = "Register the portal's own database as a backup target (for the demo)."

    def handle(self, *args: Any, **options: Any) -> None:
        target, created = register_portal_database()
        verb = "Registered" if created else "Already registered:"
        self.stdout.write(f"{verb} {target.name} ({target.dsn_label}) → {target.storage.name}")
