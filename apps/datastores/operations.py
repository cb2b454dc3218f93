"""The datastore operations, each audited with what it acted on.

PostgreSQL (on the backups app's database targets, ``backups.target``):
- ``datastores.pg_cancel``: pg_cancel_backend(pid), the query stops, the session stays;
- ``datastores.pg_terminate`` (destructive): pg_terminate_backend(pid), the session ends;
  both refuse the portal's own connections and a pid that does not exist, and record the pid
  and the query it was running;
- ``datastores.pg_vacuum``: VACUUM (ANALYZE) of one existing table or of the database, with
  progress from pg_stat_progress_vacuum.

Redis (``datastores.redis``):
- ``datastores.redis_delete_keys`` (destructive): SCAN + UNLINK in batches of 1000;
- ``datastores.redis_clear_failed``: the failed jobs of a BullMQ queue;
- ``datastores.redis_bgsave``: BGSAVE, waiting until the save is done;
- ``datastores.redis_flushdb`` (destructive): FLUSHDB of the target's database number.

None of them holds its target exclusively: terminating a blocker must stay possible while a
backup or a long VACUUM runs on the same database.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import psycopg
from django.template.defaultfilters import pluralize
from django.urls import reverse

from apps.audit.records import AuditTarget, record
from apps.backups.models import DatabaseTarget
from apps.backups.postgres import DatabaseProblem
from apps.datastores import postgres
from apps.datastores.forms import (
    BackendForm,
    DeleteKeysForm,
    FailedQueueForm,
    FlushForm,
    VacuumForm,
)
from apps.datastores.models import RedisTarget
from apps.datastores.redis_client import (
    SAMPLE_SIZE,
    RedisProblem,
    clear_bullmq_failed,
    client_for,
    delete_pattern,
    preview_pattern,
    talking_to,
)
from apps.operations.models import Operation
from apps.operations.progress import OperationFailed, Reporter
from apps.operations.registry import OperationKind, Target, TargetNotFound, register

PG_CANCEL = "datastores.pg_cancel"
PG_TERMINATE = "datastores.pg_terminate"
PG_VACUUM = "datastores.pg_vacuum"
REDIS_DELETE_KEYS = "datastores.redis_delete_keys"
REDIS_CLEAR_FAILED = "datastores.redis_clear_failed"
REDIS_BGSAVE = "datastores.redis_bgsave"
REDIS_FLUSHDB = "datastores.redis_flushdb"
VACUUM_POLL_SECONDS = 0.5


# --- targets ----------------------------------------------------------------------------------


def resolve_database(target_id: str) -> Target:
    found = (
        DatabaseTarget.objects.filter(pk=int(target_id)).first() if target_id.isdigit() else None
    )
    if found is None:
        raise TargetNotFound(f"There is no database target {target_id!r}.")
    # The same target as the backups' (its operations are listed together), seen from here.
    return replace(found.as_operation_target(), url=reverse("datastores:postgres", args=[found.pk]))


def resolve_redis(target_id: str) -> Target:
    found = RedisTarget.objects.filter(pk=int(target_id)).first() if target_id.isdigit() else None
    if found is None:
        raise TargetNotFound(f"There is no Redis target {target_id!r}.")
    return found.as_operation_target()


def _database_of(operation: Operation) -> DatabaseTarget:
    found = DatabaseTarget.objects.filter(pk=operation.target_id).first()
    if found is None:
        raise OperationFailed(f"{operation.target_label} is no longer registered.")
    return found


def _redis_of(operation: Operation) -> RedisTarget:
    found = RedisTarget.objects.filter(pk=operation.target_id).first()
    if found is None:
        raise OperationFailed(f"{operation.target_label} is no longer registered.")
    return found


def _audit(operation: Operation, action: str, data: dict[str, Any]) -> None:
    record(
        action,
        actor=operation.requested_by,
        target=AuditTarget(operation.target_type, operation.target_id, operation.target_label),
        reason=operation.reason,
        data={"kind": operation.kind, **data},
        operation_id=operation.pk,
    )


# --- cancel and terminate ---------------------------------------------------------------------


def _signal(operation: Operation, reporter: Reporter, *, terminate: bool) -> None:
    target = _database_of(operation)
    pid = int(operation.params["pid"])
    verb = "Terminating" if terminate else "Cancelling the query of"
    reporter.step(10, f"{verb} pid {pid} on {target.dsn_label}")
    try:
        backend, accepted = postgres.signal_backend(target, pid, terminate=terminate)
    except (DatabaseProblem, postgres.BackendRefused) as exc:
        raise OperationFailed(str(exc)) from None
    except psycopg.Error as exc:
        raise OperationFailed(f"The server refused: {exc}") from None
    reporter.log(f"{backend.describe()}: {backend.query}")
    _audit(
        operation,
        "datastores.backend_terminated" if terminate else "datastores.query_cancelled",
        {
            "pid": pid,
            "query": backend.query,
            "user": backend.usename,
            "database": backend.datname,
            "application": backend.application_name,
            "state": backend.state,
            "accepted": accepted,
        },
    )
    if not accepted:
        raise OperationFailed(
            f"The server did not {'terminate' if terminate else 'cancel'} pid {pid} (it may have "
            "ended meanwhile, or this user may not signal it)."
        )
    done = "terminated" if terminate else "had its query cancelled"
    reporter.step(100, f"pid {pid} {done}.")


def cancel_backend(operation: Operation, reporter: Reporter) -> None:
    _signal(operation, reporter, terminate=False)


def terminate_backend(operation: Operation, reporter: Reporter) -> None:
    _signal(operation, reporter, terminate=True)


def _backend_summary(verb: str) -> Any:
    def summary(target: Target, params: dict[str, Any]) -> str:
        pid = int(params["pid"])
        try:
            backend = postgres.look_up_backend(DatabaseTarget.objects.get(pk=target.id), pid)
        except (DatabaseProblem, postgres.BackendRefused) as exc:
            return str(exc)
        query = backend.query if len(backend.query) <= 500 else backend.query[:500] + "…"
        return f"{verb} {backend.describe()}, running: {query or '(no query)'}"

    return summary


def _backend_command(function: str) -> Any:
    def command(target: Target, params: dict[str, Any]) -> str:
        return f"SELECT {function}({int(params['pid'])});"

    return command


# --- VACUUM -----------------------------------------------------------------------------------


def vacuum(operation: Operation, reporter: Reporter) -> None:
    """VACUUM (ANALYZE) in a thread of its own connection while this one reports its progress
    from pg_stat_progress_vacuum; a cancel of the operation cancels the statement."""
    target = _database_of(operation)
    name = operation.params.get("table") or ""
    try:
        with postgres.connect(target, autocommit=True) as watcher:
            table = postgres.find_table(watcher, name) if name else None
            statement = postgres.vacuum_statement(table)
            worker = postgres.connect(target, autocommit=True)
    except postgres.TableRefused as exc:
        raise OperationFailed(str(exc)) from None
    except DatabaseProblem as exc:
        raise OperationFailed(str(exc)) from None
    what = f"{table[0]}.{table[1]}" if table else f"the whole database {target.database}"
    outcome: dict[str, BaseException | None] = {"error": None}
    vacuum_pid = worker.info.backend_pid

    def run() -> None:
        try:
            worker.execute(statement)
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc
        finally:
            worker.close()

    reporter.step(1, f"VACUUM (ANALYZE) of {what} (pid {vacuum_pid})")
    thread = threading.Thread(target=run, name=f"vacuum-{operation.pk}", daemon=True)
    thread.start()
    try:
        with postgres.connect(target, autocommit=True) as watcher:
            last = ""
            while thread.is_alive():
                thread.join(VACUUM_POLL_SECONDS)
                row = watcher.execute(
                    "SELECT relid::regclass::text AS relation, phase, heap_blks_total,"
                    " heap_blks_scanned FROM pg_stat_progress_vacuum WHERE pid = %s",
                    (vacuum_pid,),
                ).fetchone()
                if row is None:
                    reporter.check_cancelled()
                    continue
                total = row["heap_blks_total"] or 0
                percent = int(100 * (row["heap_blks_scanned"] or 0) / total) if total else 0
                status = f"{row['relation']}: {row['phase']}, {percent} % of {total} blocks scanned"
                if status != last:
                    # The whole database goes table by table: the bar is the current table's.
                    reporter.step(max(1, min(99, percent)), status)
                    last = status
                else:
                    reporter.check_cancelled()
    except BaseException:
        # Cancelled or timed out here: the statement must not run on without us.
        with postgres.connect(target, autocommit=True) as stopper:
            stopper.execute("SELECT pg_cancel_backend(%s)", (vacuum_pid,))
        thread.join(10)
        raise
    error = outcome["error"]
    if error is not None:
        raise OperationFailed(f"VACUUM failed: {error}")
    _audit(operation, "datastores.vacuumed", {"table": name or None, "database": target.database})
    reporter.step(100, f"VACUUM (ANALYZE) of {what} done.")


def _vacuum_summary(target: Target, params: dict[str, Any]) -> str:
    table = params.get("table")
    what = f"the table {table}" if table else "every table of the database"
    return (
        f"VACUUM (ANALYZE) {what} on {target.label}: reclaims dead rows and refreshes the "
        "statistics, without locking out reads or writes."
    )


def _vacuum_command(target: Target, params: dict[str, Any]) -> str:
    table = params.get("table")
    if not table:
        return "VACUUM (ANALYZE);"
    schema, name = table.split(".", 1)
    return f'VACUUM (ANALYZE) "{schema}"."{name}";'


# --- Redis ------------------------------------------------------------------------------------


def delete_keys(operation: Operation, reporter: Reporter) -> None:
    target = _redis_of(operation)
    pattern = str(operation.params["pattern"])
    client = client_for(target)
    reporter.step(1, f"Deleting the keys matching {pattern!r} in {target.label} (SCAN + UNLINK)")

    def on_batch(progress: Any) -> None:
        if progress.batches % 20 == 0:
            reporter.step(50, f"{progress.deleted} key{pluralize(progress.deleted)} deleted so far")

    try:
        with talking_to(target):
            outcome = delete_pattern(client, pattern, on_batch)
    except RedisProblem as exc:
        raise OperationFailed(str(exc)) from None
    finally:
        client.close()
    _audit(
        operation,
        "datastores.keys_deleted",
        {
            "pattern": pattern,
            "deleted": outcome.deleted,
            "batches": outcome.batches,
            "slowest_call_ms": round(outcome.slowest_call_ms, 2),
            "smallest_scan_count": outcome.smallest_count,
        },
    )
    reporter.step(
        100,
        f"Deleted {outcome.deleted} key{pluralize(outcome.deleted)} matching {pattern!r} in "
        f"{outcome.batches} batch{pluralize(outcome.batches, 'es')}; the longest single "
        f"command took {outcome.slowest_call_ms:.1f} ms.",
    )


def _delete_summary(target: Target, params: dict[str, Any]) -> str:
    pattern = str(params["pattern"])
    found = RedisTarget.objects.get(pk=target.id)
    client = client_for(found)
    try:
        with talking_to(found):
            preview = preview_pattern(client, pattern)
    except RedisProblem as exc:
        return f"Cannot preview: {exc}"
    finally:
        client.close()
    more = "" if preview.complete else " (at least: the count stopped early)"
    sample = ", ".join(preview.sample[:SAMPLE_SIZE]) or "none"
    return (
        f"Delete {preview.count} key{pluralize(preview.count)}{more} matching {pattern!r} in "
        f"{found.label}, by SCAN in batches of 1000 and UNLINK. Sample: {sample}."
    )


def _delete_command(target: Target, params: dict[str, Any]) -> str:
    found = RedisTarget.objects.get(pk=target.id)
    return (
        f"redis-cli -u {found.url} -n {found.db} --scan --pattern '{params['pattern']}' "
        "| xargs -n 1000 redis-cli -n "
        f"{found.db} UNLINK"
    )


def clear_failed(operation: Operation, reporter: Reporter) -> None:
    target = _redis_of(operation)
    queue = str(operation.params["queue"])
    client = client_for(target)
    try:
        with talking_to(target):
            removed = clear_bullmq_failed(client, queue)
    except RedisProblem as exc:
        raise OperationFailed(str(exc)) from None
    finally:
        client.close()
    _audit(operation, "datastores.failed_jobs_cleared", {"queue": queue, "removed": removed})
    reporter.step(100, f"Removed {removed} failed job{pluralize(removed)} of {queue}.")


def bgsave(operation: Operation, reporter: Reporter) -> None:
    target = _redis_of(operation)
    client = client_for(target)
    try:
        with talking_to(target):
            before = client.lastsave()
            client.bgsave()
            reporter.step(10, "BGSAVE started")
            while True:
                info = client.info("persistence")
                if not info.get("rdb_bgsave_in_progress") and client.lastsave() != before:
                    break
                if not info.get("rdb_bgsave_in_progress") and info.get(
                    "rdb_last_bgsave_status"
                ) not in (None, "ok"):
                    break
                reporter.wait(0.5)
            status = info.get("rdb_last_bgsave_status", "?")
    except RedisProblem as exc:
        raise OperationFailed(str(exc)) from None
    finally:
        client.close()
    _audit(operation, "datastores.bgsave", {"status": status})
    if status != "ok":
        raise OperationFailed(f"BGSAVE ended with status {status!r}: see the Redis log.")
    reporter.step(100, "BGSAVE done: the RDB snapshot is written.")


def flushdb(operation: Operation, reporter: Reporter) -> None:
    target = _redis_of(operation)
    if int(operation.params["confirm_db"]) != target.db:
        raise OperationFailed("The target's database number changed since it was confirmed.")
    client = client_for(target)
    try:
        with talking_to(target):
            keys = int(client.dbsize())
            # ASYNC: the server frees the memory in a background thread, not in its main loop.
            client.flushdb(asynchronous=True)
    except RedisProblem as exc:
        raise OperationFailed(str(exc)) from None
    finally:
        client.close()
    _audit(operation, "datastores.flushdb", {"db": target.db, "keys": keys})
    reporter.step(100, f"FLUSHDB of database {target.db}: {keys} key{pluralize(keys)} deleted.")


def _redis_cli(target: Target, command: str) -> str:
    found = RedisTarget.objects.get(pk=target.id)
    return f"redis-cli -u {found.url} -n {found.db} {command}"


register(
    OperationKind(
        name=PG_CANCEL,
        label="Cancel a query",
        description="pg_cancel_backend: the backend's current query stops; its session stays.",
        handler=cancel_backend,
        resolve_target=resolve_database,
        form_class=BackendForm,
        exclusive=False,
        soft_time_limit=30,
        time_limit=45,
        icon="stop-circle",
        summary=_backend_summary("Cancel the query of"),
        command=_backend_command("pg_cancel_backend"),
    )
)
register(
    OperationKind(
        name=PG_TERMINATE,
        label="Terminate a backend",
        description="pg_terminate_backend: the session ends and its transaction rolls back.",
        handler=terminate_backend,
        resolve_target=resolve_database,
        form_class=BackendForm,
        destructive=True,
        exclusive=False,
        soft_time_limit=30,
        time_limit=45,
        icon="x-octagon",
        summary=_backend_summary("Terminate"),
        command=_backend_command("pg_terminate_backend"),
    )
)
register(
    OperationKind(
        name=PG_VACUUM,
        label="VACUUM (ANALYZE)",
        description="Reclaims dead rows and refreshes the planner's statistics.",
        handler=vacuum,
        resolve_target=resolve_database,
        form_class=VacuumForm,
        exclusive=False,
        soft_time_limit=3 * 3600,
        time_limit=3 * 3600 + 60,
        icon="recycle",
        summary=_vacuum_summary,
        command=_vacuum_command,
    )
)
register(
    OperationKind(
        name=REDIS_DELETE_KEYS,
        label="Delete keys by pattern",
        description="SCAN for the matching keys and UNLINK them, 1000 at a time.",
        handler=delete_keys,
        resolve_target=resolve_redis,
        form_class=DeleteKeysForm,
        destructive=True,
        exclusive=False,
        soft_time_limit=1800,
        time_limit=1860,
        icon="trash",
        summary=_delete_summary,
        command=_delete_command,
    )
)
register(
    OperationKind(
        name=REDIS_CLEAR_FAILED,
        label="Clear failed jobs",
        description="Remove the failed jobs of a BullMQ queue (their data and their ids).",
        handler=clear_failed,
        resolve_target=resolve_redis,
        form_class=FailedQueueForm,
        exclusive=False,
        soft_time_limit=600,
        time_limit=660,
        icon="trash3",
        summary=lambda target, params: (
            f"Remove every failed job of the BullMQ queue {params['queue']} on {target.label}."
        ),
        command=lambda target, params: _redis_cli(
            target, f"ZRANGE bull:{params['queue']}:failed 0 -1   # then UNLINK each job, ZREM"
        ),
    )
)
register(
    OperationKind(
        name=REDIS_BGSAVE,
        label="BGSAVE",
        description="Write an RDB snapshot now, in the background.",
        handler=bgsave,
        resolve_target=resolve_redis,
        exclusive=False,
        soft_time_limit=1800,
        time_limit=1860,
        icon="floppy",
        summary=lambda target, params: f"Write an RDB snapshot of {target.label} now (BGSAVE).",
        command=lambda target, params: _redis_cli(target, "BGSAVE"),
    )
)
register(
    OperationKind(
        name=REDIS_FLUSHDB,
        label="FLUSHDB",
        description="Delete every key of this database number.",
        handler=flushdb,
        resolve_target=resolve_redis,
        form_class=FlushForm,
        destructive=True,
        soft_time_limit=300,
        time_limit=360,
        icon="exclamation-octagon",
        summary=lambda target, params: (
            f"Delete EVERY key of {target.label} (FLUSHDB ASYNC). Other database numbers "
            "are untouched."
        ),
        command=lambda target, params: _redis_cli(target, "FLUSHDB ASYNC"),
    )
)
