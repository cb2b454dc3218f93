"""The backup operation end to end: requested through the operations engine, carried out by a
real Celery worker with the real pg_dump, into moto's S3 over HTTP or a directory; then the
dump is restored with plain pg_restore into a new database and every row compared."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.backups.choices import BackupState, Compression
from apps.backups.models import Backup, DatabaseTarget
from apps.operations import actions
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.backups.conftest import (
    BUCKET,
    EXPECTED_COUNTS,
    Server,
    make_local_storage,
    make_s3_storage,
    make_target,
    open_multipart_uploads,
    restore_into_new_database,
    stored_bytes,
    table_rows,
)
from tests.conftest import client_for
from tests.support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("celery_worker")


def back_up(actor: Any, target: DatabaseTarget, reason: str = "", **params: Any) -> Operation:
    """Start a backup as ``actor`` and wait for it to end on the worker."""
    operation = actions.do_start_operation(actor, "backups.backup", str(target.pk), params, reason)
    wait_for(
        lambda: Operation.objects.get(pk=operation.pk).is_final,
        timeout=90,
        what="the backup to end",
    )
    operation.refresh_from_db()
    return operation


def assert_restores_to_the_same_rows(
    pg_server: Server, source_db: str, backup: Backup, stored: bytes
) -> None:
    restored = restore_into_new_database(pg_server, stored, backup.compression)
    try:
        assert table_rows(pg_server, restored) == table_rows(pg_server, source_db)
    finally:
        pg_server.drop_database(restored)


def test_it_backs_up_to_s3_and_the_dump_restores_every_row(
    operator: Any, pg_server: Server, source_db: str, s3: Any, s3_endpoint: str
) -> None:
    storage = make_s3_storage(s3_endpoint, prefix="prod/db")
    target = make_target(pg_server, source_db, storage, name="Orders DB")

    operation = back_up(operator, target)

    assert operation.state == State.SUCCEEDED, operation.error
    backup = Backup.objects.get(operation=operation)
    assert backup.state == BackupState.SUCCEEDED
    assert backup.key.startswith("prod/db/orders-db/")
    assert backup.key.endswith(".dump")
    stored = stored_bytes(backup, s3)
    assert backup.size_bytes == len(stored)
    assert backup.sha256 == hashlib.sha256(stored).hexdigest()
    head = s3.head_object(Bucket=BUCKET, Key=backup.key)
    assert head["ContentLength"] == backup.size_bytes
    assert backup.compression == Compression.ZSTD  # pg_dump 15 here: the portal compresses
    assert stored[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    assert backup.row_counts == EXPECTED_COUNTS
    assert backup.pg_dump_version.startswith("pg_dump (PostgreSQL)")
    assert backup.server_version
    assert backup.started_by == operator
    assert backup.duration is not None
    assert open_multipart_uploads(s3) == []
    assert_restores_to_the_same_rows(pg_server, source_db, backup, stored)

    log = "\n".join(operation.log_lines.values_list("message", flat=True))
    assert "Using " in log and "pg_dump" in log  # which client, and why
    assert "--format=custom" in log
    assert "written" in log or "stored" in log
    assert pg_server.password == "" or pg_server.password not in log
    events = AuditEvent.objects.filter(operation_id=operation.pk).order_by("seq")
    assert [event.action for event in events] == [
        "operation.queued",
        "operation.succeeded",
    ]
    # A database target has no environment, and the storage was left to the target's own.
    client = client_for(operator)
    form = client.get(f"/operations/start/backups.backup/?target={target.pk}").content.decode()
    assert "Target: <a" in form and " in <strong></strong>" not in form
    page = client.get(operation.get_absolute_url()).content.decode()
    assert "storage=None" not in page


def test_it_backs_up_to_a_directory_and_the_dump_restores_every_row(
    admin: Any, pg_server: Server, source_db: str, backup_dir: Path
) -> None:
    storage = make_local_storage(backup_dir, prefix="nightly")
    target = make_target(pg_server, source_db, storage, name="Orders DB")

    operation = back_up(admin, target)

    assert operation.state == State.SUCCEEDED, operation.error
    backup = Backup.objects.get(operation=operation)
    path = backup_dir / backup.key
    assert path.is_file()
    assert path.resolve().is_relative_to(backup_dir.resolve())
    stored = path.read_bytes()
    assert backup.size_bytes == len(stored)
    assert backup.sha256 == hashlib.sha256(stored).hexdigest()
    assert backup.row_counts == EXPECTED_COUNTS
    # The temporary file was renamed into place: nothing else is left beside it.
    assert [entry.name for entry in path.parent.iterdir()] == [path.name]
    assert_restores_to_the_same_rows(pg_server, source_db, backup, stored)


def test_a_backup_can_go_to_another_storage_than_the_usual_one(
    operator: Any,
    pg_server: Server,
    source_db: str,
    s3: Any,
    s3_endpoint: str,
    backup_dir: Path,
) -> None:
    usual = make_s3_storage(s3_endpoint)
    other = make_local_storage(backup_dir)
    target = make_target(pg_server, source_db, usual)

    operation = back_up(operator, target, storage=other.pk)

    assert operation.state == State.SUCCEEDED, operation.error
    backup = Backup.objects.get(operation=operation)
    assert backup.storage == other
    assert (backup_dir / backup.key).is_file()
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
