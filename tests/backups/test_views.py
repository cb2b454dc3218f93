"""The backups pages for each persona: the list with the last good backup, a target's history
(paged; htmx gets the fragment), the admins' forms with write-only secrets, and the audited
connection test against the real PostgreSQL server."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.backups.choices import BackupState
from apps.backups.models import Backup, BackupStorage, DatabaseTarget
from tests.backups.conftest import Server, make_local_storage, make_target
from tests.conftest import client_for

HTMX = {"HX-Request": "true"}


@pytest.fixture
def target(db: None, pg_server: Server, tmp_path: Path) -> DatabaseTarget:
    storage = make_local_storage(tmp_path, name="disk")
    return make_target(pg_server, "postgres", storage, name="Orders DB", password="pw-Secret-1")


def add_backup(target: DatabaseTarget, by: Any, state: str, minutes_ago: int) -> Backup:
    started = timezone.now() - timedelta(minutes=minutes_ago)
    return Backup.objects.create(
        target=target,
        storage=target.storage,
        key=f"k/{minutes_ago}",
        state=state,
        started_at=started,
        finished_at=started + timedelta(seconds=3),
        size_bytes=123456,
        sha256="a" * 64,
        started_by=by,
        error="" if state == BackupState.SUCCEEDED else "pg_dump failed (exit code 1): boom",
    )


def test_it_lists_targets_with_their_last_good_backup(
    viewer: Any, operator: Any, target: DatabaseTarget
) -> None:
    add_backup(target, operator, BackupState.SUCCEEDED, minutes_ago=90)
    add_backup(target, operator, BackupState.FAILED, minutes_ago=5)  # newer, but not good

    response = client_for(viewer).get("/backups/")
    content = response.content.decode()

    assert response.status_code == 200
    assert "Orders DB" in content
    assert "120.6\xa0KB" in content  # the good one's size
    assert "1\xa0hour, 29\xa0minutes ago" in content
    assert "olga-operator" in content
    assert "Back up now" not in content  # a viewer starts nothing
    assert "pw-Secret-1" not in content


def test_an_operator_gets_the_back_up_now_button(operator: Any, target: DatabaseTarget) -> None:
    content = client_for(operator).get("/backups/").content.decode()
    assert f"/operations/start/backups.backup/?target={target.pk}" in content
    assert "No good backup yet" in content
    assert "Add a database" not in content  # admins only


def test_the_start_page_offers_the_backup_with_its_command(
    operator: Any, target: DatabaseTarget
) -> None:
    client = client_for(operator)
    form = client.get(f"/operations/start/backups.backup/?target={target.pk}")
    assert form.status_code == 200
    assert "Its usual storage: disk" in form.content.decode()
    confirm = client.post(
        "/operations/start/backups.backup/",
        {"target": target.pk, "p-storage": "", "idempotency_key": "b" * 32},
    )
    content = confirm.content.decode()
    assert confirm.status_code == 200
    assert "pg_dump --format=custom --compress=0" in content
    assert "| zstd &gt;" in content
    assert "pw-Secret-1" not in content


def test_the_search_refresh_gets_only_the_table(viewer: Any, target: DatabaseTarget) -> None:
    response = client_for(viewer).get("/backups/?q=orders", headers=HTMX)
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<div id="targets"')
    assert "<html" not in content
    assert "Orders DB" in content
    nothing = client_for(viewer).get("/backups/?q=nothing-like-this").content.decode()
    assert "No database matches" in nothing


def test_the_empty_list_says_what_to_do(admin: Any, viewer: Any, db: None) -> None:
    assert "add a storage" in client_for(admin).get("/backups/").content.decode()
    assert "Ask an admin" in client_for(viewer).get("/backups/").content.decode()


def test_the_list_refuses_no_role_and_other_methods(
    nobody: Any, viewer: Any, target: DatabaseTarget
) -> None:
    assert client_for(nobody).get("/backups/").status_code == 403
    assert client_for(viewer).post("/backups/").status_code == 405
    assert client_for(viewer).get(f"/backups/targets/{target.pk}/edit/").status_code == 403


def test_the_history_is_newest_first_and_paged(
    viewer: Any, operator: Any, target: DatabaseTarget
) -> None:
    for minutes in reversed(range(30)):  # oldest first, as they happen
        add_backup(target, operator, BackupState.SUCCEEDED, minutes_ago=minutes * 60 + 1)
    client = client_for(viewer)

    first = client.get(f"/backups/targets/{target.pk}/")
    assert first.status_code == 200
    rows = first.context["backups"]
    assert len(rows) == 25
    assert rows[0].started_at > rows[1].started_at
    assert "Older backups" in first.content.decode()

    older = client.get(f"/backups/targets/{target.pk}/?{first.context['next_query']}", headers=HTMX)
    content = older.content.decode()
    assert content.lstrip().startswith('<div id="history"')
    assert "<html" not in content
    assert content.count("<code>k/") == 5
    assert "Older backups" not in content


def test_a_failed_backup_shows_why_and_is_not_the_last_good_one(
    viewer: Any, operator: Any, target: DatabaseTarget
) -> None:
    add_backup(target, operator, BackupState.FAILED, minutes_ago=1)
    content = client_for(viewer).get(f"/backups/targets/{target.pk}/").content.decode()
    assert "pg_dump failed (exit code 1): boom" in content
    assert "None yet" in content


def test_an_unknown_target_is_404(viewer: Any, db: None) -> None:
    assert client_for(viewer).get("/backups/targets/999999/").status_code == 404


def test_an_admin_tests_the_connection_and_it_is_audited(
    admin: Any, target: DatabaseTarget
) -> None:
    response = client_for(admin).post(f"/backups/targets/{target.pk}/check/")

    assert response.status_code == 302
    assert response["Location"] == f"/backups/targets/{target.pk}/"
    target.refresh_from_db()
    assert target.check_ok is True
    assert target.check_detail.startswith("PostgreSQL ")
    event = AuditEvent.objects.get(action="databasetarget.checked")
    assert event.outcome == "succeeded"
    assert "pw-Secret-1" not in str(event.data) + event.reason


@pytest.mark.parametrize(
    "change, words",
    [
        ({"database": "no_such_db_here"}, "The database no_such_db_here does not exist"),
        ({"port": 1}, "does not answer"),
    ],
)
def test_a_failed_connection_test_says_why_and_is_audited_failed(
    admin: Any, target: DatabaseTarget, change: dict[str, Any], words: str
) -> None:
    DatabaseTarget.objects.filter(pk=target.pk).update(**change)

    response = client_for(admin).post(f"/backups/targets/{target.pk}/check/", follow=True)

    assert words in response.content.decode()
    event = AuditEvent.objects.get(action="databasetarget.checked")
    assert event.outcome == "failed"
    assert words in event.reason


def test_only_an_admin_tests_a_connection(operator: Any, target: DatabaseTarget) -> None:
    assert client_for(operator).post(f"/backups/targets/{target.pk}/check/").status_code == 403
    assert client_for(operator).get(f"/backups/targets/{target.pk}/check/").status_code == 403


def test_editing_a_target_never_shows_the_password_and_blank_keeps_it(
    admin: Any, target: DatabaseTarget
) -> None:
    client = client_for(admin)
    page = client.get(f"/backups/targets/{target.pk}/edit/").content.decode()
    assert "pw-Secret-1" not in page
    assert target.password_encrypted not in page
    assert "A password is stored" in page

    response = client.post(
        f"/backups/targets/{target.pk}/edit/",
        {
            "name": "Orders DB",
            "host": target.host,
            "port": target.port,
            "database": "postgres",
            "user": target.user,
            "password": "",
            "ssl_mode": "prefer",
            "storage": target.storage_id,
        },
    )

    assert response.status_code == 302
    target.refresh_from_db()
    assert target.password() == "pw-Secret-1"
    assert target.ssl_mode == "prefer"
    event = AuditEvent.objects.get(action="databasetarget.changed")
    assert "password" not in event.data["changes"]


def test_an_admin_adds_an_s3_storage_with_encrypted_keys(admin: Any, db: None) -> None:
    client = client_for(admin)
    response = client.post(
        "/backups/storage/new/",
        {
            "name": "offsite",
            "kind": "s3",
            "bucket": "team-backups",
            "region": "eu-west-1",
            "endpoint_url": "https://minio.internal.example.com",
            "prefix": "/prod/db/",
            "server_side_encryption": "AES256",
            "access_key_id": "AKIAEXAMPLEKEY",
            "secret_access_key": "very/secret+key",
        },
    )

    assert response.status_code == 302
    storage = BackupStorage.objects.get()
    assert storage.prefix == "prod/db"
    assert storage.credentials() == ("AKIAEXAMPLEKEY", "very/secret+key")
    listing = client.get("/backups/storage/").content.decode()
    assert "keys stored encrypted" in listing
    assert "s3://team-backups/prod/db/" in listing
    edit = client.get(f"/backups/storage/{storage.pk}/edit/").content.decode()
    for secret in ("AKIAEXAMPLEKEY", "very/secret+key"):
        assert secret not in listing
        assert secret not in edit
    event = AuditEvent.objects.get(action="backupstorage.created")
    assert "AKIAEXAMPLEKEY" not in str(event.data)
    assert event.data["changes"]["access_key_id"] == ["", "replaced"]


def test_an_s3_storage_offers_its_bucket_backup_and_an_admin_its_restore(
    admin: Any, operator: Any, viewer: Any, target: DatabaseTarget
) -> None:
    s3 = BackupStorage.objects.create(name="files", kind="s3", bucket="team-files")
    sync = f'href="/operations/start/backups.sync_objects/?target={s3.pk}"'
    restore = f'href="/operations/start/backups.restore_objects/?target={s3.pk}"'
    directory = f'?target={target.storage_id}"'

    as_admin = client_for(admin).get("/backups/storage/").content.decode()
    as_operator = client_for(operator).get("/backups/storage/").content.decode()
    as_viewer = client_for(viewer).get("/backups/storage/").content.decode()

    assert sync in as_admin and restore in as_admin
    assert sync in as_operator and restore not in as_operator  # a restore is destructive
    assert sync not in as_viewer and restore not in as_viewer
    assert directory not in as_admin  # a directory has no bucket to copy
    form = client_for(operator).get(f"/operations/start/backups.sync_objects/?target={s3.pk}")
    assert form.status_code == 200


def test_only_an_admin_manages_storage_and_targets(
    operator: Any, viewer: Any, target: DatabaseTarget
) -> None:
    for user in (operator, viewer):
        client = client_for(user)
        assert client.get("/backups/storage/").status_code == 200
        assert client.get("/backups/storage/new/").status_code == 403
        assert client.post("/backups/storage/new/", {"name": "x"}).status_code == 403
        assert client.get(f"/backups/storage/{target.storage_id}/edit/").status_code == 403
        assert client.get("/backups/targets/new/").status_code == 403
    assert not BackupStorage.objects.filter(name="x").exists()
