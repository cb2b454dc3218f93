"""The retention policy over a fixed set of backup dates (the clock held by time-machine):
exactly which backups are kept (7 daily, 4 weekly, 12 monthly by default), the newest good
backup and any backup a restore is using always kept, failed ones never counted; and the
prune operation's confirmation listing what it will delete."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from apps.audit.choices import Outcome
from apps.audit.models import AuditEvent
from apps.backups import pruning, retention
from apps.backups.choices import BackupState, RestoreKind
from apps.backups.models import Backup, DatabaseTarget, RestoreRun
from apps.operations.actions import OperationRefused, do_start_operation
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.operations.progress import Reporter
from tests.backups.conftest import Server, make_local_storage, make_target
from tests.conftest import client_for
from tests.factories import make_operation

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
FIRST_DAY = date(2025, 6, 1)


@pytest.fixture
def target(db: None, pg_server: Server, tmp_path: Path) -> DatabaseTarget:
    return make_target(pg_server, "postgres", make_local_storage(tmp_path), name="Orders DB")


def backup_at(target: DatabaseTarget, when: datetime, state: str = BackupState.SUCCEEDED) -> Backup:
    return Backup.objects.create(
        target=target,
        storage=target.storage,
        key=f"orders-db/{when:%Y/%m}/orders-db_{when:%Y%m%d_%H%M%S}.dump",
        state=state,
        started_at=when - timedelta(minutes=3),
        finished_at=when,
        size_bytes=1000,
        sha256="a" * 64,
    )


def nightly(target: DatabaseTarget) -> None:
    """A good backup at 02:00 every day from 1 June 2025 to 30 June 2026, a second one at
    10:00 on the last day, and a failed one at 11:00 that day (never good, never counted)."""
    day = FIRST_DAY
    while day <= NOW.date():
        backup_at(target, datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC))
        day += timedelta(days=1)
    backup_at(target, datetime(2026, 6, 30, 10, 0, tzinfo=UTC))
    backup_at(target, datetime(2026, 6, 30, 11, 0, tzinfo=UTC), BackupState.FAILED)


def kept_times(plan: retention.Plan) -> list[str]:
    return sorted(f"{backup.finished_at:%Y-%m-%d %H:%M}" for backup in plan.kept)


DEFAULT_KEPT = sorted(
    [
        # daily: the newest of each of the 7 most recent days
        "2026-06-30 10:00",
        "2026-06-29 02:00",
        "2026-06-28 02:00",
        "2026-06-27 02:00",
        "2026-06-26 02:00",
        "2026-06-25 02:00",
        "2026-06-24 02:00",
        # weekly (ISO weeks end on Sunday): 30 June's week is kept by the daily rule
        "2026-06-21 02:00",
        "2026-06-14 02:00",
        # monthly: the last backup of each of the 12 most recent months
        "2026-05-31 02:00",
        "2026-04-30 02:00",
        "2026-03-31 02:00",
        "2026-02-28 02:00",
        "2026-01-31 02:00",
        "2025-12-31 02:00",
        "2025-11-30 02:00",
        "2025-10-31 02:00",
        "2025-09-30 02:00",
        "2025-08-31 02:00",
        "2025-07-31 02:00",
    ]
)


def test_the_default_policy_keeps_7_daily_4_weekly_12_monthly(target: DatabaseTarget) -> None:
    assert (target.keep_daily, target.keep_weekly, target.keep_monthly) == (7, 4, 12)
    with time_machine.travel(NOW, tick=False):
        nightly(target)
        plan = retention.plan(target)

    assert kept_times(plan) == DEFAULT_KEPT
    good = Backup.objects.good().filter(target=target).count()
    assert len(plan.delete) == good - len(DEFAULT_KEPT) == 396 - 20
    assert all(backup.state == BackupState.SUCCEEDED for backup in plan.delete)
    newest = Backup.objects.get(finished_at=datetime(2026, 6, 30, 10, 0, tzinfo=UTC))
    assert plan.keep[newest.pk] == ["newest good backup", "daily", "weekly", "monthly"]
    # June 2025 is the 13th month back: all of it goes.
    assert not [
        backup for backup in plan.kept if backup.started_at < datetime(2025, 7, 1, tzinfo=UTC)
    ]


def test_a_smaller_policy_keeps_exactly_its_periods(target: DatabaseTarget) -> None:
    target.keep_daily, target.keep_weekly, target.keep_monthly = 2, 2, 2
    target.save(update_fields=["keep_daily", "keep_weekly", "keep_monthly"])
    with time_machine.travel(NOW, tick=False):
        nightly(target)
        plan = retention.plan(target)

    assert kept_times(plan) == [
        "2026-05-31 02:00",  # monthly
        "2026-06-28 02:00",  # weekly (the Sunday before)
        "2026-06-29 02:00",  # daily
        "2026-06-30 10:00",  # newest, daily, weekly, monthly
    ]


def test_the_newest_good_backup_is_kept_even_by_an_empty_policy(target: DatabaseTarget) -> None:
    target.keep_daily = target.keep_weekly = target.keep_monthly = 0
    target.save(update_fields=["keep_daily", "keep_weekly", "keep_monthly"])
    old = backup_at(target, NOW - timedelta(days=40))
    newest = backup_at(target, NOW - timedelta(days=30))
    backup_at(target, NOW - timedelta(days=1), BackupState.FAILED)

    plan = retention.plan(target)

    assert [backup.pk for backup in plan.kept] == [newest.pk]
    assert plan.delete_ids == [old.pk]


def test_a_backup_a_restore_is_using_is_kept(target: DatabaseTarget, admin: Any) -> None:
    target.keep_daily = target.keep_weekly = target.keep_monthly = 0
    target.save(update_fields=["keep_daily", "keep_weekly", "keep_monthly"])
    being_restored = backup_at(target, NOW - timedelta(days=50))
    about_to_be_tested = backup_at(target, NOW - timedelta(days=45))
    done_with = backup_at(target, NOW - timedelta(days=40))
    backup_at(target, NOW - timedelta(days=1))
    # A restore of it into another database, running.
    running = make_operation(
        admin,
        kind="backups.restore",
        state=State.RUNNING,
        target_key="backups.target:9001",
        params={"backup": being_restored.pk},
    )
    RestoreRun.objects.create(
        kind=RestoreKind.RESTORE,
        backup=being_restored,
        target=target,
        database="x",
        operation=running,
    )
    make_operation(
        admin,
        kind="backups.test_restore",
        state=State.AWAITING_APPROVAL,
        target_key="backups.target:9002",
        params={"backup": about_to_be_tested.pk},
    )
    make_operation(
        admin,
        kind="backups.restore",
        state=State.SUCCEEDED,
        target_key="backups.target:9003",
        params={"backup": done_with.pk},
    )

    plan = retention.plan(target)

    assert plan.keep[being_restored.pk] == ["a restore is using it"]
    assert plan.keep[about_to_be_tested.pk] == ["a restore is using it"]
    assert plan.delete_ids == [done_with.pk]


def test_the_confirmation_lists_every_backup_it_will_delete(
    target: DatabaseTarget, admin: object
) -> None:
    target.keep_daily, target.keep_weekly, target.keep_monthly = 1, 0, 0
    target.save(update_fields=["keep_daily", "keep_weekly", "keep_monthly"])
    doomed = [backup_at(target, NOW - timedelta(days=days)) for days in (9, 8)]
    kept = backup_at(target, NOW - timedelta(days=1))
    client = client_for(admin)

    response = client.post(
        "/operations/start/backups.prune/",
        {"target": str(target.pk), "reason": "free space", "idempotency_key": "prune-1"},
    )

    assert response.status_code == 200, response.content.decode()[:2000]
    page = response.content.decode()
    assert "Deletes 2 backups of Orders DB" in page
    for backup in doomed:
        assert backup.key in page  # each object's rm line
        assert f"#{backup.pk} (" in page
    assert kept.key not in page
    assert Backup.objects.good().filter(target=target).count() == 3  # nothing deleted yet


def test_there_is_nothing_to_prune_says_so(target: DatabaseTarget, admin: object) -> None:
    backup_at(target, NOW - timedelta(days=1))
    response = client_for(admin).post(
        "/operations/start/backups.prune/",
        {"target": str(target.pk), "reason": "tidy", "idempotency_key": "prune-2"},
    )
    assert response.status_code == 400
    assert "Nothing to prune" in response.content.decode()


def test_the_target_page_says_how_many_backups_are_past_the_policy(
    target: DatabaseTarget, admin: Any, operator: Any
) -> None:
    prune = f'href="/operations/start/backups.prune/?target={target.pk}"'
    backup_at(target, NOW - timedelta(days=1))
    page = client_for(admin).get(f"/backups/targets/{target.pk}/").content.decode()
    assert "past the policy" not in page and prune not in page  # nothing to prune

    target.keep_daily, target.keep_weekly, target.keep_monthly = 1, 0, 0
    target.save(update_fields=["keep_daily", "keep_weekly", "keep_monthly"])
    for days in (9, 8):
        backup_at(target, NOW - timedelta(days=days))
    page = client_for(admin).get(f"/backups/targets/{target.pk}/").content.decode()
    assert '<span data-testid="past-policy">2 backups past the policy</span>' in page
    assert prune in page
    as_operator = client_for(operator).get(f"/backups/targets/{target.pk}/").content.decode()
    assert "2 backups past the policy" in as_operator and prune not in as_operator


def test_an_operator_may_not_prune(target: DatabaseTarget, operator: Any) -> None:
    doomed = backup_at(target, NOW - timedelta(days=400))
    backup_at(target, NOW - timedelta(days=1))
    with pytest.raises(OperationRefused, match="Prune old backups"):
        do_start_operation(operator, "backups.prune", str(target.pk), {}, "tidy")
    assert AuditEvent.objects.filter(
        action="operation.refused", actor=operator, outcome=Outcome.DENIED
    ).exists()
    assert Backup.objects.get(pk=doomed.pk).is_good


def test_a_listed_backup_a_restore_picked_meanwhile_is_not_deleted(
    target: DatabaseTarget, admin: Any, backup_dir: Path
) -> None:
    """The list is fixed at confirmation; the worker asks the policy again before each
    deletion, so a restore requested in between keeps its backup."""
    target.keep_daily, target.keep_weekly, target.keep_monthly = 1, 0, 0
    target.save(update_fields=["keep_daily", "keep_weekly", "keep_monthly"])
    target.storage = make_local_storage(backup_dir)
    target.save(update_fields=["storage"])
    directory = backup_dir
    picked, doomed, newest = (backup_at(target, NOW - timedelta(days=days)) for days in (20, 10, 1))
    for backup in (picked, doomed, newest):
        (directory / backup.key).parent.mkdir(parents=True, exist_ok=True)
        (directory / backup.key).write_bytes(b"dump")
    operation = do_start_operation(admin, "backups.prune", str(target.pk), {}, "space")
    assert sorted(operation.params["backups"]) == sorted([picked.pk, doomed.pk])
    make_operation(
        admin,
        kind="backups.test_restore",
        state=State.QUEUED,
        target_key="backups.target:9100",
        params={"backup": picked.pk},
    )
    Operation.objects.filter(pk=operation.pk).update(state=State.RUNNING)

    pruning.prune(operation, Reporter(operation))

    assert Backup.objects.get(pk=picked.pk).is_good
    assert (directory / picked.key).exists()
    assert Backup.objects.get(pk=doomed.pk).state == BackupState.PRUNED
    assert not (directory / doomed.key).exists()
    assert (directory / newest.key).exists()
    assert any(f"Kept #{picked.pk}" in line.message for line in operation.log_lines.all())
