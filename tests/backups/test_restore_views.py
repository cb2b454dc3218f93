"""The restore side of the backups pages for each persona: the buttons on a target's backups,
the page that starts a restore, the engine's form and confirmation for it (typed name,
summary, runbook command, password again), the last verified restore turning amber, and the
admins' integrity checks (created, refused, edited, removed: each audited)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.backups.choices import BackupState, RestoreKind, RestoreState
from apps.backups.models import Backup, DatabaseTarget, IntegrityCheck, RestoreRun
from apps.backups.restores import restore_jobs
from apps.operations.models import Operation
from tests.backups.conftest import Server, make_local_storage, make_target
from tests.backups.test_restore_input import add_backup
from tests.conftest import client_for

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def target(db: None, pg_server: Server, source_db: str, tmp_path: Path) -> DatabaseTarget:
    storage = make_local_storage(tmp_path, name="disk")
    return make_target(pg_server, source_db, storage, name="Orders DB", password="pw-Secret-1")


def add_run(
    target: DatabaseTarget, backup: Backup | None, state: str, started: datetime, **fields: Any
) -> RestoreRun:
    return RestoreRun.objects.create(
        kind=fields.pop("kind", RestoreKind.TEST),
        backup=backup,
        target=target,
        database=fields.pop("database", "opsportal_scratch_abc"),
        state=state,
        started_at=started,
        finished_at=started + timedelta(seconds=40),
        restore_seconds=fields.pop("restore_seconds", 31.4),
        checks=fields.pop(
            "checks",
            [
                {
                    "name": "public.customers",
                    "kind": "rows",
                    "value": "3",
                    "expected": "3 (at backup time)",
                    "passed": True,
                    "detail": "",
                }
            ],
        ),
        **fields,
    )


def test_admins_get_restore_and_operators_test_restore_on_each_good_backup(
    admin: Any, operator: Any, viewer: Any, target: DatabaseTarget
) -> None:
    good = add_backup(target)
    failed = add_backup(target, BackupState.FAILED)
    restore_link = f"/backups/backup/{good.pk}/restore/"
    test_link = f"/operations/start/backups.test_restore/?target={target.pk}&amp;p-backup={good.pk}"

    as_admin = client_for(admin).get(f"/backups/targets/{target.pk}/").content.decode()
    assert restore_link in as_admin and test_link in as_admin
    assert f"/backups/backup/{failed.pk}/restore/" not in as_admin
    assert "Add a check" in as_admin

    as_operator = client_for(operator).get(f"/backups/targets/{target.pk}/").content.decode()
    assert test_link in as_operator and restore_link not in as_operator
    assert "Add a check" not in as_operator

    as_viewer = client_for(viewer).get(f"/backups/targets/{target.pk}/").content.decode()
    assert "Test restore</a>" not in as_viewer and restore_link not in as_viewer
    assert "Never verified: no test restore yet" in as_viewer


def test_the_restore_page_offers_every_target_as_destination(
    admin: Any, operator: Any, target: DatabaseTarget, pg_server: Server
) -> None:
    backup = add_backup(target)
    other = make_target(pg_server, "postgres", target.storage, name="Analytics copy")
    client = client_for(admin)

    page = client.get(f"/backups/backup/{backup.pk}/restore/")
    content = page.content.decode()
    assert page.status_code == 200
    assert 'action="/operations/start/backups.restore/"' in content
    assert f'name="p-backup" value="{backup.pk}"' in content
    assert f'<option value="{target.pk}" selected>' in content
    assert f'<option value="{other.pk}">Analytics copy — postgres on' in content
    assert "<code>public.customers</code>: 3" in content
    assert "pw-Secret-1" not in content

    assert client.post(f"/backups/backup/{backup.pk}/restore/").status_code == 405
    failed = add_backup(target, BackupState.FAILED)
    assert client.get(f"/backups/backup/{failed.pk}/restore/").status_code == 404
    assert client_for(operator).get(f"/backups/backup/{backup.pk}/restore/").status_code == 403


def test_the_restore_form_asks_for_the_name_and_confirms_with_the_command(
    admin: Any, target: DatabaseTarget
) -> None:
    backup = add_backup(target)
    client = client_for(admin)
    start = "/operations/start/backups.restore/"

    form = client.get(f"{start}?target={target.pk}&p-backup={backup.pk}")
    content = form.content.decode()
    assert form.status_code == 200
    assert f'<option value="{backup.pk}" selected>#{backup.pk} · Orders DB' in content
    assert f"Type {target.database} exactly" in content

    fields = {"target": target.pk, "p-backup": backup.pk, "idempotency_key": "r" * 32}
    wrong = client.post(start, {**fields, "p-confirm_database": "orders", "reason": "drill"})
    assert wrong.status_code == 400
    assert f"type {target.database} exactly. Nothing was done." in wrong.content.decode()
    no_reason = client.post(start, {**fields, "p-confirm_database": target.database})
    assert no_reason.status_code == 400

    confirm = client.post(
        start, {**fields, "p-confirm_database": target.database, "reason": "drill"}
    )
    content = confirm.content.decode()
    assert confirm.status_code == 200
    assert "SHA-256 verified before anything is touched" in content
    assert f"Then a safety backup of {target.database} goes to disk." in content
    assert "sha256sum --check" in content
    assert f"pg_dump --format=custom -h {target.host}" in content
    # One table, compressed by the portal: restored through a pipe in one transaction.
    assert (
        "zstd -dc backup.dump.zst | pg_restore --clean --if-exists --no-owner "
        f"-h {target.host} -p {target.port} -U {target.user} --single-transaction "
        f"-d {target.database}"
    ) in content
    assert "btn-danger" in content and " autofocus>Go back</a>" in content
    assert "pw-Secret-1" not in content
    assert not Operation.objects.exists()


def test_an_operator_cannot_get_past_the_confirmation(
    operator: Any, target: DatabaseTarget
) -> None:
    backup = add_backup(target)
    response = client_for(operator).post(
        "/operations/start/backups.restore/",
        {
            "target": target.pk,
            "p-backup": backup.pk,
            "p-confirm_database": target.database,
            "reason": "drill",
            "idempotency_key": "o" * 32,
            "confirmed": "1",
        },
    )
    assert response.status_code == 400
    assert "Your role does not allow Restore a backup" in response.content.decode()
    assert not Operation.objects.exists()


def test_the_last_verified_restore_turns_amber_when_old_or_failed(
    viewer: Any, target: DatabaseTarget
) -> None:
    backup = add_backup(target)
    url = f"/backups/targets/{target.pk}/"
    with time_machine.travel(NOW, tick=False):
        add_run(target, backup, RestoreState.PASSED, NOW - timedelta(days=10))
        client = client_for(viewer)
        fresh = client.get(url).content.decode()
        assert "Verified</span>" in fresh and "restore took 31.4 s" in fresh
        assert "1 of 1 passed" in fresh
        assert "Verified</span>" in client.get("/backups/").content.decode()

    with time_machine.travel(NOW + timedelta(days=81), tick=False):
        client = client_for(viewer)
        stale = client.get(url).content.decode()
        assert "No verified restore within 90 days" in stale
        assert "bi-exclamation-triangle-fill" in stale
        listed = client.get("/backups/").content.decode()
        assert "No verified restore within 90 days" in listed

    with time_machine.travel(NOW, tick=False):
        add_run(
            target,
            backup,
            RestoreState.FAILED,
            NOW - timedelta(days=1),
            error="checksum mismatch: the backup was altered or damaged; the target was "
            "not touched",
        )
        failed = client_for(viewer).get(url).content.decode()
        assert "The last test restore failed" in failed
        assert "checksum mismatch" in failed


def test_a_real_restore_is_listed_but_is_not_a_verification(
    viewer: Any, admin: Any, target: DatabaseTarget
) -> None:
    add_run(
        target,
        add_backup(target),
        RestoreState.PASSED,
        timezone.now(),
        kind=RestoreKind.RESTORE,
        database=target.database,
        started_by=admin,
    )
    content = client_for(viewer).get(f"/backups/targets/{target.pk}/").content.decode()
    assert "<td>Restore</td>" in content
    assert "Never verified" in content


def test_the_target_page_costs_the_same_queries_whatever_the_restores(
    viewer: Any, operator: Any, target: DatabaseTarget, pg_server: Server
) -> None:
    other = make_target(pg_server, "postgres", target.storage, name="Other")
    client = client_for(viewer)
    url = f"/backups/targets/{target.pk}/"

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    add_run(target, add_backup(target), RestoreState.PASSED, timezone.now())
    IntegrityCheck.objects.create(target=target, name="c0", sql="SELECT 1", min_value=1)
    queries()  # the first request of a session also saves the session
    few = queries()
    for n in range(8):
        add_run(target, add_backup(other), RestoreState.FAILED, timezone.now(), started_by=operator)
        IntegrityCheck.objects.create(target=target, name=f"c{n + 1}", sql="SELECT 1", min_value=1)
    assert queries() == few


# --- Integrity checks ----------------------------------------------------------------------


def test_an_admin_adds_a_check_that_is_tried_first(admin: Any, target: DatabaseTarget) -> None:
    client = client_for(admin)
    url = f"/backups/targets/{target.pk}/checks/new/"
    assert client.get(url).status_code == 200

    refused = client.post(url, {"name": "wipe", "sql": "DELETE FROM customers", "min_value": "0"})
    assert refused.status_code == 400
    assert "DELETE is refused" in refused.content.decode()
    assert not IntegrityCheck.objects.exists()

    saved = client.post(
        url,
        {"name": "customers", "sql": "SELECT count(*) FROM customers", "min_value": "1"},
    )
    assert saved.status_code == 302
    assert saved["Location"] == target.get_absolute_url()
    check = IntegrityCheck.objects.get()
    assert check.target == target and check.expected_label == "≥ 1"
    event = AuditEvent.objects.get(action="integritycheck.created")
    assert event.actor == admin
    assert event.data["changes"]["tried"] == ["", "3"]

    page = client.get(target.get_absolute_url()).content.decode()
    assert ">SELECT count(*) FROM customers</code>" in page

    duplicate = client.post(url, {"name": "customers", "sql": "SELECT 1", "min_value": "1"})
    assert duplicate.status_code == 400
    assert "already has a check called" in duplicate.content.decode()


def test_an_admin_edits_and_removes_a_check(admin: Any, target: DatabaseTarget) -> None:
    check = IntegrityCheck.objects.create(
        target=target, name="customers", sql="SELECT count(*) FROM customers", min_value=1
    )
    client = client_for(admin)
    edited = client.post(
        f"/backups/checks/{check.pk}/edit/",
        {"name": "customers", "sql": "SELECT count(*) FROM customers", "min_value": "1",
         "max_value": "1000"},
    )  # fmt: skip
    assert edited.status_code == 302
    check.refresh_from_db()
    assert check.expected_label == "between 1 and 1000"
    assert AuditEvent.objects.filter(action="integritycheck.changed").exists()

    assert client.get(f"/backups/checks/{check.pk}/delete/").status_code == 405
    removed = client.post(f"/backups/checks/{check.pk}/delete/")
    assert removed.status_code == 302
    assert not IntegrityCheck.objects.exists()
    event = AuditEvent.objects.get(action="integritycheck.deleted")
    assert event.data["sql"] == "SELECT count(*) FROM customers"


def test_operators_and_viewers_cannot_touch_checks(
    operator: Any, viewer: Any, target: DatabaseTarget
) -> None:
    check = IntegrityCheck.objects.create(target=target, name="c", sql="SELECT 1", min_value=1)
    for user in (operator, viewer):
        client = client_for(user)
        new = client.post(
            f"/backups/targets/{target.pk}/checks/new/",
            {"name": "x", "sql": "SELECT 1", "min_value": "1"},
        )
        assert new.status_code == 403
        assert client.get(f"/backups/checks/{check.pk}/edit/").status_code == 403
        assert client.post(f"/backups/checks/{check.pk}/delete/").status_code == 403
    assert IntegrityCheck.objects.count() == 1


@pytest.mark.parametrize(("tables", "jobs"), [(0, 1), (1, 1), (3, 3), (4, 4), (40, 4)])
def test_pg_restore_runs_no_more_jobs_than_tables(settings: Any, tables: int, jobs: int) -> None:
    settings.BACKUP_RESTORE_JOBS = 4
    assert restore_jobs(tables) == jobs


def test_a_backup_of_several_tables_is_restored_from_a_file_with_parallel_jobs(
    admin: Any, target: DatabaseTarget
) -> None:
    backup = add_backup(target)
    backup.row_counts = {"public.customers": 3, "public.orders": 5, "public.items": 9}
    backup.save(update_fields=["row_counts"])
    confirm = client_for(admin).post(
        "/operations/start/backups.restore/",
        {
            "target": target.pk,
            "p-backup": backup.pk,
            "p-confirm_database": target.database,
            "reason": "drill",
            "idempotency_key": "s" * 32,
        },
    )
    content = confirm.content.decode()
    assert confirm.status_code == 200
    assert "zstd -d backup.dump.zst -o backup.dump" in content
    assert f"-U {target.user} --jobs=3 -d {target.database} backup.dump" in content
    assert "--single-transaction" not in content
