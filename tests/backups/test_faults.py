"""Backups that cannot succeed: each ends as a failed operation with a clear reason, its Backup
row failed with that reason, nothing listed as good, and no multipart upload left open."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from apps.backups.choices import BackupState
from apps.backups.models import Backup, BackupStorage, DatabaseTarget
from apps.backups.storage import S3Backend
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.backups.conftest import (
    BUCKET,
    Server,
    make_local_storage,
    make_s3_storage,
    make_target,
    open_multipart_uploads,
)
from tests.backups.test_backup_operation import back_up
from tests.support.waiting import wait_for


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_failed_cleanly(operation: Operation, words: str) -> Backup:
    assert operation.state == State.FAILED
    assert words in operation.error, operation.error
    backup = Backup.objects.get(operation=operation)
    assert backup.state == BackupState.FAILED
    assert words in backup.error
    assert not Backup.objects.good().filter(target=backup.target).exists()
    return backup


@pytest.mark.usefixtures("celery_worker")
def test_a_wrong_password_fails_with_that_reason(
    operator: Any,
    password_server: Callable[[], Server],
    s3: Any,
    s3_endpoint: str,
) -> None:
    server = password_server()
    target = make_target(
        server, "postgres", make_s3_storage(s3_endpoint), password="not-the-password"
    )

    operation = back_up(operator, target)

    assert_failed_cleanly(operation, f"Wrong password for user postgres on 127.0.0.1:{server.port}")
    assert "not-the-password" not in operation.error
    log = " ".join(operation.log_lines.values_list("message", flat=True))
    assert "not-the-password" not in log
    assert open_multipart_uploads(s3) == []


@pytest.mark.usefixtures("celery_worker")
def test_the_right_password_from_the_encrypted_field_works(
    operator: Any, password_server: Callable[[], Server], backup_dir: Path
) -> None:
    server = password_server()
    target = make_target(server, "postgres", make_local_storage(backup_dir))

    operation = back_up(operator, target)

    assert operation.state == State.SUCCEEDED, operation.error
    assert server.password not in " ".join(operation.log_lines.values_list("message", flat=True))


@pytest.mark.usefixtures("celery_worker")
def test_a_missing_database_fails_with_that_reason(
    operator: Any, pg_server: Server, s3: Any, s3_endpoint: str
) -> None:
    target = make_target(pg_server, "no_such_database_here", make_s3_storage(s3_endpoint))

    operation = back_up(operator, target)

    assert_failed_cleanly(operation, "The database no_such_database_here does not exist")
    assert open_multipart_uploads(s3) == []


@pytest.mark.usefixtures("celery_worker")
def test_a_server_that_does_not_answer_fails_with_that_reason(
    operator: Any, pg_server: Server, backup_dir: Path
) -> None:
    target = make_target(pg_server, "postgres", make_local_storage(backup_dir), port=closed_port())

    operation = back_up(operator, target)

    assert_failed_cleanly(operation, "does not answer")
    assert list(backup_dir.iterdir()) == []


@pytest.mark.usefixtures("celery_worker")
def test_an_unreachable_s3_endpoint_fails_with_that_reason(
    operator: Any, pg_server: Server, source_db: str, s3: Any
) -> None:
    storage = make_s3_storage(f"http://127.0.0.1:{closed_port()}")
    target = make_target(pg_server, source_db, storage)

    operation = back_up(operator, target)

    assert_failed_cleanly(operation, "Could not connect to the endpoint URL")
    assert open_multipart_uploads(s3) == []


@pytest.mark.usefixtures("celery_worker")
def test_a_missing_bucket_fails_with_s3s_words(
    operator: Any, pg_server: Server, source_db: str, s3: Any, s3_endpoint: str
) -> None:
    target = make_target(pg_server, source_db, make_s3_storage(s3_endpoint, bucket="no-such-bkt"))

    operation = back_up(operator, target)

    assert_failed_cleanly(operation, "S3 refused")
    assert "NoSuchBucket" in operation.error or "404" in operation.error


@pytest.fixture
def locked_directory(backup_dir: Path) -> Iterator[Path]:
    """A directory nobody may write in: read-only for a normal user; for root (who ignores
    permissions) the ext4 immutable attribute."""
    if os.geteuid() != 0:
        backup_dir.chmod(0o500)
        yield backup_dir
        backup_dir.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root without chattr: a directory cannot be made unwritable")
    subprocess.run([chattr, "+i", str(backup_dir)], check=True)
    try:
        yield backup_dir
    finally:
        subprocess.run([chattr, "-i", str(backup_dir)], check=True)


@pytest.mark.usefixtures("celery_worker")
def test_a_directory_that_is_not_writable_fails_with_that_reason(
    operator: Any, pg_server: Server, source_db: str, locked_directory: Path
) -> None:
    target = make_target(pg_server, source_db, make_local_storage(locked_directory))

    operation = back_up(operator, target)

    backup = assert_failed_cleanly(operation, "Cannot write in")
    assert str(locked_directory) in backup.error
    assert list(locked_directory.iterdir()) == []


@pytest.fixture
def limited_role(pg_server: Server, source_db: str) -> Iterator[str]:
    """A role that may count every table but not read a sequence: pg_dump fails after the
    upload was opened."""
    role = f"opsportal_bk_limited_{uuid.uuid4().hex[:8]}"
    with pg_server.connect(source_db) as connection:
        connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        for statement in (
            "GRANT USAGE ON SCHEMA public, billing TO {}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public, billing TO {}",
        ):
            connection.execute(sql.SQL(statement).format(sql.Identifier(role)))
    yield role
    with pg_server.connect(source_db) as connection:
        connection.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.usefixtures("celery_worker")
def test_pg_dump_failing_aborts_the_multipart_upload_and_shows_its_words(
    operator: Any,
    pg_server: Server,
    source_db: str,
    limited_role: str,
    s3: Any,
    s3_endpoint: str,
) -> None:
    target = make_target(pg_server, source_db, make_s3_storage(s3_endpoint), user=limited_role)

    operation = back_up(operator, target)

    assert_failed_cleanly(operation, "pg_dump failed (exit code 1)")
    assert "permission denied for sequence orders_id_seq" in operation.error
    assert open_multipart_uploads(s3) == []
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_an_aborted_upload_leaves_no_part_behind(db: None, s3: Any, s3_endpoint: str) -> None:
    """Parts already sent (a 9 MiB stream: one full 8 MiB part) are dropped with the upload."""
    backend = S3Backend(make_s3_storage(s3_endpoint))
    key = "db/x/2026/01/x_20260101_000000.dump"
    writer = backend.open_writer(key)
    writer.write(os.urandom(9 * 1024 * 1024))
    [upload] = open_multipart_uploads(s3)
    wait_for(
        lambda: (
            len(s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"]).get("Parts", []))
            == 1
        ),
        timeout=30,
        what="the full part to reach S3",
    )

    writer.abort()

    assert open_multipart_uploads(s3) == []
    assert not backend.exists(key)


def test_an_upload_aborted_while_a_part_is_on_its_way_leaves_nothing(
    db: None, s3: Any, s3_endpoint: str
) -> None:
    """Parts are sent by threads of their own: an abort right behind two full parts waits for
    them instead of leaving them to arrive for an upload that no longer exists."""
    backend = S3Backend(make_s3_storage(s3_endpoint))
    key = "db/x/2026/01/x_20260101_000002.dump"
    writer = backend.open_writer(key)
    writer.write(os.urandom(17 * 1024 * 1024))

    writer.abort()

    assert not writer.sending
    assert open_multipart_uploads(s3) == []
    assert not backend.exists(key)


def test_a_committed_upload_of_several_parts_reads_back_the_same(
    db: None, s3: Any, s3_endpoint: str
) -> None:
    backend = S3Backend(make_s3_storage(s3_endpoint, server_side_encryption="AES256"))
    key = "db/x/2026/01/x_20260101_000001.dump"
    data = os.urandom(17 * 1024 * 1024 + 5)
    writer = backend.open_writer(key)
    for start in range(0, len(data), 1024 * 1024):
        writer.write(data[start : start + 1024 * 1024])
    writer.commit()

    assert len(writer.parts) == 3
    with contextlib.closing(backend.open_reader(key)) as reader:
        assert reader.read() == data
    assert s3.head_object(Bucket=BUCKET, Key=key)["ServerSideEncryption"] == "AES256"
    assert open_multipart_uploads(s3) == []


def test_a_failed_backup_whose_worker_died_is_shown_failed(operator: Any, db: None) -> None:
    """The reaper fails the operation; the Backup row it left "running" is shown failed."""
    storage = BackupStorage.objects.create(name="s", kind="local", directory="/tmp")
    target = DatabaseTarget.objects.create(
        name="t", host="127.0.0.1", database="d", user="u", storage=storage
    )
    operation = Operation.objects.create(
        kind="backups.backup",
        target_type="backups.target",
        target_id=str(target.pk),
        target_label="t",
        target_key=f"backups.target:{target.pk}",
        params={},
        params_hash="x",
        requested_by=operator,
        state=State.FAILED,
    )
    backup = Backup.objects.create(target=target, storage=storage, key="k", operation=operation)

    assert backup.state == BackupState.RUNNING
    assert backup.shown_state() == BackupState.FAILED
    assert not Backup.objects.good().exists()
