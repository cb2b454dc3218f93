"""A SQLite file as a target (the embedded default): backed up on a real worker through
SQLite's online backup API into a directory and into moto's S3 over HTTP, with checksum, size
and row counts; the stored object decompresses to a database with every row. Restores of it
are refused with a message; the demo command registers the portal's own database."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import zstandard
from django.core.management import call_command

from apps.backups.choices import BackupState, Compression, DatabaseEngine
from apps.backups.management.commands.register_portal_database import (
    TARGET_NAME,
    register_portal_database,
)
from apps.backups.models import Backup, BackupStorage, DatabaseTarget
from apps.operations import actions
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.backups.conftest import BUCKET, make_local_storage, make_s3_storage
from tests.support.waiting import wait_for

ROWS = [(number, f"name {number} 'quoted'; $(id)") for number in range(500)]


def sqlite_file(directory: Path) -> Path:
    path = directory / "portal.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE people (id integer PRIMARY KEY, name text)")
        db.execute('CREATE TABLE "odd ""name""" (x integer)')
        db.executemany("INSERT INTO people VALUES (?, ?)", ROWS)
    return path


def sqlite_target(path: Path, storage: BackupStorage) -> DatabaseTarget:
    return DatabaseTarget.objects.create(
        name=f"Portal {storage.kind}",
        engine=DatabaseEngine.SQLITE,
        sqlite_path=str(path),
        host="localhost",
        database="portal",
        user="sqlite",
        storage=storage,
    )


def run(admin: Any, kind: str, target: DatabaseTarget, params: dict[str, Any]) -> Operation:
    operation = actions.do_start_operation(admin, kind, str(target.pk), params, "demo check")
    wait_for(lambda: Operation.objects.get(pk=operation.pk).is_final, timeout=60, what=kind)
    operation.refresh_from_db()
    return operation


@pytest.mark.usefixtures("celery_worker")
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_sqlite_file_is_backed_up_with_the_online_backup_api(
    kind: str, admin: Any, backup_dir: Path, s3: Any, s3_endpoint: str
) -> None:
    storage = make_s3_storage(s3_endpoint) if kind == "s3" else make_local_storage(backup_dir)
    target = sqlite_target(sqlite_file(backup_dir), storage)

    operation = run(admin, "backups.backup", target, {})

    assert operation.state == State.SUCCEEDED, operation.error
    backup = Backup.objects.get(target=target)
    assert backup.state == BackupState.SUCCEEDED
    assert backup.compression == Compression.SQLITE_ZSTD
    assert backup.row_counts == {"main.people": 500, 'main.odd "name"': 0}
    assert backup.server_version.startswith("SQLite ")
    if kind == "s3":
        stored = s3.get_object(Bucket=BUCKET, Key=backup.key)["Body"].read()
    else:
        stored = (backup_dir / backup.key).read_bytes()
    assert len(stored) == backup.size_bytes
    assert hashlib.sha256(stored).hexdigest() == backup.sha256
    restored = backup_dir / "restored.sqlite3"
    restored.write_bytes(zstandard.ZstdDecompressor().decompressobj().decompress(stored))
    with sqlite3.connect(restored) as db:
        assert db.execute("SELECT id, name FROM people ORDER BY id").fetchall() == ROWS

    # A restore of it is refused with a message; nothing reaches pg_restore.
    test_restore = run(admin, "backups.test_restore", target, {"backup": None})
    assert test_restore.state == State.FAILED
    assert "is a SQLite file: restore it by hand" in test_restore.error


def test_a_missing_sqlite_file_fails_with_a_clear_reason(
    admin: Any, db: None, backup_dir: Path
) -> None:
    from apps.backups.dumps import DumpFailed
    from apps.backups.sqlite import stream_sqlite
    from apps.backups.storage import backend_for

    target = sqlite_target(backup_dir / "nowhere.sqlite3", make_local_storage(backup_dir))
    with pytest.raises(DumpFailed, match="does not exist"):
        stream_sqlite(target, backend_for(target.storage), "x/y.dump", None)  # type: ignore[arg-type]
    assert list(backup_dir.rglob("*.dump")) == []


def test_the_demo_registers_the_portals_own_database(db: None, settings: Any) -> None:
    call_command("register_portal_database")
    target = DatabaseTarget.objects.get(name=TARGET_NAME)
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        assert target.is_sqlite and target.sqlite_path == str(database["NAME"])
    else:
        assert target.engine == DatabaseEngine.POSTGRESQL
        assert target.database == database["NAME"]
        assert target.password() == (database.get("PASSWORD") or "")
    assert target.schedule == "15 2 * * *" and target.schedule_next_at is not None
    assert target.storage.kind == "local"
    # Again: nothing new.
    assert register_portal_database() == (target, False)
    assert DatabaseTarget.objects.filter(name=TARGET_NAME).count() == 1


def test_the_demo_registers_a_sqlite_file_on_the_embedded_default(db: None, tmp_path: Path) -> None:
    path = sqlite_file(tmp_path)
    embedded = {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
    target, created = register_portal_database(embedded)
    assert created and target.is_sqlite
    assert target.dsn_label == f"sqlite:{path}"
    assert target.engine == DatabaseEngine.SQLITE
