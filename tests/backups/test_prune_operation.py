"""Pruning through the operations engine on a real worker: the objects the policy lets go are
deleted from moto's S3 over HTTP and from a directory, then their records are marked pruned;
the kept ones (the newest good backup among them) are untouched."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.backups.choices import BackupState
from apps.backups.models import Backup, BackupStorage, DatabaseTarget
from apps.operations import actions
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.backups.conftest import BUCKET, Server, make_local_storage, make_s3_storage, make_target
from tests.support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("celery_worker")


def stored_backup(target: DatabaseTarget, storage: BackupStorage, days_ago: int, s3: Any) -> Backup:
    when = timezone.now() - timedelta(days=days_ago)
    key = f"{storage.prefix}/orders/{when:%Y/%m}/orders_{when:%Y%m%d_%H%M%S}.dump"
    if storage.kind == "s3":
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"dump bytes")
    else:
        path = Path(storage.directory) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"dump bytes")
    return Backup.objects.create(
        target=target,
        storage=storage,
        key=key,
        state=BackupState.SUCCEEDED,
        started_at=when,
        finished_at=when,
        size_bytes=10,
        sha256="a" * 64,
    )


def exists(backup: Backup, s3: Any) -> bool:
    if backup.storage.kind == "s3":
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=backup.key).get("Contents", [])
        return any(item["Key"] == backup.key for item in listed)
    return (Path(backup.storage.directory) / backup.key).exists()


def prune(admin: Any, target: DatabaseTarget) -> Operation:
    operation = actions.do_start_operation(
        admin, "backups.prune", str(target.pk), {}, "Disk space: apply the policy."
    )
    wait_for(lambda: Operation.objects.get(pk=operation.pk).is_final, timeout=60, what="prune")
    operation.refresh_from_db()
    return operation


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_it_deletes_the_objects_then_marks_the_records(
    kind: str, admin: Any, pg_server: Server, s3: Any, s3_endpoint: str, backup_dir: Path
) -> None:
    storage = make_s3_storage(s3_endpoint) if kind == "s3" else make_local_storage(backup_dir)
    target = make_target(
        pg_server, "postgres", storage, keep_daily=2, keep_weekly=0, keep_monthly=0
    )
    old = [stored_backup(target, storage, days, s3) for days in (30, 20, 10)]
    kept = [stored_backup(target, storage, days, s3) for days in (2, 1)]

    operation = prune(admin, target)

    assert operation.state == State.SUCCEEDED, operation.error
    assert sorted(operation.params["backups"]) == sorted(backup.pk for backup in old)
    for backup in old:
        backup.refresh_from_db()
        assert backup.state == BackupState.PRUNED
        assert backup.pruned_at is not None
        assert not exists(backup, s3)
    for backup in kept:
        backup.refresh_from_db()
        assert backup.state == BackupState.SUCCEEDED
        assert exists(backup, s3)
    assert "Pruned 3 backups" in operation.status_text
