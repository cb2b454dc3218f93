"""The operations of the backups app.

- ``backups.backup``: pg_dump of a database target, streamed compressed into a storage, with
  its checksum, size, versions and row counts kept in a Backup row. A failure of the
  database, the storage or pg_dump ends it failed with their words; nothing is left behind in
  the storage and the Backup row says ``failed`` with the reason.
- ``backups.restore`` (admins, re-authenticated; a second admin approves on production): a
  good backup over a target's database, after its checksum was verified and a safety backup
  of the target taken (unless it is empty or a scratch target), then the integrity checks.
- ``backups.test_restore`` (operators, and the hourly schedule): the proof that a backup
  restores: into a scratch database created for it and always dropped, with the checks and
  the time the restore took, recorded as the target's "last verified restore".
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.defaultfilters import pluralize
from django.utils import timezone

from apps.backups import postgres
from apps.backups.checks import CheckProblem, CheckResult, run_integrity_checks
from apps.backups.choices import BackupState, Compression, RestoreKind, RestoreState, StorageKind
from apps.backups.dumps import DumpFailed, Progress, human_bytes, stream_dump
from apps.backups.forms import BackupParamsForm, RestoreParamsForm, ScratchRestoreParamsForm
from apps.backups.freshness import resolve_if_fresh
from apps.backups.models import (
    Backup,
    BackupStorage,
    DatabaseTarget,
    IntegrityCheck,
    RestoreRun,
)
from apps.backups.postgres import DatabaseProblem
from apps.backups.restores import (
    SCRATCH_PREFIX,
    Phase,
    RestoreFailed,
    check_database_name,
    restore_jobs,
    run_pg_restore,
    scratch_database,
    scratch_server,
    through_pipe,
    user_relations,
    verified_dump,
)
from apps.backups.schedules import BACKUP_SCHEDULE_LABEL, SCHEDULE_LABEL, is_scheduler
from apps.backups.sqlite import stream_sqlite
from apps.backups.storage import StorageError, backend_for, backup_key
from apps.operations.choices import Approval, LogLevel
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


def _target_of(operation: Operation) -> DatabaseTarget:
    target = DatabaseTarget.objects.select_related("storage").filter(pk=operation.target_id).first()
    if target is None:
        raise OperationFailed(f"{operation.target_label} is no longer registered.")
    return target


_FOR_PEOPLE = (DatabaseProblem, StorageError, DumpFailed, RestoreFailed, CheckProblem)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OperationCancelled):
        return "Cancelled on request."
    if isinstance(exc, SoftTimeLimitExceeded):
        return "Timed out."
    if isinstance(exc, (*_FOR_PEOPLE, OperationFailed)):
        return str(exc)
    return f"Error: {type(exc).__name__}: {exc}"


# Backups of one target started within the same second (see take_backup).
KEY_ATTEMPTS = 3


def take_backup(
    target: DatabaseTarget,
    storage: BackupStorage,
    reporter: Progress,
    *,
    operation: Operation,
    note: str = "",
) -> Backup:
    """Dump ``target`` into ``storage`` and keep the record: a good Backup, or a failed one
    with the reason and OperationFailed (or the cancel, the time limit) raised on."""
    for _attempt in range(KEY_ATTEMPTS):
        started = timezone.now()
        try:
            key = backup_key(storage.prefix, target.name, started)
        except StorageError as exc:
            raise OperationFailed(str(exc)) from None
        try:
            with transaction.atomic():
                backup = Backup.objects.create(
                    target=target,
                    storage=storage,
                    key=key,
                    state=BackupState.RUNNING,
                    started_at=started,
                    operation=operation,
                    started_by=operation.requested_by,
                    schedule=_schedule_label(operation, target, note),
                    note=note[:200],
                )
            break
        except IntegrityError:
            # Keys name the second a backup starts: one of this target (a restore's safety
            # backup right after a backup) started in this second. Take the next one's.
            time.sleep(1.0 - started.microsecond / 1_000_000)
    else:
        raise OperationFailed(f"No free key for a backup of {target.name} in {storage.name}.")
    reporter.log(f"Backing up {target.dsn_label} to {storage.name}: {key}")
    try:
        dump = stream_sqlite if target.is_sqlite else stream_dump
        outcome = dump(target, backend_for(storage), key, reporter)
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
    reporter.log(f"SHA-256 {outcome.sha256}")
    resolve_if_fresh(target)
    return backup


def _schedule_label(operation: Operation, target: DatabaseTarget, note: str) -> str:
    """The schedule a backup came from: the target's, when the scheduler asked for it."""
    if note or operation.requested_by is None or not is_scheduler(operation.requested_by):
        return ""
    return (target.schedule or BACKUP_SCHEDULE_LABEL)[:100]


def back_up(operation: Operation, reporter: Reporter) -> None:
    target = _target_of(operation)
    storage = _storage_of(operation, target)
    backup = take_backup(target, storage, reporter, operation=operation)
    seconds = backup.duration.total_seconds() if backup.duration else 0.0
    reporter.step(
        100,
        f"Backed up {target.name}: {human_bytes(backup.size_bytes or 0)} in {seconds:.1f} s, "
        f"{len(backup.row_counts)} table{pluralize(len(backup.row_counts))}.",
    )


def _chosen(target: Target, params: dict[str, Any]) -> tuple[DatabaseTarget, BackupStorage]:
    found = DatabaseTarget.objects.select_related("storage").get(pk=target.id)
    chosen = params.get("storage")
    storage = (BackupStorage.objects.filter(pk=chosen).first() if chosen else None) or found.storage
    return found, storage


def _command(target: Target, params: dict[str, Any]) -> str:
    found, storage = _chosen(target, params)
    if found.is_sqlite:
        copy = shlex.join(["sqlite3", found.sqlite_path, ".backup copy.sqlite3"])
        where = f"{storage.root}{found.slug}/YYYY/MM/{found.slug}_YYYYmmdd_HHMMSS.dump"
        return f"{copy}\nzstd copy.sqlite3 -o {where}"
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
    if found.is_sqlite:
        return (
            f"The SQLite file {found.sqlite_path} is copied with SQLite's online backup API "
            f"(it stays in use), then compressed with zstd into {storage.name} "
            f"({storage.location}); the file is only read."
        )
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


# --- Restores ------------------------------------------------------------------------------


def _for_people(exc: BaseException) -> BaseException:
    """The exception the runner should see: an expected failure becomes OperationFailed."""
    if isinstance(exc, _FOR_PEOPLE):
        return OperationFailed(str(exc))
    return exc


def _end_run(
    run: RestoreRun, results: list[CheckResult] | None = None, error: BaseException | None = None
) -> None:
    if results is not None:
        run.checks = [result.as_json() for result in results]
    failed = error is not None or any(not check.get("passed") for check in run.checks)
    run.state = RestoreState.FAILED if failed else RestoreState.PASSED
    if error is not None:
        run.error = _why(error)
    run.finished_at = timezone.now()
    run.save(
        update_fields=["state", "error", "finished_at", "checks", "restore_seconds", "database"]
    )


def _good_backup(backup_id: object) -> Backup:
    backup = (
        Backup.objects.select_related("storage", "target").filter(pk=backup_id).first()
        if isinstance(backup_id, int)
        else None
    )
    if backup is None or not backup.is_good:
        raise OperationFailed(
            f"Backup #{backup_id} is not a good backup any more: nothing was done."
        )
    _refuse_sqlite(backup)
    return backup


def _refuse_sqlite(backup: Backup) -> None:
    if backup.compression == Compression.SQLITE_ZSTD:
        raise OperationFailed(
            f"Backup #{backup.pk} is a SQLite file: restore it by hand (download it, "
            "zstd -d, and put it in place while the portal is stopped). Nothing was done."
        )


def _checks_outcome(run: RestoreRun) -> str:
    failed = [check["name"] for check in run.failed_checks]
    total = len(run.checks)
    if failed:
        return (
            f"{len(failed)} of {total} integrity checks failed ({', '.join(map(str, failed[:5]))})"
        )
    return f"all {total} integrity check{pluralize(total)} passed"


def restore(operation: Operation, reporter: Reporter) -> None:
    destination = _target_of(operation)
    if destination.is_sqlite:
        raise OperationFailed(
            f"{destination.name} is a SQLite file: restores go into PostgreSQL targets only. "
            "Nothing was done."
        )
    params = operation.params
    backup = _good_backup(params.get("backup"))
    typed = params.get("confirm_database")
    if typed != destination.database:
        # The target may have been edited between the request and now.
        raise OperationFailed(
            f"The name typed to confirm ({typed!r}) is not the target's database "
            f"({destination.database}): refused, nothing was done."
        )
    try:
        check_database_name(destination)
    except RestoreFailed as exc:
        raise OperationFailed(f"{exc} Nothing was done.") from None
    run = RestoreRun.objects.create(
        kind=RestoreKind.RESTORE,
        backup=backup,
        target=destination,
        database=destination.database,
        server=f"{destination.host}:{destination.port}",
        operation=operation,
        started_by=operation.requested_by,
    )
    try:
        _restore_over(operation, reporter, backup, destination, run)
    except BaseException as exc:
        if run.state == RestoreState.RUNNING:
            _end_run(run, error=exc)
        raise _for_people(exc) from None
    reporter.step(
        100,
        f"Restored backup #{backup.pk} into {destination.database} in "
        f"{run.restore_seconds or 0:.1f} s: {_checks_outcome(run)}.",
    )


def _restore_over(
    operation: Operation,
    reporter: Reporter,
    backup: Backup,
    destination: DatabaseTarget,
    run: RestoreRun,
) -> None:
    skip = bool(operation.params.get("skip_safety_backup"))
    reporter.step(1, f"Connecting to {destination.dsn_label}")
    facts = postgres.check_connection(destination)
    if skip and not destination.is_scratch and (relations := user_relations(destination)):
        raise OperationFailed(
            f"{destination.database} is not empty any more ({relations} tables, views or "
            "sequences): a safety backup is required. Start the restore again without "
            "skipping it. Nothing was done."
        )
    clock = time.monotonic()
    with verified_dump(backup, Phase(reporter, 2, 30)) as dump:
        reading = time.monotonic() - clock
        if skip:
            why = "a scratch target" if destination.is_scratch else "the database is empty"
            reporter.log(f"No safety backup: skipped on request ({why}).", LogLevel.WARNING)
        else:
            reporter.log(f"Safety backup of {destination.database} before it is overwritten.")
            try:
                safety = take_backup(
                    destination,
                    destination.storage,
                    Phase(reporter, 30, 60),
                    operation=operation,
                    note=f"Safety backup before restore operation #{operation.pk}",
                )
            except OperationFailed as exc:
                raise OperationFailed(
                    f"The safety backup failed, so nothing was restored: {exc}"
                ) from None
            run.safety_backup = safety
            run.save(update_fields=["safety_backup"])
            reporter.log(f"Safety backup #{safety.pk} is in {safety.storage.name}: {safety.key}")
        clock = time.monotonic()
        try:
            run_pg_restore(dump, destination, Phase(reporter, 60, 90), server_major=facts.major)
        except BaseException:
            if run.safety_backup_id:
                reporter.log(
                    f"{destination.database} may be partly restored: its safety backup is "
                    f"#{run.safety_backup_id}.",
                    LogLevel.ERROR,
                )
            raise
        run.restore_seconds = reading + time.monotonic() - clock
    results = run_integrity_checks(destination, backup, Phase(reporter, 90, 99))
    _end_run(run, results)
    if run.state != RestoreState.PASSED:
        raise OperationFailed(
            f"Backup #{backup.pk} was restored into {destination.database}, but "
            f"{_checks_outcome(run)}."
        )


def restore_into_scratch(operation: Operation, reporter: Reporter) -> None:
    source = _target_of(operation)
    chosen = operation.params.get("backup")
    if chosen is None:
        latest = Backup.objects.good().filter(target=source).order_by("-finished_at", "-pk")
        backup = latest.select_related("storage", "target").first()
        if backup is None:
            raise OperationFailed(f"{source.name} has no good backup to test.")
        _refuse_sqlite(backup)
    else:
        backup = _good_backup(chosen)
    server = scratch_server(source)
    run = RestoreRun.objects.create(
        kind=RestoreKind.TEST,
        backup=backup,
        target=source,
        database="",
        server=f"{server.host}:{server.port}",
        operation=operation,
        started_by=operation.requested_by,
        schedule=SCHEDULE_LABEL if is_scheduler(operation.requested_by) else "",
    )
    reporter.log(f"Test restore of backup #{backup.pk} ({backup.key}) of {source.name}.")
    try:
        _restore_check_drop(reporter, backup, server, run)
    except BaseException as exc:
        if run.state == RestoreState.RUNNING:
            _end_run(run, error=exc)
        raise _for_people(exc) from None
    if run.state != RestoreState.PASSED:
        raise OperationFailed(
            f"Test restore of backup #{backup.pk} failed: {_checks_outcome(run)}."
        )
    reporter.step(
        100,
        f"Verified: backup #{backup.pk} restores in {run.restore_seconds or 0:.1f} s and "
        f"{_checks_outcome(run)}.",
    )


def _restore_check_drop(
    reporter: Reporter, backup: Backup, server: DatabaseTarget, run: RestoreRun
) -> None:
    clock = time.monotonic()
    with verified_dump(backup, Phase(reporter, 2, 40)) as dump:
        reading = time.monotonic() - clock
        facts = postgres.check_connection(server)
        with scratch_database(server, reporter) as scratch:
            run.database = scratch.database
            run.save(update_fields=["database"])
            clock = time.monotonic()
            run_pg_restore(dump, scratch, Phase(reporter, 40, 85), server_major=facts.major)
            run.restore_seconds = reading + time.monotonic() - clock
            results = run_integrity_checks(scratch, backup, Phase(reporter, 85, 98))
    _end_run(run, results)


# --- What the confirmation page shows ------------------------------------------------------


def _backup_param(params: dict[str, Any]) -> Backup | None:
    chosen = params.get("backup")
    if not isinstance(chosen, int):
        return None
    return Backup.objects.select_related("storage", "target").filter(pk=chosen).first()


def _fetch_lines(backup: Backup) -> list[str]:
    """Reading and verifying the object, as the runbooks would by hand."""
    storage = backup.storage
    stored = "backup.dump.zst" if backup.compression == "zstd" else "backup.dump"
    if storage.kind == StorageKind.LOCAL:
        fetch = shlex.join(["cp", f"{storage.directory.rstrip('/')}/{backup.key}", stored])
    else:
        endpoint = ["--endpoint-url", storage.endpoint_url] if storage.endpoint_url else []
        fetch = shlex.join(
            ["aws", "s3", "cp", *endpoint, f"s3://{storage.bucket}/{backup.key}", stored]
        )
    return [fetch, f"echo '{backup.sha256}  {stored}' | sha256sum --check"]


def _restore_line(backup: Backup, options: list[str], database: str) -> list[str]:
    """pg_restore of the fetched ``backup`` into ``database`` (quoted already), as the worker
    runs it: through a pipe in one transaction, or from a file with parallel jobs."""
    if through_pipe(backup):
        restore = shlex.join(["pg_restore", *options, "--single-transaction"])
        return [f"zstd -dc backup.dump.zst | {restore} -d {database}"]
    compressed = backup.compression == Compression.ZSTD
    lines = ["zstd -d backup.dump.zst -o backup.dump"] if compressed else []
    jobs = f"--jobs={restore_jobs(len(backup.row_counts))}"
    restore = shlex.join(["pg_restore", *options, jobs])
    return [*lines, f"{restore} -d {database} backup.dump"]


def _connection_args(target: DatabaseTarget) -> list[str]:
    return ["-h", target.host, "-p", str(target.port), "-U", target.user]


def _check_count(backup: Backup) -> str:
    checks = IntegrityCheck.objects.filter(target_id=backup.target_id).count()
    tables = len(backup.row_counts)
    return f"{tables} row count{pluralize(tables)} and {checks} check{pluralize(checks)}"


def _restore_summary(target: Target, params: dict[str, Any]) -> str:
    destination = DatabaseTarget.objects.select_related("storage").get(pk=target.id)
    backup = _backup_param(params)
    if backup is None:
        return ""
    when = backup.finished_at or backup.started_at
    if params.get("skip_safety_backup"):
        why = "a scratch target" if destination.is_scratch else "the database is empty"
        safety = f"No safety backup is taken (skipped: {why})."
    else:
        safety = (
            f"Then a safety backup of {destination.database} goes to {destination.storage.name}."
        )
    return (
        f"Backup #{backup.pk} of {backup.target.name}, taken {when:%Y-%m-%d %H:%M} UTC "
        f"({human_bytes(backup.size_bytes or 0)}), is read from {backup.storage.name} and its "
        f"SHA-256 verified before anything is touched. {safety} Then pg_restore --clean drops "
        f"and recreates every object of the backup in {destination.database} on "
        f"{destination.host}: whatever was written there since is lost. Last, "
        f"{_check_count(backup)} verify the result."
    )


def _restore_command(target: Target, params: dict[str, Any]) -> str:
    destination = DatabaseTarget.objects.get(pk=target.id)
    backup = _backup_param(params)
    if backup is None:
        return ""
    connection = _connection_args(destination)
    lines = _fetch_lines(backup)
    if not params.get("skip_safety_backup"):
        lines.append(
            shlex.join(["pg_dump", "--format=custom", *connection, "-d", destination.database])
            + " | zstd > safety.dump.zst"
        )
    options = ["--clean", "--if-exists", "--no-owner", *connection]
    lines += _restore_line(backup, options, shlex.quote(destination.database))
    return "\n".join(lines)


def _test_restore_summary(target: Target, params: dict[str, Any]) -> str:
    source = DatabaseTarget.objects.get(pk=target.id)
    backup = _backup_param(params)
    which = f"Backup #{backup.pk}" if backup else "The latest good backup"
    server = scratch_server(source)
    return (
        f"{which} of {source.name} is read from its storage, verified against its SHA-256 and "
        f"restored into a scratch database created for it on {server.host}:{server.port} "
        f"(dropped afterwards, whatever happens); then its row counts and {source.name}'s "
        f"checks are compared and the restore time recorded. {source.database} is not touched."
    )


def _test_restore_command(target: Target, params: dict[str, Any]) -> str:
    source = DatabaseTarget.objects.get(pk=target.id)
    backup = _backup_param(params) or (
        Backup.objects.good()
        .filter(target=source)
        .select_related("storage", "target")
        .order_by("-finished_at", "-pk")
        .first()
    )
    server = scratch_server(source)
    connection = " ".join(shlex.quote(part) for part in _connection_args(server))
    scratch = f"{SCRATCH_PREFIX}<random>"
    options = ["--no-owner", *_connection_args(server)]
    restore = (
        [*_fetch_lines(backup), *_restore_line(backup, options, scratch)]
        if backup
        else ["(no good backup yet: nothing to restore)"]
    )
    return "\n".join(
        [
            f"createdb {connection} {scratch}",
            *restore,
            f"psql {connection} -d {scratch} -c 'SELECT count(*) FROM …'   # every table, "
            "and each check",
            f"dropdb --force {connection} {scratch}",
        ]
    )


register(
    OperationKind(
        name="backups.restore",
        icon="arrow-counterclockwise",
        label="Restore a backup",
        description="A good backup over this target's database: its SHA-256 verified first, "
        "a safety backup of the database taken, pg_restore --clean --if-exists --no-owner, "
        "then the row counts and integrity checks compared.",
        handler=restore,
        resolve_target=resolve_target,
        form_class=RestoreParamsForm,
        destructive=True,
        approval=Approval.PRODUCTION,
        soft_time_limit=settings.BACKUP_RESTORE_TIME_LIMIT_SECONDS,
        time_limit=settings.BACKUP_RESTORE_TIME_LIMIT_SECONDS + 120,
        summary=_restore_summary,
        command=_restore_command,
    )
)

register(
    OperationKind(
        name="backups.test_restore",
        icon="patch-check",
        label="Test restore",
        description="Proves a backup: restored into a scratch database created for it and "
        "dropped afterwards, its row counts and integrity checks compared, and the time the "
        "restore took recorded as the target's last verified restore.",
        handler=restore_into_scratch,
        resolve_target=resolve_target,
        form_class=ScratchRestoreParamsForm,
        # It only reads the target's backups: it does not hold the target.
        exclusive=False,
        soft_time_limit=settings.BACKUP_RESTORE_TIME_LIMIT_SECONDS,
        time_limit=settings.BACKUP_RESTORE_TIME_LIMIT_SECONDS + 120,
        summary=_test_restore_summary,
        command=_test_restore_command,
    )
)


# Registers backups.prune (it needs resolve_target above).
from apps.backups import pruning  # noqa: E402, F401
