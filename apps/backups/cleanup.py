"""What a backup leaves behind when its worker dies (SIGKILL, OOM, a lost machine): nobody
aborted its multipart upload or removed its partial file. When the reaper (or the restarted
worker) ends such an operation, ``operation_finished`` brings us here: every Backup row of the
operation still ``running`` is marked failed with the operation's reason, and its unfinished
upload (S3) or hidden ``.partial`` file (directory) is removed."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.db import transaction
from django.utils import timezone

from apps.backups.choices import BackupState, StorageKind
from apps.backups.models import Backup
from apps.backups.storage import LocalBackend, StorageError, backend_for, s3_client
from apps.operations.choices import State
from apps.operations.models import Operation

logger = logging.getLogger(__name__)


def abandon_upload(backup: Backup) -> int:
    """Abort the unfinished uploads (or remove the partial files) of ``backup``'s key; how
    many were removed. StorageError when the storage cannot be reached."""
    storage = backup.storage
    if storage.kind == StorageKind.LOCAL:
        backend = backend_for(storage)
        assert isinstance(backend, LocalBackend)
        final = backend.path_of(backup.key)
        removed = 0
        for partial in final.parent.glob(f".{final.name}.*.partial"):
            partial.unlink(missing_ok=True)
            removed += 1
        return removed
    client = s3_client(storage)
    try:
        answer = client.list_multipart_uploads(Bucket=storage.bucket, Prefix=backup.key)
        uploads = [upload for upload in answer.get("Uploads", []) if upload["Key"] == backup.key]
        for upload in uploads:
            client.abort_multipart_upload(
                Bucket=storage.bucket, Key=backup.key, UploadId=upload["UploadId"]
            )
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"S3 could not abort the upload of {backup.key}: {exc}") from None
    return len(uploads)


def clean_up_after(sender: object, operation: Operation, **kwargs: Any) -> None:
    """operation_finished: the backups a failed operation left running are failed and their
    uploads aborted."""
    if operation.state == State.SUCCEEDED or not operation.kind.startswith("backups."):
        return
    left = list(
        Backup.objects.select_related("storage").filter(
            operation=operation, state=BackupState.RUNNING
        )
    )
    with transaction.atomic():  # a savepoint: the operation's own record is not at risk
        for backup in left:
            backup.state = BackupState.FAILED
            backup.error = operation.error or "The operation ended without finishing it."
            backup.finished_at = timezone.now()
            backup.save(update_fields=["state", "error", "finished_at"])
    for backup in left:
        # The storage is reached once the operation's end is committed, not inside it.
        transaction.on_commit(partial(_abandon_quietly, backup))


def _abandon_quietly(backup: Backup) -> None:
    try:
        removed = abandon_upload(backup)
    except StorageError as exc:
        logger.warning("backup %s: %s", backup.pk, exc)
        return
    logger.info("backup %s: %d unfinished upload(s) removed", backup.pk, removed)
