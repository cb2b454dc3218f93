"""Every change to database targets, backup storage and integrity checks, and the
connection test. One transaction and one audit record each; secrets are never in a record,
only that they changed."""

from __future__ import annotations

import posixpath
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.contrib.auth.models import User
from django.db import models, transaction
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.records import AuditTarget, field_changes, record, save_form_recorded
from apps.backups.choices import Compression
from apps.backups.dumps import human_bytes
from apps.backups.forms import BackupStorageForm, DatabaseTargetForm, IntegrityCheckForm
from apps.backups.models import TARGET_TYPE, Backup, BackupStorage, DatabaseTarget, IntegrityCheck
from apps.backups.postgres import DatabaseProblem, check_connection
from apps.backups.schedules import next_due, scheduler_user
from apps.backups.storage import StorageError, backend_for


def audit_target(instance: models.Model) -> AuditTarget:
    # A target is "backups.target" everywhere: its operations are recorded under that name.
    kind = (
        TARGET_TYPE
        if isinstance(instance, DatabaseTarget)
        else f"backups.{instance._meta.model_name}"
    )
    return AuditTarget(kind, str(instance.pk), str(instance))


def _secret_change(changes: dict[str, list[str]], name: str, replaced: bool) -> None:
    """Say only that a secret changed, never its value."""
    changes.pop(name, None)
    if replaced:
        changes[name] = ["", "replaced"]


def do_save_database_target(actor: User, form: DatabaseTargetForm) -> DatabaseTarget:
    """Create or change a database target; a new password is encrypted before it is stored.
    Turning automatic pruning on records the actor's consent and reason on the target (and
    as the record's reason); turning it off forgets them."""
    changes = field_changes(form)
    target: DatabaseTarget = form.instance
    password = form.cleaned_data.get("password") or ""
    forget = bool(form.cleaned_data.get("forget_password"))
    _secret_change(changes, "password", bool(password))
    changes.pop("forget_password", None)
    if password:
        target.set_password(password)
    elif forget:
        target.set_password("")
        changes["password"] = ["", "removed"]
    if "schedule" in changes or (target.schedule and target.schedule_next_at is None):
        # A new schedule counts from now: a time that passed while it was edited is not due.
        target.schedule_next_at = next_due(target, timezone.now())
    # The reason of a consent to automatic pruning is the record's reason, and stays with it.
    typed = changes.pop("auto_prune_reason", ["", ""])[1]
    reason = typed if "auto_prune" in changes and target.auto_prune else ""
    if "auto_prune" in changes:
        target.auto_prune_by = actor if target.auto_prune else None
        target.auto_prune_reason = reason
        target.auto_prune_since = timezone.now() if target.auto_prune else None
    saved: DatabaseTarget = save_form_recorded(
        actor, form, target_of=audit_target, changes=changes, reason=reason
    )
    return saved


def do_stop_auto_prune(target: DatabaseTarget, why: str) -> None:
    """Turn a target's automatic pruning off because its consent no longer holds (the admin
    who gave it is gone or may no longer prune), recorded as the scheduler's change."""
    with transaction.atomic():
        DatabaseTarget.objects.filter(pk=target.pk).update(
            auto_prune=False, auto_prune_by=None, auto_prune_reason="", auto_prune_since=None
        )
        record(
            "databasetarget.changed",
            actor=scheduler_user(),
            target=audit_target(target),
            reason=why,
            data={"changes": {"auto_prune": ["True", "False"]}},
        )


def do_save_backup_storage(actor: User, form: BackupStorageForm) -> BackupStorage:
    """Create or change a storage; new access keys are encrypted before they are stored."""
    changes = field_changes(form)
    storage: BackupStorage = form.instance
    key_id = form.cleaned_data.get("access_key_id") or ""
    secret = form.cleaned_data.get("secret_access_key") or ""
    forget = bool(form.cleaned_data.get("forget_credentials"))
    replaced = bool(key_id and secret)
    _secret_change(changes, "access_key_id", replaced)
    _secret_change(changes, "secret_access_key", replaced)
    changes.pop("forget_credentials", None)
    if replaced:
        storage.set_credentials(key_id, secret)
    elif forget:
        storage.set_credentials("", "")
        changes["access_key_id"] = ["", "removed"]
    saved: BackupStorage = save_form_recorded(actor, form, target_of=audit_target, changes=changes)
    return saved


def do_test_database_connection(actor: User, target: DatabaseTarget) -> DatabaseTarget:
    """Connect with the stored credentials (5 s timeout), read the server's version and the
    database's size, and keep the answer; a refusal is recorded as failed, with why."""
    if target.is_sqlite:
        ok, detail = _check_sqlite(target)
    else:
        try:
            facts = check_connection(target)
        except DatabaseProblem as exc:
            ok, detail = False, str(exc)
        else:
            ok = True
            detail = f"PostgreSQL {facts.version}, {human_bytes(facts.database_bytes)}"
    target.check_ok = ok
    target.check_detail = detail[:500]
    target.checked_at = timezone.now()
    with transaction.atomic():
        target.save(update_fields=["check_ok", "check_detail", "checked_at"])
        record(
            "databasetarget.checked",
            actor=actor,
            outcome=Outcome.SUCCEEDED if ok else Outcome.FAILED,
            target=audit_target(target),
            reason=detail,
        )
    return target


def _check_sqlite(target: DatabaseTarget) -> tuple[bool, str]:
    path = Path(target.sqlite_path)
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        return False, f"Cannot read {path}: {exc}"
    return True, f"SQLite {sqlite3.sqlite_version}, {human_bytes(path.stat().st_size)}"


def do_save_integrity_check(actor: User, form: IntegrityCheckForm) -> IntegrityCheck:
    """Create or change a target's integrity check (its SQL already ran read-only on the
    target and gave a number in range: the form saw to it)."""
    changes = field_changes(form)
    if form.tried_value:
        changes["tried"] = ["", form.tried_value]
    saved: IntegrityCheck = save_form_recorded(actor, form, target_of=audit_target, changes=changes)
    return saved


def do_delete_integrity_check(actor: User, check: IntegrityCheck) -> None:
    """Remove a check; the record keeps what it was."""
    with transaction.atomic():
        record(
            "integritycheck.deleted",
            actor=actor,
            target=audit_target(check),
            data={
                "target": check.target_id,
                "name": check.name,
                "sql": check.sql,
                "expected": check.expected_label,
            },
        )
        check.delete()


DOWNLOAD_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Download:
    filename: str
    chunks: Iterator[bytes]


def _pieces(reader: IO[bytes]) -> Iterator[bytes]:
    try:
        while piece := reader.read(DOWNLOAD_CHUNK):
            yield piece
    finally:
        reader.close()


def do_download_backup(actor: User, backup: Backup) -> Download:
    """Open a good backup's stored object for reading and record who took it; the caller
    streams the pieces (one MiB at a time) to the browser. StorageError when it cannot be
    opened (recorded as failed)."""
    target = AuditTarget("backups.backup", str(backup.pk), str(backup))
    data = {"key": backup.key, "storage": backup.storage.name, "size": backup.size_bytes}
    try:
        reader = backend_for(backup.storage).open_reader(backup.key)
    except StorageError as exc:
        record(
            "backup.downloaded",
            actor=actor,
            outcome=Outcome.FAILED,
            target=target,
            reason=str(exc),
            data=data,
        )
        raise
    record("backup.downloaded", actor=actor, target=target, data=data)
    name = posixpath.basename(backup.key)
    if backup.compression == Compression.ZSTD:
        name += ".zst"
    return Download(filename=name, chunks=_pieces(reader))
