"""Signed checkpoints of the audit chain and the hourly copy of its head in the backup storage
(moto's S3 server over HTTP, a bucket of its own per test, with object lock where asked):
verification from a checkpoint, forged checkpoints ignored, and a rewrite of the whole table,
head row included, caught by the stored copy."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.audit import checkpoints
from apps.audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from apps.audit.records import record, verify_chain
from apps.audit.tasks import verify_audit_chain, write_audit_checkpoint
from apps.backups.choices import StorageKind
from apps.backups.models import BackupStorage
from tests.audit.test_chain import _with_triggers_off
from tests.conftest import client_for
from tests.factories import make_user


def events(count: int, label: str = "step") -> list[AuditEvent]:
    return [record(f"test.{label}{number}", actor=None, actor_label="t") for number in range(count)]


@pytest.fixture
def s3_storage(settings: Any, db: None) -> tuple[BackupStorage, Any]:
    """An S3 backup storage on moto's server with an object-locked bucket of its own (no
    reset: other runs may be using the server), named as the head storage."""
    endpoint = os.environ.get("S3_ENDPOINT_URL", "")
    assert endpoint, "S3_ENDPOINT_URL is not set: run the tests through scripts/test_env.sh"
    bucket = f"audit-heads-{uuid.uuid4().hex[:10]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    storage = BackupStorage(
        name="audit-heads",
        kind=StorageKind.S3,
        bucket=bucket,
        region="us-east-1",
        endpoint_url=endpoint,
        prefix="portal",
    )
    storage.set_credentials("testing", "testing")
    storage.save()
    settings.AUDIT_HEAD_STORAGE = storage.name
    return storage, client


def rewrite_everything_from(seq: int, reason: str) -> None:
    """What someone with the owner's rights and time could do: change one event, then
    recompute every hash after it and the head row, so that the table agrees with itself."""
    rows = list(AuditEvent.objects.filter(seq__gte=seq).order_by("seq"))
    previous = AuditEvent.objects.filter(seq=seq - 1).values_list("hash", flat=True).first()
    for event in rows:
        if event.seq == seq:
            event.reason = reason
        event.prev_hash = previous or "0" * 64
        event.hash = event.compute_hash()
        _with_triggers_off(
            "UPDATE audit_auditevent SET reason = %s, prev_hash = %s, hash = %s WHERE seq = %s",
            [event.reason, event.prev_hash, event.hash, event.seq],
        )
        previous = event.hash
    AuditChainHead.objects.filter(pk=1).update(last_hash=previous)


def test_it_verifies_from_a_signed_checkpoint(db: None) -> None:
    events(3)
    checkpoint = checkpoints.do_write_checkpoint()
    assert (checkpoint.seq, checkpoint.stored_key) == (3, "")
    assert checkpoint.hash == AuditEvent.objects.get(seq=3).hash
    events(2, "later")
    report = verify_chain(checkpoints.latest_signed_checkpoint())
    assert report.ok, report.message
    assert report.checked == 2
    assert "after the checkpoint at #3" in report.message
    assert verify_chain().checked == 5


def test_a_forged_checkpoint_is_ignored(db: None) -> None:
    events(2)
    good = checkpoints.do_write_checkpoint()
    events(1)
    forged = checkpoints.do_write_checkpoint()
    AuditCheckpoint.objects.filter(pk=forged.pk).update(hash="f" * 64)
    assert checkpoints.latest_signed_checkpoint() == good


def test_a_change_at_or_after_the_checkpoint_is_reported(db: None) -> None:
    events(3)
    checkpoint = checkpoints.do_write_checkpoint()
    events(2, "later")
    _with_triggers_off("UPDATE audit_auditevent SET reason = 'x' WHERE seq = %s", [5])
    report = verify_chain(checkpoint)
    assert not report.ok and report.first_bad_seq == 5
    _with_triggers_off("UPDATE audit_auditevent SET hash = %s WHERE seq = %s", ["e" * 64, 3])
    report = verify_chain(checkpoint)
    assert not report.ok and report.first_bad_seq == 3
    assert "named by the signed checkpoint" in report.message


def test_the_command_starts_from_the_checkpoint(db: None, capsys: Any) -> None:
    events(4)
    call_command("audit_verify", "--from-checkpoint")
    assert "No signed checkpoint yet" in capsys.readouterr().out
    checkpoints.do_write_checkpoint()
    events(1, "later")
    call_command("audit_verify", "--from-checkpoint")
    assert "All 1 events after the checkpoint at #4 are intact." in capsys.readouterr().out
    # An event before the checkpoint is not walked again; the full walk still finds it.
    _with_triggers_off("UPDATE audit_auditevent SET reason = 'x' WHERE seq = %s", [2])
    call_command("audit_verify", "--from-checkpoint")
    with pytest.raises(CommandError, match="#2"):
        call_command("audit_verify")


def test_the_hourly_task_stores_a_locked_signed_head_in_s3(
    s3_storage: tuple[BackupStorage, Any],
) -> None:
    storage, client = s3_storage
    events(3)
    result = write_audit_checkpoint()
    assert result["seq"] == 3 and result["error"] == ""
    key = str(result["stored"])
    assert key.startswith("portal/audit-head/") and key.endswith("-000000000003.json")
    stored = client.get_object(Bucket=storage.bucket, Key=key)
    document = json.loads(stored["Body"].read())
    assert document["seq"] == 3
    assert document["hash"] == AuditEvent.objects.get(seq=3).hash
    checkpoint = AuditCheckpoint.objects.get()
    assert document["signature"] == checkpoint.signature
    assert stored["ObjectLockMode"] == "COMPLIANCE"
    assert stored["ObjectLockRetainUntilDate"] > checkpoint.created_at
    assert checkpoints.check_stored_head(storage).ok


def test_a_rewrite_of_the_whole_table_is_caught_by_the_stored_head(
    s3_storage: tuple[BackupStorage, Any], capsys: Any
) -> None:
    storage, _ = s3_storage
    make_user("ada-admin", "admin")
    events(4)
    write_audit_checkpoint()
    events(2, "later")
    rewrite_everything_from(2, "Nothing to see")
    assert verify_chain().ok  # the table agrees with itself
    stored = checkpoints.check_stored_head(storage)
    assert not stored.ok and stored.seq == 4
    assert "the history was rewritten" in stored.message
    with pytest.raises(CommandError, match="differs from its stored head"):
        call_command("audit_verify")
    result = verify_audit_chain()
    assert result["ok"] is False and result["first_bad_seq"] == 4
    assert mail.outbox and "altered" in mail.outbox[0].subject
    assert AuditEvent.objects.filter(action="audit.chain_broken").exists()


def test_a_store_that_refuses_is_noted_not_fatal(
    s3_storage: tuple[BackupStorage, Any],
) -> None:
    storage, _ = s3_storage
    BackupStorage.objects.filter(pk=storage.pk).update(bucket="no-such-bucket-here")
    events(1)
    checkpoint = checkpoints.do_write_checkpoint()
    assert checkpoint.stored_key == ""
    assert "NoSuchBucket" in checkpoint.store_error
    assert AuditCheckpoint.objects.get().seq == 1  # the checkpoint itself is kept


def test_a_local_directory_can_hold_the_heads(settings: Any, db: None) -> None:
    directory = Path(settings.BACKUP_DIR) / f"test-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    storage = BackupStorage.objects.create(
        name="local-heads", kind=StorageKind.LOCAL, directory=str(directory), prefix="p"
    )
    settings.AUDIT_HEAD_STORAGE = storage.name
    events(2)
    checkpoint = checkpoints.do_write_checkpoint()
    assert (directory / checkpoint.stored_key).is_file()
    assert checkpoints.check_stored_head(storage).ok
    _with_triggers_off("UPDATE audit_auditevent SET hash = %s WHERE seq = %s", ["d" * 64, 2])
    assert not checkpoints.check_stored_head(storage).ok
    assert settings.AUDIT_HEAD_STORAGE == "local-heads"


def test_the_integrity_page_shows_the_checkpoint_and_the_stored_head(
    s3_storage: tuple[BackupStorage, Any], admin: Any
) -> None:
    client = client_for(admin)
    content = client.get("/audit/integrity/").content.decode()
    assert "No signed checkpoint yet" in content
    assert "No chain head has been stored yet." in content
    write_audit_checkpoint()
    checkpoint = AuditCheckpoint.objects.get()
    content = client.get("/audit/integrity/").content.decode()
    assert f"event #{checkpoint.seq}" in content and checkpoint.stored_key in content
    assert "<strong>Matches</strong>" in content
    rewrite_everything_from(1, "Rewritten")
    content = client.get("/audit/integrity/").content.decode()
    assert "<strong>Intact.</strong>" in content  # the table agrees with itself…
    assert "<strong>Differs</strong>" in content  # …but not with the copy outside it


def test_without_a_head_storage_the_page_says_what_is_missing(admin: Any) -> None:
    content = client_for(admin).get("/audit/integrity/").content.decode()
    assert "AUDIT_HEAD_STORAGE" in content
