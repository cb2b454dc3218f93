"""The backup operation: pg_dump of a database target, streamed compressed into a storage,
with its checksum, size, versions and row counts kept in a Backup row. A failure of the
database, the storage or pg_dump ends it failed with their words; nothing is left behind in
the storage and the Backup row says ``failed`` with the reason."""

from __future__ import annotations

import shlex
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.template.defaultfilters import pluralize
from django.utils import timezone

from apps.backups.choices import BackupState, StorageKind
from apps.backups.dumps import DumpFailed, human_bytes, stream_dump
from apps.backups.forms import BackupParamsForm
from apps.backups.models import Backup, BackupStorage, DatabaseTarget
from apps.backups.postgres import DatabaseProblem
from apps.backups.storage import StorageError, backend_for, backup_key
from apps.operations.models import Operation
from apps.operations.progress import OperationCancelled, OperationFailed, Reporter
from apps.operations.registry import OperationKind, Target, TargetNotFound, register


def resolve_target(target_id: str) -> Target:
    found = (
        DatabaseTarget.objects.filter(pk=int(target_id)).first() if target_id.isdigit() else None
    )
    if found is None:
        raise TargetNotFound(f"There is no database target {target_id!r}.")
    return found.as_operation_target()


def _storage_of(operation: Operation, target: DatabaseTarget) -> BackupStorage:
    chosen = operation.params.get("storage")
    if not chosen:
        return target.storage
    storage = BackupStorage.objects.filter(pk=chosen).first()
    if storage is None:
        raise OperationFailed(f"The storage #{chosen} chosen for this backup no longer exists.")
    return storage


def _why(exc: BaseException) -> str:
    if isinstance(exc, OperationCancelled):
        return "Cancelled on request."
    if isinstance(exc, SoftTimeLimitExceeded):
        return "Timed out."
    if isinstance(exc, DatabaseProblem | StorageError | DumpFailed | OperationFailed):
        return str(exc)
    return f"Error: {type(exc).__name__}: {exc}"


def back_up(operation: Operation, reporter: Reporter) -> None:
    target = DatabaseTarget.objects.select_related("storage").filter(pk=operation.target_id).first()
    if target is None:
        raise OperationFailed(f"{operation.target_label} is no longer registered.")
    storage = _storage_of(operation, target)
    started = timezone.now()
    try:
        key = backup_key(storage.prefix, target.name, started)
    except StorageError as exc:
        raise OperationFailed(str(exc)) from None
    backup = Backup.objects.create(
        target=target,
        storage=storage,
        key=key,
        state=BackupState.RUNNING,
        started_at=started,
        operation=operation,
        started_by=operation.requested_by,
    )
    reporter.log(f"Backing up {target.dsn_label} to {storage.name}: {key}")
    try:
        outcome = stream_dump(target, backend_for(storage), key, reporter)
    except BaseException as exc:
        backup.state = BackupState.FAILED
        backup.error = _why(exc)
        backup.finished_at = timezone.now()
        backup.save(update_fields=["state", "error", "finished_at"])
        if isinstance(exc, DatabaseProblem | StorageError | DumpFailed):
            raise OperationFailed(str(exc)) from None
        raise
    backup.state = BackupState.SUCCEEDED
    backup.finished_at = timezone.now()
    backup.size_bytes = outcome.size_bytes
    backup.sha256 = outcome.sha256
    backup.compression = outcome.compression
    backup.pg_dump_version = outcome.pg_dump_version
    backup.server_version = outcome.server_version
    backup.row_counts = outcome.row_counts
    backup.save(
        update_fields=[
            "state",
            "finished_at",
            "size_bytes",
            "sha256",
            "compression",
            "pg_dump_version",
            "server_version",
            "row_counts",
        ]
    )
    seconds = (backup.finished_at - backup.started_at).total_seconds()
    reporter.log(f"SHA-256 {outcome.sha256}")
    reporter.step(
        100,
        f"Backed up {target.name}: {human_bytes(outcome.size_bytes)} in {seconds:.1f} s, "
        f"{len(outcome.row_counts)} table{pluralize(len(outcome.row_counts))}.",
    )


def _chosen(target: Target, params: dict[str, Any]) -> tuple[DatabaseTarget, BackupStorage]:
    found = DatabaseTarget.objects.select_related("storage").get(pk=target.id)
    chosen = params.get("storage")
    storage = (BackupStorage.objects.filter(pk=chosen).first() if chosen else None) or found.storage
    return found, storage


def _command(target: Target, params: dict[str, Any]) -> str:
    found, storage = _chosen(target, params)
    dump = shlex.join(
        [
            "pg_dump",
            "--format=custom",
            "--compress=0",
            "-h",
            found.host,
            "-p",
            str(found.port),
            "-U",
            found.user,
            "-d",
            found.database,
        ]
    )
    where = f"{storage.root}{found.slug}/YYYY/MM/{found.slug}_YYYYmmdd_HHMMSS.dump"
    if storage.kind == StorageKind.LOCAL:
        return f"{dump} | zstd > {where}"
    endpoint = ""
    if storage.endpoint_url:
        endpoint = f" --endpoint-url {shlex.quote(storage.endpoint_url)}"
    return f"{dump} | zstd | aws s3 cp{endpoint} - {where}"


def _summary(target: Target, params: dict[str, Any]) -> str:
    found, storage = _chosen(target, params)
    return (
        f"{found.database} on {found.host} is dumped with pg_dump (custom format, zstd) "
        f"straight into {storage.name} ({storage.location}); the database is only read."
    )


register(
    OperationKind(
        name="backups.backup",
        icon="archive",
        label="Back up now",
        description="pg_dump of the database in custom format, compressed with zstd and "
        "streamed into the storage while its SHA-256 is computed; the row count of every "
        "table is recorded with it.",
        handler=back_up,
        resolve_target=resolve_target,
        form_class=BackupParamsForm,
        soft_time_limit=settings.BACKUP_TIME_LIMIT_SECONDS,
        time_limit=settings.BACKUP_TIME_LIMIT_SECONDS + 120,
        summary=_summary,
        command=_command,
    )
)
