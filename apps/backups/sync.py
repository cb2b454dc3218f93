"""Object-storage backups: the runbooks' `aws s3 sync` of a files bucket, as two operations.

- ``backups.sync_objects``: a bucket (or a prefix of it) copied to a backup bucket or prefix,
  optionally dated (``<prefix>/<YYYYmmdd>``), with S3 server-side copies (``copy_object``; a
  multipart ``upload_part_copy`` above PART_BYTES): nothing passes through the worker. Only
  what changed is copied: an object is the same when its size and ETag match (or when the
  ETag it was copied from, kept in its metadata, matches: a multipart copy gets a new ETag).
- ``backups.restore_objects`` (destructive: admins, a reason, the destination typed to
  confirm): the same copy the other way, from the backup back to the bucket. Objects that
  are not in the backup are left alone (like `aws s3 sync` without ``--delete``).

The operation's target is the S3 storage whose endpoint and credentials are used; the
buckets and prefixes are the operation's parameters. Prefixes are checked like the storage's
own, and a key whose rest would climb out of its prefix (``..``, ``.``, empty parts) is
skipped and reported, never copied.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django import forms
from django.core.exceptions import ValidationError
from django.template.defaultfilters import pluralize
from django.utils import timezone

from apps.backups.choices import StorageKind
from apps.backups.dumps import Progress, human_bytes
from apps.backups.models import BackupStorage, bucket_name, clean_prefix
from apps.backups.storage import MIB, StorageError, describe_s3_error, s3_client
from apps.operations.models import Operation
from apps.operations.progress import OperationFailed, Reporter
from apps.operations.registry import OperationKind, ParamsForm, Target, TargetNotFound, register

STORAGE_TARGET_TYPE = "backups.storage"
# Above this an object is copied in parts of this size (copy_object stops at 5 GiB).
PART_BYTES = 1024 * MIB
SOURCE_ETAG = "opsportal-source-etag"


class UnsafeObjectKey(StorageError):
    pass


@dataclass(frozen=True)
class Place:
    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}"

    def key_of(self, relative: str) -> str:
        """The key of ``relative`` under this prefix; UnsafeObjectKey if it would leave it."""
        parts = relative.split("/")
        if not relative or any(part in ("", ".", "..") for part in parts):
            raise UnsafeObjectKey(f"{relative!r} would leave {self}: not copied.")
        key = f"{self.prefix}/{relative}" if self.prefix else relative
        if posixpath.normpath(key) != key or key.startswith("/"):
            raise UnsafeObjectKey(f"{relative!r} would leave {self}: not copied.")
        return key

    def relative(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    etag: str


@dataclass
class SyncOutcome:
    listed: int = 0
    copied: int = 0
    copied_bytes: int = 0
    unchanged: int = 0
    skipped: list[str] | None = None


def _listing(client: Any, place: Place) -> Iterator[Listed]:
    paginator = client.get_paginator("list_objects_v2")
    options = {"Bucket": place.bucket}
    if place.prefix:
        options["Prefix"] = f"{place.prefix}/"
    try:
        for page in paginator.paginate(**options):
            for item in page.get("Contents", []):
                yield Listed(item["Key"], int(item["Size"]), item["ETag"])
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(describe_s3_error(exc, f"list {place}")) from None


def _copied_from(client: Any, bucket: str, key: str) -> str:
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(describe_s3_error(exc, f"read the metadata of {key}")) from None
    return str(head.get("Metadata", {}).get(SOURCE_ETAG, ""))


def _same(client: Any, source: Place, item: Listed, target: Place, there: Listed | None) -> bool:
    if there is None or there.size != item.size:
        return False
    if there.etag == item.etag:
        return True
    # A multipart copy has an ETag of its own: each copy keeps the one it was made from.
    return _copied_from(client, target.bucket, there.key) == item.etag or (
        _copied_from(client, source.bucket, item.key) == there.etag
    )


def _copy(client: Any, item: Listed, source: Place, key: str, target: Place, part: int) -> None:
    copy_source = {"Bucket": source.bucket, "Key": item.key}
    metadata = {SOURCE_ETAG: item.etag}
    if item.size <= part:
        client.copy_object(
            Bucket=target.bucket,
            Key=key,
            CopySource=copy_source,
            MetadataDirective="REPLACE",
            Metadata={**_metadata_of(client, source, item), **metadata},
        )
        return
    upload = client.create_multipart_upload(
        Bucket=target.bucket, Key=key, Metadata={**_metadata_of(client, source, item), **metadata}
    )
    upload_id = upload["UploadId"]
    parts = []
    try:
        for number, start in enumerate(range(0, item.size, part), start=1):
            end = min(start + part, item.size) - 1
            answer = client.upload_part_copy(
                Bucket=target.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=copy_source,
                CopySourceRange=f"bytes={start}-{end}",
            )
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        client.complete_multipart_upload(
            Bucket=target.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        client.abort_multipart_upload(Bucket=target.bucket, Key=key, UploadId=upload_id)
        raise


def _metadata_of(client: Any, source: Place, item: Listed) -> dict[str, str]:
    """The user metadata of the source, kept with the copy (REPLACE would drop it)."""
    head = client.head_object(Bucket=source.bucket, Key=item.key)
    kept: dict[str, str] = {
        name: value for name, value in head.get("Metadata", {}).items() if name != SOURCE_ETAG
    }
    return kept


def sync_objects(
    client: Any, source: Place, target: Place, reporter: Progress, *, part_bytes: int = PART_BYTES
) -> SyncOutcome:
    """Copy what differs from ``source`` to ``target`` (server-side); what is the same by size
    and ETag stays. Raises StorageError with S3's words."""
    if source.bucket == target.bucket and _overlap(source.prefix, target.prefix):
        raise StorageError(f"{source} and {target} overlap: a sync would copy into itself.")
    outcome = SyncOutcome(skipped=[])
    reporter.step(2, f"Listing {target}")
    present = {target.relative(item.key): item for item in _listing(client, target)}
    reporter.step(5, f"Listing {source}")
    todo: list[tuple[Listed, str]] = []
    for item in _listing(client, source):
        outcome.listed += 1
        relative = source.relative(item.key)
        try:
            key = target.key_of(relative)
        except UnsafeObjectKey as exc:
            assert outcome.skipped is not None
            outcome.skipped.append(item.key)
            reporter.log(f"Skipped {item.key}: {exc}", "warning")
            continue
        if _same(client, source, item, target, present.get(relative)):
            outcome.unchanged += 1
        else:
            todo.append((item, key))
    total = sum(item.size for item, _ in todo)
    reporter.step(
        8,
        f"{len(todo)} of {outcome.listed} object{pluralize(outcome.listed)} to copy "
        f"({human_bytes(total)}); {outcome.unchanged} unchanged.",
    )
    for item, key in todo:
        reporter.check_cancelled()
        try:
            _copy(client, item, source, key, target, part_bytes)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(describe_s3_error(exc, f"copy {item.key} to {key}")) from None
        outcome.copied += 1
        outcome.copied_bytes += item.size
        share = outcome.copied_bytes / total if total else outcome.copied / len(todo)
        reporter.step(
            8 + int(90 * share),
            f"{outcome.copied} of {len(todo)} copied ({human_bytes(outcome.copied_bytes)} of "
            f"{human_bytes(total)})",
        )
    return outcome


def _overlap(first: str, second: str) -> bool:
    if not first or not second:
        return True
    return (first + "/").startswith(second + "/") or (second + "/").startswith(first + "/")


# --- The operations --------------------------------------------------------------------


def _storage_or_none(storage_id: str) -> BackupStorage | None:
    if not storage_id.isdigit():
        return None
    return BackupStorage.objects.filter(pk=int(storage_id), kind=StorageKind.S3).first()


def resolve_storage(storage_id: str) -> Target:
    storage = _storage_or_none(storage_id)
    if storage is None:
        raise TargetNotFound(f"There is no S3 storage {storage_id!r}.")
    return Target(
        type=STORAGE_TARGET_TYPE,
        id=str(storage.pk),
        label=f"S3 storage {storage.name}",
        environment="",
        is_production=False,
    )


def _prefix_field(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(label=label, required=False, max_length=200, help_text=help_text)


class ObjectSyncParamsForm(ParamsForm):
    """Where from and where to: buckets and prefixes, checked like a storage's prefix."""

    source_bucket = forms.CharField(label="Bucket to back up", validators=[bucket_name])
    source_prefix = _prefix_field("Its prefix", "Empty for the whole bucket.")
    destination_bucket = forms.CharField(label="Backup bucket", validators=[bucket_name])
    destination_prefix = _prefix_field("Backup prefix", "Where the copies go in it.")
    dated = forms.BooleanField(
        label="Under a dated prefix",
        required=False,
        help_text="<backup prefix>/<YYYYmmdd> of the day it was requested.",
    )

    def clean_source_prefix(self) -> str:
        return _clean(self.cleaned_data.get("source_prefix", ""))

    def clean_destination_prefix(self) -> str:
        return _clean(self.cleaned_data.get("destination_prefix", ""))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        source = Place(cleaned["source_bucket"], cleaned["source_prefix"])
        destination = _destination(cleaned, timezone.now())
        if source.bucket == destination.bucket and _overlap(source.prefix, destination.prefix):
            raise ValidationError(
                f"{source} and {destination} overlap: copy to another bucket or a prefix "
                "outside the one backed up."
            )
        return cleaned


class ObjectRestoreParamsForm(ObjectSyncParamsForm):
    """The way back: the backup is the source, the bucket restored to is the destination,
    typed to confirm."""

    source_bucket = forms.CharField(label="Backup bucket", validators=[bucket_name])
    source_prefix = _prefix_field("Backup prefix", "The (dated) prefix to restore from.")
    destination_bucket = forms.CharField(label="Bucket to restore", validators=[bucket_name])
    destination_prefix = _prefix_field("Its prefix", "Empty for the whole bucket.")
    dated = None  # type: ignore[assignment]
    confirm_destination = forms.CharField(
        label="Type the destination to confirm",
        max_length=300,
        help_text="s3://<bucket>/<prefix>/ exactly as shown: changed objects are overwritten.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        expected = str(_destination(cleaned, timezone.now()))
        if cleaned.get("confirm_destination", "").strip() != expected:
            self.add_error(
                "confirm_destination", f"Type {expected} exactly to confirm. Nothing was done."
            )
        return cleaned


def _clean(value: str) -> str:
    if ".." in value:
        raise ValidationError("'..' is refused in a prefix: a copy can never leave its prefix.")
    return clean_prefix(value)


def _destination(params: dict[str, Any], when: datetime) -> Place:
    prefix = params.get("destination_prefix", "")
    if params.get("dated"):
        prefix = f"{prefix}/{when:%Y%m%d}" if prefix else f"{when:%Y%m%d}"
    return Place(params["destination_bucket"], prefix)


def _places(operation: Operation) -> tuple[BackupStorage, Place, Place]:
    storage = _storage_or_none(operation.target_id)
    if storage is None:
        raise OperationFailed(f"{operation.target_label} is no longer registered.")
    params = operation.params
    try:
        source = Place(params["source_bucket"], _clean(params.get("source_prefix", "")))
        _clean(params.get("destination_prefix", ""))
    except ValidationError as exc:
        raise OperationFailed(" ".join(exc.messages)) from None
    return storage, source, _destination(params, operation.created_at)


def _run(operation: Operation, reporter: Reporter, verb: str) -> None:
    storage, source, destination = _places(operation)
    reporter.log(f"{verb} {source} to {destination} through {storage.name}")
    try:
        outcome = sync_objects(s3_client(storage), source, destination, reporter)
    except StorageError as exc:
        raise OperationFailed(str(exc)) from None
    skipped = f"; {len(outcome.skipped or [])} unsafe key(s) skipped" if outcome.skipped else ""
    reporter.step(
        100,
        f"{verb} {source} to {destination}: {outcome.copied} copied "
        f"({human_bytes(outcome.copied_bytes)}), {outcome.unchanged} unchanged{skipped}.",
    )


def back_up_objects(operation: Operation, reporter: Reporter) -> None:
    _run(operation, reporter, "Synced")


def restore_objects(operation: Operation, reporter: Reporter) -> None:
    _run(operation, reporter, "Restored")


def _summary(target: Target, params: dict[str, Any]) -> str:
    source = Place(params.get("source_bucket", "?"), params.get("source_prefix", ""))
    destination = _destination({"destination_bucket": "?", **params}, timezone.now())
    return (
        f"Every object of {source} whose size or ETag differs from its copy in {destination} "
        "is copied there server-side; the others are left as they are, nothing is deleted."
    )


def _command(target: Target, params: dict[str, Any]) -> str:
    storage = _storage_or_none(target.id)
    endpoint = f" --endpoint-url {storage.endpoint_url}" if storage and storage.endpoint_url else ""
    source = Place(params.get("source_bucket", "?"), params.get("source_prefix", ""))
    destination = _destination({"destination_bucket": "?", **params}, timezone.now())
    return f"aws s3 sync{endpoint} {source} {destination}"


SYNC_KIND = "backups.sync_objects"
RESTORE_OBJECTS_KIND = "backups.restore_objects"

register(
    OperationKind(
        name=SYNC_KIND,
        icon="cloud-arrow-up",
        label="Back up a bucket",
        description="Server-side copies of a bucket (or a prefix) into a backup bucket or "
        "dated prefix: only the objects whose size or ETag changed are copied.",
        handler=back_up_objects,
        resolve_target=resolve_storage,
        form_class=ObjectSyncParamsForm,
        soft_time_limit=6 * 3600,
        time_limit=6 * 3600 + 120,
        summary=_summary,
        command=_command,
    )
)

register(
    OperationKind(
        name=RESTORE_OBJECTS_KIND,
        icon="cloud-arrow-down",
        label="Restore a bucket",
        description="Server-side copies from a bucket backup back into a bucket: the objects "
        "that differ are overwritten with the backup's; others are left alone.",
        handler=restore_objects,
        resolve_target=resolve_storage,
        form_class=ObjectRestoreParamsForm,
        destructive=True,
        soft_time_limit=6 * 3600,
        time_limit=6 * 3600 + 120,
        summary=_summary,
        command=_command,
    )
)
