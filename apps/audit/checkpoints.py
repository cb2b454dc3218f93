"""Signed checkpoints of the audit chain, and the hourly copy of the chain head outside the
database.

A checkpoint says "the chain reached #seq with this hash", signed with an HMAC of the
portal's secret key. ``verify_chain(since=checkpoint)`` walks from it instead of from the
first event (the event it names must still carry its hash), so that a nightly check of a
large history costs only what was added since. Each hourly checkpoint is also written, as a
small JSON object, to the backup storage named by AUDIT_HEAD_STORAGE (with S3 object lock in
compliance mode when the bucket has object lock enabled): whoever rewrites the whole table
and its head row cannot rewrite those copies, and ``check_stored_head`` finds the difference.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from apps.audit.models import AuditChainHead, AuditCheckpoint, AuditEvent

logger = logging.getLogger(__name__)

SIGNING_SALT = "apps.audit.checkpoint"
HEAD_FOLDER = "audit-head"


def signature_of(seq: int, chain_hash: str, created_at: datetime) -> str:
    message = f"{seq}:{chain_hash}:{created_at.isoformat()}"
    return salted_hmac(SIGNING_SALT, message, algorithm="sha256").hexdigest()


def is_signed(checkpoint: AuditCheckpoint) -> bool:
    expected = signature_of(checkpoint.seq, checkpoint.hash, checkpoint.created_at)
    return hmac.compare_digest(expected, checkpoint.signature)


def latest_signed_checkpoint() -> AuditCheckpoint | None:
    """The newest checkpoint whose signature holds; forged or altered ones are skipped."""
    for checkpoint in AuditCheckpoint.objects.order_by("-seq", "-pk")[:50]:
        if is_signed(checkpoint):
            return checkpoint
    return None


def head_document(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    return {
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "created_at": checkpoint.created_at.isoformat(),
        "signature": checkpoint.signature,
    }


def head_key(prefix: str, checkpoint: AuditCheckpoint) -> str:
    # Sortable by time: the newest copy is the last key of a listing.
    stamp = checkpoint.created_at.astimezone(UTC)
    name = f"{stamp:%Y%m%dT%H%M%S}-{checkpoint.seq:012d}.json"
    return "/".join(part for part in (prefix, HEAD_FOLDER, name) if part)


def do_write_checkpoint() -> AuditCheckpoint:
    """Sign the chain's head as it is now (under the head's lock, so no append is half-way)
    and keep it; then copy it to the head storage when one is configured."""
    with transaction.atomic():
        head = AuditChainHead.objects.select_for_update().get(pk=1)
        now = timezone.now()
        checkpoint = AuditCheckpoint.objects.create(
            created_at=now,
            seq=head.seq,
            hash=head.last_hash,
            signature=signature_of(head.seq, head.last_hash, now),
        )
    storage = head_storage()
    if storage is not None:
        store_head(storage, checkpoint)
    return checkpoint


def head_storage() -> Any:
    """The BackupStorage named by AUDIT_HEAD_STORAGE, or None when none is configured."""
    name = settings.AUDIT_HEAD_STORAGE
    if not name:
        return None
    from apps.backups.models import BackupStorage

    storage = BackupStorage.objects.filter(name=name).first()
    if storage is None:
        logger.error("AUDIT_HEAD_STORAGE names no backup storage: %r", name)
    return storage


def _object_lock_enabled(client: Any, bucket: str) -> bool:
    try:
        answer = client.get_object_lock_configuration(Bucket=bucket)
    except (BotoCoreError, ClientError):
        return False  # no object lock on this bucket (or the store does not know it)
    config = answer.get("ObjectLockConfiguration", {})
    return bool(config.get("ObjectLockEnabled") == "Enabled")


def store_head(storage: Any, checkpoint: AuditCheckpoint) -> None:
    """Write the checkpoint as JSON to ``storage``; on S3, locked against deletion and
    overwrite for AUDIT_HEAD_RETAIN_DAYS when the bucket allows it. A failure is kept on the
    checkpoint and logged: the next hour tries again with a new one."""
    from apps.backups.choices import StorageKind
    from apps.backups.storage import StorageError, backend_for, describe_s3_error, s3_client

    key = head_key(storage.prefix, checkpoint)
    body = json.dumps(head_document(checkpoint), sort_keys=True).encode()
    error = ""
    try:
        if storage.kind == StorageKind.S3:
            client = s3_client(storage)
            extra: dict[str, Any] = {}
            if _object_lock_enabled(client, storage.bucket):
                days = settings.AUDIT_HEAD_RETAIN_DAYS
                extra = {
                    "ObjectLockMode": "COMPLIANCE",
                    "ObjectLockRetainUntilDate": timezone.now() + timedelta(days=days),
                    # S3 takes a locked object only with a checksum of its body.
                    "ChecksumAlgorithm": "SHA256",
                }
            try:
                client.put_object(
                    Bucket=storage.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    **extra,
                )
            except (BotoCoreError, ClientError) as exc:
                raise StorageError(describe_s3_error(exc, f"write {key}")) from None
        else:
            writer = backend_for(storage).open_writer(key)
            try:
                writer.write(body)
                writer.commit()
            except BaseException:
                writer.abort()
                raise
    except (StorageError, OSError) as exc:
        error = str(exc)[:500]
        logger.error("the audit chain head was not stored: %s", error)
    checkpoint.stored_key = "" if error else key
    checkpoint.store_error = error
    checkpoint.save(update_fields=["stored_key", "store_error"])


@dataclass(frozen=True)
class StoredHeadReport:
    ok: bool
    message: str
    seq: int | None = None


def _newest_stored(storage: Any) -> dict[str, Any] | None:
    from apps.backups.choices import StorageKind
    from apps.backups.storage import LocalBackend, backend_for, s3_client

    folder = "/".join(part for part in (storage.prefix, HEAD_FOLDER) if part)
    if storage.kind == StorageKind.S3:
        client = s3_client(storage)
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=storage.bucket, Prefix=f"{folder}/"
        ):
            keys.extend(item["Key"] for item in page.get("Contents", []))
    else:
        backend = backend_for(storage)
        assert isinstance(backend, LocalBackend)
        keys = [f"{folder}/{path.name}" for path in backend.path_of(folder).glob("*.json")]
    if not keys:
        return None
    with backend_for(storage).open_reader(max(keys)) as body:
        document: dict[str, Any] = json.loads(body.read())
    return document


def check_stored_head(storage: Any) -> StoredHeadReport:
    """Compare the newest head copy in ``storage`` with the table: the event it names must
    exist with the same hash. Catches a rewrite of the whole table, head row included."""
    try:
        document = _newest_stored(storage)
    except Exception as exc:  # a store that cannot be read is a finding, not a crash
        return StoredHeadReport(False, f"The stored chain heads could not be read: {exc}")
    if document is None:
        return StoredHeadReport(True, "No chain head has been stored yet.")
    try:
        seq, chain_hash = int(document["seq"]), str(document["hash"])
        created_at = datetime.fromisoformat(str(document["created_at"]))
        signature = str(document["signature"])
    except (KeyError, TypeError, ValueError):
        return StoredHeadReport(False, "The newest stored chain head cannot be read.")
    if not hmac.compare_digest(signature_of(seq, chain_hash, created_at), signature):
        return StoredHeadReport(False, "The newest stored chain head is not signed by us.", seq)
    if seq == 0:
        return StoredHeadReport(True, "The stored chain head predates the first event.", 0)
    found = AuditEvent.objects.filter(seq=seq).values_list("hash", flat=True).first()
    if found is None:
        return StoredHeadReport(
            False,
            f"Event #{seq}, stored as the chain head on {created_at:%d %b %Y %H:%M} "
            "UTC, is missing from the table.",
            seq,
        )
    if found != chain_hash:
        return StoredHeadReport(
            False,
            f"Event #{seq} differs from the chain head stored on {created_at:%d %b %Y %H:%M} "
            "UTC: the history was rewritten.",
            seq,
        )
    return StoredHeadReport(True, f"Event #{seq} matches the newest stored chain head.", seq)
