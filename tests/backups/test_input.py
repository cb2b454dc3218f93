"""Bad input: names and prefixes that would climb out of a prefix or a directory, and
database names with quotes, ';' or shell characters, are refused with a message; keys are
built in one place that cannot leave the prefix."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.backups.models import BackupStorage, DatabaseTarget
from apps.backups.storage import LocalBackend, UnsafeKey, backup_key
from tests.conftest import client_for

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_it_builds_keys_under_the_prefix() -> None:
    assert (
        backup_key("prod/db", "Orders DB", WHEN)
        == "prod/db/orders-db/2026/03/orders-db_20260304_050607.dump"
    )
    assert backup_key("", "orders", WHEN) == "orders/2026/03/orders_20260304_050607.dump"
    assert backup_key("/prod/", "orders", WHEN).startswith("prod/orders/")


@pytest.mark.parametrize(
    "prefix, name",
    [
        ("../etc", "orders"),
        ("prod/../../etc", "orders"),
        ("prod", "../orders"),
        ("prod", "a/../../b"),
        ("prod", ".."),
        ("prod", "///"),
        ("prod//db", "orders"),
        ("prod/ db", "orders"),
    ],
)
def test_it_refuses_keys_that_could_escape(prefix: str, name: str) -> None:
    with pytest.raises(UnsafeKey):
        backup_key(prefix, name, WHEN)


def test_a_local_path_must_stay_inside_the_base_directory(tmp_path: Path) -> None:
    backend = LocalBackend(str(tmp_path))
    assert backend.path_of("p/orders/x.dump") == tmp_path.resolve() / "p/orders/x.dump"
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "out").symlink_to("/etc")
    for key in ("../x.dump", "p/../../x.dump", "/etc/passwd", "p/out/passwd", ""):
        with pytest.raises(UnsafeKey):
            backend.path_of(key)


@pytest.fixture
def storage(db: None, tmp_path: Path) -> BackupStorage:
    return BackupStorage.objects.create(name="disk", kind="local", directory=str(tmp_path))


def target_form(storage: BackupStorage, **overrides: str) -> dict[str, Any]:
    return {
        "name": "Orders DB",
        "host": "db.internal.example.com",
        "port": "5432",
        "database": "orders",
        "user": "backup",
        "password": "s3cret-pw",
        "ssl_mode": "require",
        "storage": str(storage.pk),
        **overrides,
    }


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("database", "orders; DROP DATABASE x", "is refused"),
        ("database", "orders$(reboot)", "is refused"),
        ("database", "`id`", "is refused"),
        ("database", "o'rders", "is refused"),
        ("database", '"orders"', "is refused"),
        ("database", "../orders", "is refused"),
        ("database", "-f/etc/passwd", "is refused"),
        ("database", "orders|cat", "is refused"),
        ("user", "backup && rm -rf /", "is refused"),
        ("name", "../../etc", "are refused (the name becomes part of the backups"),
        ("name", "a/b", "are refused (the name becomes part of the backups"),
        ("host", "db;reboot", "host name"),
        ("host", "$(curl evil)", "host name"),
    ],
)
def test_an_admin_cannot_register_a_dangerous_target(
    admin: Any, storage: BackupStorage, field: str, value: str, words: str
) -> None:
    response = client_for(admin).post(
        "/backups/targets/new/", target_form(storage, **{field: value})
    )

    assert response.status_code == 400
    assert words in response.content.decode()
    assert not DatabaseTarget.objects.exists()


@pytest.mark.parametrize("prefix", ["../x", "a/../../b", "a/./b", "a b", "a;b", "$(id)"])
def test_an_admin_cannot_set_a_prefix_that_climbs_out(admin: Any, db: None, prefix: str) -> None:
    response = client_for(admin).post(
        "/backups/storage/new/",
        {"name": "b", "kind": "s3", "bucket": "my-bucket", "prefix": prefix},
    )

    assert response.status_code == 400
    assert "a backup can never leave its prefix" in response.content.decode()
    assert not BackupStorage.objects.exists()


@pytest.mark.parametrize("directory", ["/etc", "relative/dir", "/tmp/../etc"])
def test_a_directory_storage_must_be_inside_the_allowed_roots(
    admin: Any, db: None, directory: str
) -> None:
    response = client_for(admin).post(
        "/backups/storage/new/", {"name": "d", "kind": "local", "directory": directory}
    )

    assert response.status_code == 400
    assert not BackupStorage.objects.exists()


def test_s3_keys_must_come_in_pairs(admin: Any, db: None) -> None:
    response = client_for(admin).post(
        "/backups/storage/new/",
        {"name": "b", "kind": "s3", "bucket": "my-bucket", "access_key_id": "AKIAEXAMPLE"},
    )
    assert response.status_code == 400
    assert "or neither" in response.content.decode()


def test_a_valid_target_is_saved_with_its_password_encrypted_and_audited_masked(
    admin: Any, storage: BackupStorage
) -> None:
    response = client_for(admin).post("/backups/targets/new/", target_form(storage))

    target = DatabaseTarget.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/backups/targets/{target.pk}/"
    assert "s3cret-pw" not in target.password_encrypted
    assert target.password() == "s3cret-pw"
    event = AuditEvent.objects.get(action="databasetarget.created")
    assert "s3cret-pw" not in str(event.data)
    assert event.data["changes"]["password"] == "********"  # masked by name
