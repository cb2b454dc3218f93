"""Bad input to restores, refused with a message before anything runs: no typed name, a wrong
one, an operator asking, skipping the safety backup of a database that is not empty, a
backup that is not good; and the admins' integrity check SQL, refused unless it is one
read-only SELECT returning one number (read first, then tried in a read-only transaction)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.backups.checks import ONE_SELECT, WRITES, clean_check_sql
from apps.backups.choices import BackupState
from apps.backups.forms import IntegrityCheckForm
from apps.backups.models import Backup, DatabaseTarget
from apps.operations import actions
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.backups.conftest import Server, make_local_storage, make_target, table_rows

RESTORE = "backups.restore"


def add_backup(target: DatabaseTarget, state: str = BackupState.SUCCEEDED) -> Backup:
    finished = timezone.now() - timedelta(hours=1)
    return Backup.objects.create(
        target=target,
        storage=target.storage,
        key=f"k/{Backup.objects.count()}",
        state=state,
        started_at=finished - timedelta(seconds=5),
        finished_at=finished,
        size_bytes=1000,
        sha256="a" * 64,
        row_counts={"public.customers": 3},
    )


@pytest.fixture
def source(db: None, pg_server: Server, source_db: str, tmp_path: Path) -> DatabaseTarget:
    """A target whose database has tables and rows: not empty."""
    return make_target(pg_server, source_db, make_local_storage(tmp_path), name="Orders DB")


@pytest.fixture
def empty_db(pg_server: Server) -> Iterator[str]:
    name = pg_server.create_database("opsportal_bk_empty")
    yield name
    pg_server.drop_database(name)


def params(backup: Backup, typed: str, **extra: Any) -> dict[str, Any]:
    return {"backup": backup.pk, "confirm_database": typed, **extra}


def test_a_restore_without_the_typed_name_is_refused(admin: Any, source: DatabaseTarget) -> None:
    backup = add_backup(source)
    with pytest.raises(actions.InvalidParameters) as refused:
        actions.do_start_operation(admin, RESTORE, str(source.pk), {"backup": backup.pk}, "drill")
    assert "confirm_database: This field is required." in refused.value.message
    assert not Operation.objects.exists()
    assert AuditEvent.objects.filter(action="operation.invalid", actor=admin).exists()


def test_a_restore_with_a_wrong_typed_name_is_refused(admin: Any, source: DatabaseTarget) -> None:
    backup = add_backup(source)
    db = source.database
    for typed in ("orders", db.upper(), f" {db}", f"{db} ", f"{db}; DROP TABLE x", f"$({db})"):
        with pytest.raises(actions.InvalidParameters) as refused:
            actions.do_start_operation(
                admin, RESTORE, str(source.pk), params(backup, typed), "drill"
            )
        assert list(refused.value.errors) == ["confirm_database"]
        assert f"type {db} exactly. Nothing was done." in refused.value.message
    assert not Operation.objects.exists()


def test_an_operator_may_not_restore(operator: Any, source: DatabaseTarget) -> None:
    backup = add_backup(source)
    with pytest.raises(actions.OperationRefused) as refused:
        actions.do_start_operation(
            operator, RESTORE, str(source.pk), params(backup, source.database), "drill"
        )
    assert "Your role does not allow Restore a backup" in refused.value.message
    assert not Operation.objects.exists()
    assert AuditEvent.objects.get(action="operation.refused").outcome == "denied"


def test_the_safety_backup_cannot_be_skipped_on_a_database_with_data(
    admin: Any, source: DatabaseTarget
) -> None:
    backup = add_backup(source)
    with pytest.raises(actions.InvalidParameters) as refused:
        actions.do_start_operation(
            admin,
            RESTORE,
            str(source.pk),
            params(backup, source.database, skip_safety_backup=True),
            "drill",
        )
    message = refused.value.message
    assert f"{source.database} is not empty (" in message
    assert "a safety backup is required" in message


def test_the_safety_backup_may_be_skipped_on_an_empty_database_or_a_scratch_target(
    admin: Any, source: DatabaseTarget, pg_server: Server, empty_db: str
) -> None:
    backup = add_backup(source)
    empty = make_target(pg_server, empty_db, source.storage, name="Empty")
    scratch = make_target(pg_server, "postgres", source.storage, name="Scratch", is_scratch=True)
    for into in (empty, scratch):
        operation = actions.do_start_operation(
            admin,
            RESTORE,
            str(into.pk),
            params(backup, into.database, skip_safety_backup=True),
            "drill",
        )
        assert operation.state == State.QUEUED
        assert operation.params == {
            "backup": backup.pk,
            "confirm_database": into.database,
            "skip_safety_backup": True,
        }


def test_a_restore_over_production_waits_for_a_second_admin(
    admin: Any, source: DatabaseTarget
) -> None:
    DatabaseTarget.objects.filter(pk=source.pk).update(is_production=True)
    backup = add_backup(source)
    operation = actions.do_start_operation(
        admin, RESTORE, str(source.pk), params(backup, source.database), "restore after incident"
    )
    assert operation.state == State.AWAITING_APPROVAL
    with pytest.raises(actions.OperationRefused, match="A reason is required on production"):
        actions.do_start_operation(
            admin, RESTORE, str(source.pk), params(backup, source.database), ""
        )


def test_only_a_good_backup_can_be_restored(admin: Any, source: DatabaseTarget) -> None:
    failed = add_backup(source, BackupState.FAILED)
    with pytest.raises(actions.InvalidParameters) as refused:
        actions.do_start_operation(
            admin, RESTORE, str(source.pk), params(failed, source.database), "drill"
        )
    assert "only a good (succeeded) backup can be restored" in refused.value.message
    with pytest.raises(actions.InvalidParameters, match="There is no backup #999999"):
        actions.do_start_operation(
            admin,
            RESTORE,
            str(source.pk),
            {"backup": 999999, "confirm_database": source.database},
            "drill",
        )


# --- The admins' integrity checks ----------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select count(*) from users;",
        "  WITH a AS (SELECT 1 AS n) SELECT n FROM a",
        "-- how many\nSELECT count(*) FROM users",
        "/* total */ SELECT sum(total) FROM orders",
    ],
)
def test_it_reads_one_select_as_acceptable(sql: str) -> None:
    assert clean_check_sql(sql) == sql.strip().rstrip(";")


@pytest.mark.parametrize(
    "sql, why",
    [
        ("DROP TABLE users", "DROP is refused"),
        ("delete from users", "DELETE is refused"),
        ("UPDATE users SET admin = true", "UPDATE is refused"),
        ("INSERT INTO users VALUES (1)", "INSERT is refused"),
        ("CREATE TABLE x (id int)", "CREATE is refused"),
        ("SELECT 1; DROP TABLE users", "Only one statement"),
        ("-- nothing but a comment", "Write the query."),
        ("", "Write the query."),
    ],
)
def test_it_refuses_what_is_not_one_select(sql: str, why: str) -> None:
    with pytest.raises(ValidationError) as refused:
        clean_check_sql(sql)
    assert why in refused.value.messages[0]


def check_form(target: DatabaseTarget, sql: str, **bounds: Any) -> IntegrityCheckForm:
    data = {"name": "a check", "sql": sql, "min_value": "", "max_value": "", **bounds}
    return IntegrityCheckForm(data, target=target)


@pytest.mark.parametrize(
    "sql, message",
    [
        ("WITH gone AS (DELETE FROM customers RETURNING 1) SELECT count(*) FROM gone", WRITES),
        ("SELECT nextval('orders_id_seq')", WRITES),
        ("SELECT name FROM customers", "several rows of 1 column"),
        ("SELECT 1, 2", "one row of 2 columns"),
        ("SELECT name FROM customers WHERE id = 1", "It returned 'Ada', not a number."),
        ("SELECT NULL::integer", "It returned NULL, not a number."),
        ("SELECT count(*) FROM nowhere", 'It failed: relation "nowhere" does not exist'),
        ("SELECT 1 FROM customers) AS x; SELECT (1", "Only one statement"),
        ("SELECT 1 FROM customers) x JOIN (SELECT 1", "as a single SELECT"),
    ],
)
def test_a_check_is_tried_read_only_on_the_database_before_it_is_saved(
    source: DatabaseTarget, pg_server: Server, source_db: str, sql: str, message: str
) -> None:
    before = table_rows(pg_server, source_db)
    form = check_form(source, sql, min_value="0")
    assert not form.is_valid()
    assert message in form.errors["sql"][0]
    assert table_rows(pg_server, source_db) == before


def test_a_check_must_pass_on_the_database_it_describes(source: DatabaseTarget) -> None:
    form = check_form(source, "SELECT count(*) FROM customers", min_value="5")
    assert not form.is_valid()
    assert "it returns 3 now, outside the expected range (≥ 5)" in form.errors["sql"][0]

    no_range = check_form(source, "SELECT count(*) FROM customers")
    assert not no_range.is_valid()
    assert "Give the expected range" in no_range.errors["min_value"][0]

    upside_down = check_form(source, "SELECT 1", min_value="5", max_value="1")
    assert not upside_down.is_valid()
    assert "below the lower one" in upside_down.errors["max_value"][0]

    good = check_form(source, "SELECT count(*) FROM customers;", min_value="1", max_value="3")
    assert good.is_valid(), good.errors
    assert good.cleaned_data["sql"] == "SELECT count(*) FROM customers"
    assert good.tried_value == "3"


def test_a_check_on_an_unreachable_database_is_not_saved(db: None, tmp_path: Path) -> None:
    storage = make_local_storage(tmp_path)
    nowhere = DatabaseTarget.objects.create(
        name="nowhere", host="127.0.0.1", port=9, database="x", user="x", storage=storage
    )
    form = check_form(nowhere, "SELECT 1", min_value="1")
    assert not form.is_valid()
    assert "It could not be tried on x" in form.errors["sql"][0]
    assert ONE_SELECT not in form.errors["sql"][0]


def test_files_left_by_a_dead_restore_are_swept(tmp_path: Path) -> None:
    import os
    import time

    from apps.backups.restores import _sweep_stale_dumps

    stale, live = tmp_path / "restore-1-abc.dump", tmp_path / "restore-2-def.dump"
    for path in (stale, live):
        path.write_bytes(b"dump")
    long_ago = time.time() - settings.BACKUP_RESTORE_TIME_LIMIT_SECONDS - 3600
    os.utime(stale, (long_ago, long_ago))
    said: list[str] = []

    class Said:
        def log(self, message: str, level: str = "info") -> None:
            said.append(message)

    _sweep_stale_dumps(tmp_path, Said())  # type: ignore[arg-type]

    assert not stale.exists() and live.exists()
    assert said == ["Removed restore-1-abc.dump, left behind by a restore that died."]
