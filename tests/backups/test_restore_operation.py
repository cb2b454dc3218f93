"""The restore operation end to end: a backup taken by the backup operation (real pg_dump, into
moto's S3 over HTTP or a directory) is restored by a real Celery worker through the
operations engine into another database, and every table's rows compared with the source;
the safety backup, the checksum verified before anything is touched, and the integrity
checks with their figures."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from apps.backups.choices import BackupState, RestoreKind, RestoreState
from apps.backups.models import Backup, DatabaseTarget, IntegrityCheck, RestoreRun
from apps.backups.restores import (
    CHECKSUM_MISMATCH,
    RestoreFailed,
    VerifiedDump,
    run_pg_restore,
)
from apps.operations import actions
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.backups.conftest import (
    BUCKET,
    EXPECTED_COUNTS,
    Server,
    make_local_storage,
    make_s3_storage,
    make_target,
    table_rows,
)
from tests.backups.test_backup_operation import back_up
from tests.backups.test_sync import Recorder
from tests.support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("celery_worker")

# A database with something in it already: the restore must replace "customers", and the
# safety backup must hold what was there.
OCCUPIED_SQL = """
CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, email text);
INSERT INTO customers VALUES (99, 'written after the backup', NULL);
CREATE TABLE local_notes (note text);
INSERT INTO local_notes VALUES ('not in the backup');
"""


def run(actor: Any, kind: str, target: DatabaseTarget, params: dict[str, Any]) -> Operation:
    """Start an operation as ``actor`` and wait for the worker to end it."""
    operation = actions.do_start_operation(actor, kind, str(target.pk), params, "restore drill")
    wait_for(
        lambda: Operation.objects.get(pk=operation.pk).is_final,
        timeout=120,
        what=f"{kind} to end",
    )
    operation.refresh_from_db()
    return operation


def restore(
    actor: Any, backup: Backup, into: DatabaseTarget, *, skip_safety_backup: bool = False
) -> Operation:
    params = {
        "backup": backup.pk,
        "confirm_database": into.database,
        "skip_safety_backup": skip_safety_backup,
    }
    return run(actor, "backups.restore", into, params)


def log_of(operation: Operation) -> str:
    return "\n".join(operation.log_lines.values_list("message", flat=True))


def source_tables(server: Server, database: str, source_db: str) -> dict[str, Any]:
    """The rows of the source's tables as found in ``database``."""
    found = table_rows(server, database)
    return {table: found.get(table) for table in table_rows(server, source_db)}


def leftover_restore_files(backup: Backup) -> list[Path]:
    return list(Path(settings.BACKUP_RESTORE_DIR).glob(f"restore-{backup.pk}-*"))


@pytest.fixture
def occupied_db(pg_server: Server) -> Any:
    name = pg_server.create_database("opsportal_bk_dest", OCCUPIED_SQL)
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def empty_db(pg_server: Server) -> Any:
    name = pg_server.create_database("opsportal_bk_empty")
    yield name
    pg_server.drop_database(name)


def test_it_restores_from_s3_over_a_database_after_a_safety_backup(
    admin: Any,
    pg_server: Server,
    source_db: str,
    occupied_db: str,
    s3: Any,
    s3_endpoint: str,
) -> None:
    storage = make_s3_storage(s3_endpoint, prefix="prod/db")
    source = make_target(pg_server, source_db, storage, name="Orders DB")
    backup = Backup.objects.get(operation=back_up(admin, source))
    into = make_target(pg_server, occupied_db, storage, name="Orders copy")

    operation = restore(admin, backup, into)

    assert operation.state == State.SUCCEEDED, operation.error
    assert source_tables(pg_server, occupied_db, source_db) == table_rows(pg_server, source_db)
    assert table_rows(pg_server, occupied_db)["public.local_notes"] == [("not in the backup",)]
    run_ = RestoreRun.objects.get(operation=operation)
    assert run_.kind == RestoreKind.RESTORE
    assert run_.state == RestoreState.PASSED
    assert run_.target == into and run_.backup == backup and run_.database == occupied_db
    assert run_.restore_seconds is not None and run_.restore_seconds > 0
    assert {check["name"]: check["value"] for check in run_.checks} == {
        table: str(rows) for table, rows in EXPECTED_COUNTS.items()
    }
    assert all(check["passed"] for check in run_.checks)
    # The safety backup holds what the database held before: one customer, one note.
    safety = run_.safety_backup
    assert safety is not None and safety.state == BackupState.SUCCEEDED
    assert safety.target == into
    assert safety.note == f"Safety backup before restore operation #{operation.pk}"
    assert safety.row_counts == {"public.customers": 1, "public.local_notes": 1}
    assert s3.head_object(Bucket=BUCKET, Key=safety.key)["ContentLength"] == safety.size_bytes

    log = log_of(operation)
    assert "Checksum verified" in log
    assert "--clean --if-exists --no-owner" in log
    assert "✔ rows of public.orders: 250, expected 250 (at backup time)" in log
    assert "Not in the backup, left as they were: public.local_notes" in log
    assert "all 4 integrity checks passed" in operation.status_text
    assert leftover_restore_files(backup) == []


def test_it_restores_from_a_directory_into_an_empty_database_with_the_admins_checks(
    admin: Any, pg_server: Server, source_db: str, empty_db: str, backup_dir: Path
) -> None:
    storage = make_local_storage(backup_dir)
    source = make_target(pg_server, source_db, storage, name="Orders DB")
    IntegrityCheck.objects.create(
        target=source, name="customers", sql="SELECT count(*) FROM customers", min_value=3
    )
    IntegrityCheck.objects.create(
        target=source,
        name="order total",
        sql="SELECT sum(total) FROM orders -- in euros",
        min_value=1,
        max_value=100000,
    )
    backup = Backup.objects.get(operation=back_up(admin, source))
    into = make_target(pg_server, empty_db, storage, name="Empty copy")

    operation = restore(admin, backup, into, skip_safety_backup=True)

    assert operation.state == State.SUCCEEDED, operation.error
    assert table_rows(pg_server, empty_db) == table_rows(pg_server, source_db)
    run_ = RestoreRun.objects.get(operation=operation)
    assert run_.safety_backup is None
    assert not Backup.objects.filter(target=into).exists()
    checks = {check["name"]: check for check in run_.checks if check["kind"] == "sql"}
    assert checks["customers"]["value"] == "3" and checks["customers"]["passed"]
    assert checks["order total"]["value"] == "39218.75"
    assert checks["order total"]["expected"] == "between 1 and 100000"
    log = log_of(operation)
    assert "No safety backup: skipped on request (the database is empty)." in log
    assert "✔ check “order total”: 39218.75, expected between 1 and 100000" in log


def test_a_failing_check_fails_the_restore_with_its_figures(
    admin: Any, pg_server: Server, source_db: str, empty_db: str, backup_dir: Path
) -> None:
    storage = make_local_storage(backup_dir)
    source = make_target(pg_server, source_db, storage)
    IntegrityCheck.objects.create(
        target=source, name="enough customers", sql="SELECT count(*) FROM customers", min_value=10
    )
    backup = Backup.objects.get(operation=back_up(admin, source))
    into = make_target(pg_server, empty_db, storage, is_scratch=True)

    operation = restore(admin, backup, into, skip_safety_backup=True)

    assert operation.state == State.FAILED
    assert "1 of 5 integrity checks failed (enough customers)" in operation.error
    run_ = RestoreRun.objects.get(operation=operation)
    assert run_.state == RestoreState.FAILED
    assert [check["name"] for check in run_.failed_checks] == ["enough customers"]
    assert "✘ check “enough customers”: 3, expected ≥ 10" in log_of(operation)


def test_an_altered_backup_is_refused_before_the_target_is_touched(
    admin: Any,
    pg_server: Server,
    source_db: str,
    occupied_db: str,
    s3: Any,
    s3_endpoint: str,
) -> None:
    storage = make_s3_storage(s3_endpoint)
    source = make_target(pg_server, source_db, storage)
    backup = Backup.objects.get(operation=back_up(admin, source))
    stored = bytearray(s3.get_object(Bucket=BUCKET, Key=backup.key)["Body"].read())
    stored[len(stored) // 2] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=backup.key, Body=bytes(stored))
    into = make_target(pg_server, occupied_db, storage)
    before = table_rows(pg_server, occupied_db)

    operation = restore(admin, backup, into)

    assert operation.state == State.FAILED
    assert operation.error == CHECKSUM_MISMATCH
    assert table_rows(pg_server, occupied_db) == before
    assert not Backup.objects.filter(target=into).exists()  # not even a safety backup
    run_ = RestoreRun.objects.get(operation=operation)
    assert run_.state == RestoreState.FAILED and run_.error == CHECKSUM_MISMATCH
    assert f"the backup recorded {backup.size_bytes} bytes" in log_of(operation)
    assert leftover_restore_files(backup) == []


def test_a_database_name_with_shell_characters_never_reaches_a_program(
    admin: Any, pg_server: Server, source_db: str, backup_dir: Path
) -> None:
    storage = make_local_storage(backup_dir)
    source = make_target(pg_server, source_db, storage)
    backup = Backup.objects.get(operation=back_up(admin, source))
    witness = Path(f"/tmp/pw{uuid.uuid4().hex[:8]}")
    into = make_target(pg_server, "postgres", storage, is_scratch=True)
    # Written behind the forms' back, as a broken admin script might.
    hostile = f"x;touch {witness}"
    DatabaseTarget.objects.filter(pk=into.pk).update(database=hostile)

    operation = run(
        admin,
        "backups.restore",
        into,
        {"backup": backup.pk, "confirm_database": hostile, "skip_safety_backup": True},
    )

    assert operation.state == State.FAILED
    assert "is refused" in operation.error
    assert not witness.exists()
    assert not RestoreRun.objects.filter(target=into).exists()


LEDGER_SQL = """
CREATE TABLE ledger (id integer PRIMARY KEY, entry text NOT NULL);
INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 5000) AS g;
"""


@pytest.fixture
def ledger_db(pg_server: Server) -> Any:
    """A database of one table: its restore reads the dump through a pipe."""
    name = pg_server.create_database("opsportal_bk_ledger", LEDGER_SQL)
    yield name
    pg_server.drop_database(name)


def test_a_one_table_database_is_restored_through_a_pipe_in_one_transaction(
    admin: Any, pg_server: Server, ledger_db: str, occupied_db: str, backup_dir: Path
) -> None:
    storage = make_local_storage(backup_dir)
    source = make_target(pg_server, ledger_db, storage)
    backup = Backup.objects.get(operation=back_up(admin, source))
    into = make_target(pg_server, occupied_db, storage, name="Ledger copy")

    operation = restore(admin, backup, into)

    assert operation.state == State.SUCCEEDED, operation.error
    assert (
        table_rows(pg_server, occupied_db)["public.ledger"]
        == (table_rows(pg_server, ledger_db)["public.ledger"])
    )
    log = log_of(operation)
    assert "zstd -dc <verified dump> | " in log and " --single-transaction" in log
    assert "--jobs" not in log
    assert leftover_restore_files(backup) == []


def test_a_piped_restore_that_fails_half_way_leaves_the_target_as_it_was(
    admin: Any, pg_server: Server, ledger_db: str, occupied_db: str, backup_dir: Path
) -> None:
    """The stream is cut in the middle of the table's data, after pg_restore has dropped and
    recreated what it restores: one transaction, so all of it is rolled back."""
    storage = make_local_storage(backup_dir)
    source = make_target(pg_server, ledger_db, storage)
    backup = Backup.objects.get(operation=back_up(admin, source))
    stored = (backup_dir / backup.key).read_bytes()
    cut = backup_dir / "cut.dump.zst"
    cut.write_bytes(stored[: len(stored) * 2 // 3])
    into = make_target(pg_server, occupied_db, storage)
    before = table_rows(pg_server, occupied_db)

    with pytest.raises(RestoreFailed, match="pg_restore failed") as failed:
        run_pg_restore(VerifiedDump(cut, tables=1, zstd=True), into, Recorder(), server_major=15)

    assert "the dump ends in the middle of its zstd stream" in str(failed.value)
    assert table_rows(pg_server, occupied_db) == before
