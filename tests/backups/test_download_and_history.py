"""Downloads (admins only, streamed from S3 over HTTP or a directory, audited; everyone else
403 and audited) and the history views: storage used per target, the size-over-time chart
drawn on the server, and the paged history."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.models import AuditEvent
from apps.backups.choices import BackupState, Compression
from apps.backups.models import Backup, BackupStorage, DatabaseTarget
from tests.backups.conftest import (
    BUCKET,
    Server,
    make_local_storage,
    make_s3_storage,
    make_target,
)
from tests.conftest import client_for

PAYLOAD = bytes(range(256)) * 9000  # about 2.3 MB: more than one streamed piece


def stored(target: DatabaseTarget, storage: BackupStorage, s3: Any, key: str) -> Backup:
    if storage.kind == "s3":
        s3.put_object(Bucket=BUCKET, Key=key, Body=PAYLOAD)
    else:
        path = Path(storage.directory) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(PAYLOAD)
    return Backup.objects.create(
        target=target,
        storage=storage,
        key=key,
        state=BackupState.SUCCEEDED,
        finished_at=timezone.now(),
        size_bytes=len(PAYLOAD),
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        compression=Compression.ZSTD,
    )


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_an_admin_downloads_a_backup_streamed_and_audited(
    kind: str,
    admin: Any,
    db: None,
    pg_server: Server,
    s3: Any,
    s3_endpoint: str,
    backup_dir: Path,
) -> None:
    storage = make_s3_storage(s3_endpoint) if kind == "s3" else make_local_storage(backup_dir)
    target = make_target(pg_server, "postgres", storage, name="Orders DB")
    backup = stored(target, storage, s3, "db/orders-db/2026/05/orders-db_20260510_020000.dump")

    response = client_for(admin).get(f"/backups/backup/{backup.pk}/download/")

    assert response.status_code == 200
    assert response.streaming
    pieces = list(response.streaming_content)  # type: ignore[attr-defined]
    assert len(pieces) > 1  # handed over piece by piece, not whole
    assert hashlib.sha256(b"".join(pieces)).hexdigest() == backup.sha256
    assert response["Content-Length"] == str(len(PAYLOAD))
    assert response["Content-Disposition"] == (
        'attachment; filename="orders-db_20260510_020000.dump.zst"'
    )
    event = AuditEvent.objects.get(action="backup.downloaded")
    assert event.actor == admin
    assert event.outcome == Outcome.SUCCEEDED
    assert event.data["key"] == backup.key


@pytest.mark.parametrize("persona", ["operator", "viewer"])
def test_others_are_refused_and_audited(
    persona: str, request: pytest.FixtureRequest, db: None, pg_server: Server, backup_dir: Path
) -> None:
    user = request.getfixturevalue(persona)
    target = make_target(pg_server, "postgres", make_local_storage(backup_dir))
    backup = stored(target, target.storage, None, "nightly/x/x.dump")

    response = client_for(user).get(f"/backups/backup/{backup.pk}/download/")

    assert response.status_code == 403
    denied = AuditEvent.objects.get(action="access.denied", actor=user)
    assert denied.outcome == Outcome.DENIED
    assert "backups.download_backup" in denied.reason
    assert not AuditEvent.objects.filter(action="backup.downloaded").exists()


def test_a_missing_object_sends_the_admin_back_with_why(
    admin: Any, db: None, pg_server: Server, backup_dir: Path
) -> None:
    target = make_target(pg_server, "postgres", make_local_storage(backup_dir))
    backup = stored(target, target.storage, None, "nightly/x/gone.dump")
    (backup_dir / backup.key).unlink()

    response = client_for(admin).get(f"/backups/backup/{backup.pk}/download/", follow=True)

    assert response.redirect_chain[0] == (target.get_absolute_url(), 302)
    assert "cannot be read" in response.content.decode()
    event = AuditEvent.objects.get(action="backup.downloaded")
    assert event.outcome == Outcome.FAILED


def test_a_failed_or_pruned_backup_is_not_downloadable(
    admin: Any, db: None, pg_server: Server, backup_dir: Path
) -> None:
    target = make_target(pg_server, "postgres", make_local_storage(backup_dir))
    for state in (BackupState.FAILED, BackupState.PRUNED):
        backup = Backup.objects.create(
            target=target, storage=target.storage, key=f"nightly/{state}.dump", state=state
        )
        response = client_for(admin).get(f"/backups/backup/{backup.pk}/download/")
        assert response.status_code == 404


def test_the_targets_list_shows_storage_used(
    viewer: Any, db: None, pg_server: Server, backup_dir: Path
) -> None:
    target = make_target(pg_server, "postgres", make_local_storage(backup_dir), name="Orders DB")
    for number, state in enumerate(
        [BackupState.SUCCEEDED, BackupState.SUCCEEDED, BackupState.FAILED, BackupState.PRUNED]
    ):
        Backup.objects.create(
            target=target,
            storage=target.storage,
            key=f"k/{number}",
            state=state,
            finished_at=timezone.now(),
            size_bytes=3 * 1024 * 1024,
        )

    page = client_for(viewer).get("/backups/").content.decode()

    used = page.split('data-testid="storage-used">')[1].split("<")[0]
    assert used == "6.0\xa0MB"  # the two good ones; failed and pruned hold nothing


def test_the_history_draws_size_over_time_and_pages(
    viewer: Any, db: None, pg_server: Server, backup_dir: Path
) -> None:
    target = make_target(pg_server, "postgres", make_local_storage(backup_dir), name="Orders DB")
    now = timezone.now()
    for day in range(30):
        Backup.objects.create(
            target=target,
            storage=target.storage,
            key=f"k/{day}",
            state=BackupState.SUCCEEDED,
            started_at=now - timedelta(days=30 - day),
            finished_at=now - timedelta(days=30 - day),
            size_bytes=(100 + day) * 1024 * 1024,
        )
    client = client_for(viewer)

    page = client.get(f"/backups/targets/{target.pk}/").content.decode()

    chart = page.split('data-testid="size-chart"')[1].split("</figure>")[0]
    assert 'data-testid="metric-chart"' in chart
    assert "Backup size of Orders DB: latest 129 MiB, highest 129 MiB, lowest 100 MiB" in chart
    points = chart.split('<polyline points="')[1].split('"')[0].split()
    assert len(points) == 30
    ys = [float(point.split(",")[1]) for point in points]
    assert ys == sorted(ys, reverse=True)  # growing sizes: higher on the chart (smaller y)
    history = page.split('id="history"')[1]
    assert history.count("<tr>") - 1 == 25  # a page of 25, header row aside
    assert "Older backups" in history

    older = Backup.objects.filter(target=target).order_by("-pk")[24].pk
    fragment = client.get(
        f"/backups/targets/{target.pk}/?before={older}", headers={"HX-Request": "true"}
    ).content.decode()
    assert fragment.startswith('\n<div id="history">') or fragment.lstrip().startswith(
        '<div id="history">'
    )
    assert fragment.count("<tr>") - 1 == 5
    assert "Older backups" not in fragment
