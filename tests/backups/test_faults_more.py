"""Faults that test_faults.py does not cover: the worker SIGKILLed in the middle of an upload
(the reaper fails the operation, the Backup row follows, the multipart upload is aborted),
and a directory store whose disk fills up. Each ends as a failed operation with a clear
reason, nothing listed as good and nothing left behind in the storage."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from apps.backups.choices import BackupState
from apps.backups.models import Backup
from apps.operations import actions
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.operations.reaper import reap
from tests.backups.conftest import (
    BUCKET,
    Server,
    make_local_storage,
    make_s3_storage,
    make_target,
    open_multipart_uploads,
)
from tests.backups.test_backup_operation import back_up
from tests.backups.test_faults import assert_failed_cleanly
from tests.support.waiting import wait_for
from tests.support.worker import Worker

# About 130 MB of hex text (compresses to about half): a dump that takes seconds to stream,
# more than one 8 MiB part, and far more than the 1 MiB disk below.
BIG_SQL = """
CREATE TABLE blobs (id integer PRIMARY KEY, payload text NOT NULL);
INSERT INTO blobs
    SELECT g, md5(random()::text) || md5(random()::text) || md5(random()::text)
        || md5(random()::text) || md5(random()::text) || md5(random()::text)
        || md5(random()::text) || md5(random()::text)
    FROM generate_series(1, 500000) AS g;
"""


@pytest.fixture(scope="module")
def big_db(pg_server: Server) -> Iterator[str]:
    name = pg_server.create_database("opsportal_bk_big", BIG_SQL)
    yield name
    pg_server.drop_database(name)


def parts_uploaded(client: Any) -> int:
    uploads = open_multipart_uploads(client)
    if not uploads:
        return 0
    listed = client.list_parts(
        Bucket=BUCKET, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]
    )
    return len(listed.get("Parts", []))


def test_a_worker_killed_during_an_upload_ends_failed_with_the_upload_aborted(
    operator: Any,
    start_worker: Callable[..., Worker],
    pg_server: Server,
    big_db: str,
    s3: Any,
    s3_endpoint: str,
) -> None:
    worker = start_worker()
    target = make_target(pg_server, big_db, make_s3_storage(s3_endpoint))
    operation = actions.do_start_operation(operator, "backups.backup", str(target.pk), {}, "")
    wait_for(lambda: parts_uploaded(s3) >= 1, timeout=90, what="a part of the upload")
    assert Operation.objects.get(pk=operation.pk).state == State.RUNNING

    worker.kill()
    backup = Backup.objects.get(operation=operation)
    assert backup.state == BackupState.RUNNING  # nobody on the worker side could say otherwise
    assert len(open_multipart_uploads(s3)) == 1
    later = timezone.now() + settings.OPERATIONS_WORKER_LOST_AFTER + timedelta(seconds=5)
    assert reap(later)["lost"] == 1

    operation.refresh_from_db()
    backup = assert_failed_cleanly(operation, "Worker lost")
    assert backup.finished_at is not None
    assert open_multipart_uploads(s3) == []
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


@pytest.fixture
def full_disk(backup_dir: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs inside the backup root: a real 'No space left on device'."""
    mount = backup_dir / f"small-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.usefixtures("celery_worker")
def test_a_full_disk_fails_with_that_reason_and_leaves_no_partial_file(
    operator: Any, pg_server: Server, big_db: str, full_disk: Path
) -> None:
    target = make_target(pg_server, big_db, make_local_storage(full_disk))

    operation = back_up(operator, target)

    backup = assert_failed_cleanly(operation, "No space left on device")
    assert str(full_disk) in backup.error
    leftovers = [path for path in full_disk.rglob("*") if path.is_file()]
    assert leftovers == []
