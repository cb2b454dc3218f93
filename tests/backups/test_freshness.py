"""Backup freshness: a target whose newest good backup is older than its objective (26 h by
default) turns red on the backups pages and fires an alert (source "backups") through the
metrics alerts; the alert resolves when a good backup lands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from apps.backups import freshness, tasks
from apps.backups.choices import BackupState
from apps.backups.models import Backup, DatabaseTarget
from apps.metrics.models import Alert, AlertSeverity, AlertStatus
from tests.backups.conftest import Server, make_local_storage, make_target
from tests.conftest import client_for

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def target(db: None, pg_server: Server, tmp_path: Path) -> DatabaseTarget:
    with time_machine.travel(NOW - timedelta(days=30), tick=False):
        return make_target(pg_server, "postgres", make_local_storage(tmp_path), name="Orders DB")


def good_backup(
    target: DatabaseTarget, finished: datetime, state: str = BackupState.SUCCEEDED
) -> Backup:
    return Backup.objects.create(
        target=target,
        storage=target.storage,
        key=f"k/{finished:%Y%m%d%H%M%S}/{state}",
        state=state,
        started_at=finished - timedelta(minutes=2),
        finished_at=finished,
        size_bytes=2048,
        sha256="b" * 64,
    )


def test_the_default_objective_is_26_hours(target: DatabaseTarget) -> None:
    assert target.freshness_hours == 26
    newest = NOW - timedelta(hours=25, minutes=59)
    assert not freshness.freshness(target, newest, NOW).stale
    state = freshness.freshness(target, NOW - timedelta(hours=26), NOW)
    assert state.stale
    assert state.words == "Stale: newest good backup 26 h old (objective 26 h)"
    never = freshness.freshness(target, None, NOW)
    assert never.stale and "no good backup" in never.words


def alerts(target: DatabaseTarget) -> list[Alert]:
    return list(Alert.objects.filter(source="backups", fingerprint=f"backup-freshness:{target.pk}"))


def test_a_stale_target_fires_once_and_resolves_when_a_good_backup_lands(
    target: DatabaseTarget,
) -> None:
    good_backup(target, NOW - timedelta(hours=30))
    good_backup(target, NOW - timedelta(hours=2), BackupState.FAILED)  # not good: no help

    with time_machine.travel(NOW, tick=False):
        assert tasks.tick_backups()["stale"] == [target.pk]
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        tasks.tick_backups()  # the next minute: the same episode, seen again

    (alert,) = alerts(target)
    assert alert.status == AlertStatus.FIRING
    assert alert.severity == AlertSeverity.WARNING
    assert alert.name == "Backups of Orders DB are stale"
    assert alert.started_at == NOW - timedelta(hours=4)  # when the objective ran out
    assert alert.times_seen == 2

    with time_machine.travel(NOW + timedelta(minutes=2), tick=False):
        good_backup(target, NOW + timedelta(minutes=2))
        assert tasks.tick_backups()["fresh"] == [target.pk]
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    assert alert.ended_at == NOW + timedelta(minutes=2)


def test_a_production_target_fires_critical(target: DatabaseTarget) -> None:
    target.is_production = True
    target.save(update_fields=["is_production"])
    with time_machine.travel(NOW, tick=False):
        freshness.check_freshness()
    (alert,) = alerts(target)
    assert alert.severity == AlertSeverity.CRITICAL
    assert "no good backup since it was registered" in alert.summary


def test_resolve_if_fresh_ends_the_alert_at_once(target: DatabaseTarget) -> None:
    with time_machine.travel(NOW, tick=False):
        freshness.check_freshness()
        freshness.resolve_if_fresh(target)
    (alert,) = alerts(target)
    assert alert.status == AlertStatus.RESOLVED


def test_the_backups_page_shows_the_stale_target_red(
    target: DatabaseTarget, viewer: Any, pg_server: Server, tmp_path: Path
) -> None:
    fresh = make_target(pg_server, "postgres", target.storage, name="Fresh DB")
    good_backup(target, NOW - timedelta(hours=27))
    good_backup(fresh, NOW - timedelta(hours=1))
    with time_machine.travel(NOW, tick=False):
        page = client_for(viewer).get("/backups/").content.decode()
        detail = client_for(viewer).get(f"/backups/targets/{target.pk}/").content.decode()

    rows = page.split('data-testid="target-row"')[1:]
    stale_row = next(row for row in rows if "Orders DB" in row)
    fresh_row = next(row for row in rows if "Fresh DB" in row)
    assert 'class="table-danger"' in page.split("Orders DB")[0].rsplit("<tr", 1)[1]
    assert "text-bg-danger" in stale_row and "Stale: newest good backup 27 h old" in stale_row
    assert "Fresh (objective 26 h)" in fresh_row
    assert "Stale: newest good backup 27 h old (objective 26 h)" in detail
