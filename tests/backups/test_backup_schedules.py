"""Backup schedules: cron expressions parsed with clear refusals, edited by admins on the
target form, and started by the minute beat task through the operations engine exactly once
per due time, however many beats tick (the due time is claimed by a conditional UPDATE)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings

from apps.backups import cron, schedules, tasks
from apps.backups.models import DatabaseTarget
from apps.backups.schedules import SCHEDULER_USERNAME, start_due_backups
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.backups.conftest import Server, make_local_storage, make_target
from tests.conftest import client_for

T = datetime(2026, 4, 1, 1, 30, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("expression", "after", "due"),
    [
        ("15 2 * * *", T, datetime(2026, 4, 1, 2, 15, tzinfo=UTC)),
        (
            "15 2 * * *",
            datetime(2026, 4, 1, 2, 15, tzinfo=UTC),
            datetime(2026, 4, 2, 2, 15, tzinfo=UTC),
        ),
        ("*/20 * * * *", T, datetime(2026, 4, 1, 1, 40, tzinfo=UTC)),
        ("@daily", T, datetime(2026, 4, 2, 0, 0, tzinfo=UTC)),
        ("@weekly", T, datetime(2026, 4, 5, 0, 0, tzinfo=UTC)),  # Sunday
        (
            "0 3 * * 1-5",
            datetime(2026, 4, 3, 4, 0, tzinfo=UTC),
            datetime(2026, 4, 6, 3, 0, tzinfo=UTC),
        ),
        ("0 0 1 */3 *", T, datetime(2026, 7, 1, 0, 0, tzinfo=UTC)),
        ("0 12 29 2 *", T, datetime(2028, 2, 29, 12, 0, tzinfo=UTC)),
        # day of month or day of week, as in cron: the 15th or a Monday
        ("0 6 15 * 1", T, datetime(2026, 4, 6, 6, 0, tzinfo=UTC)),
    ],
)
def test_it_finds_the_next_due_time(expression: str, after: datetime, due: datetime) -> None:
    assert cron.next_after(cron.parse(expression), after) == due


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 2 * *", "five fields"),
        ("61 2 * * *", "minute field must stay within 0–59"),
        ("0 24 * * *", "hour field must stay within 0–23"),
        ("0 2 * * mon; rm -rf /", "five fields"),
        ("0 2 * * mon", "day of week field has 'mon'"),
        ("*/0 * * * *", "bad step"),
        ("0 0 31 2 *", "never comes due"),
        ("5-1 * * * *", "within 0–59"),
    ],
)
def test_a_bad_expression_is_refused_with_a_message(expression: str, message: str) -> None:
    with pytest.raises(Exception, match=message):
        cron.validate(expression)


@pytest.fixture
def target(db: None, pg_server: Server, tmp_path: Path) -> DatabaseTarget:
    return make_target(pg_server, "postgres", make_local_storage(tmp_path), name="Orders DB")


def edit(client: Any, target: DatabaseTarget, **changes: Any) -> Any:
    data = {
        "name": target.name,
        "host": target.host,
        "port": target.port,
        "database": target.database,
        "user": target.user,
        "ssl_mode": target.ssl_mode,
        "storage": target.storage_id,
        **changes,
    }
    return client.post(f"/backups/targets/{target.pk}/edit/", data)


def test_an_admin_sets_a_schedule_and_its_next_time(target: DatabaseTarget, admin: Any) -> None:
    with time_machine.travel(T, tick=False):
        response = edit(client_for(admin), target, schedule="  15   2 * * * ")
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.schedule == "15 2 * * *"
    assert target.schedule_next_at == datetime(2026, 4, 1, 2, 15, tzinfo=UTC)
    page = client_for(admin).get(f"/backups/targets/{target.pk}/").content.decode()
    assert "<code>15 2 * * *</code> (UTC)" in page


def test_a_bad_schedule_is_refused_and_nothing_is_saved(target: DatabaseTarget, admin: Any) -> None:
    response = edit(client_for(admin), target, schedule="0 25 * * *", keep_daily="3")
    assert response.status_code == 400
    assert "The hour field must stay within 0–23" in response.content.decode()
    target.refresh_from_db()
    assert (target.schedule, target.keep_daily, target.schedule_next_at) == ("", 7, None)


def test_an_operator_cannot_edit_the_schedule(target: DatabaseTarget, operator: Any) -> None:
    assert edit(client_for(operator), target, schedule="@hourly").status_code == 403
    target.refresh_from_db()
    assert target.schedule == ""


def scheduled(target: DatabaseTarget, admin: Any, expression: str) -> DatabaseTarget:
    with time_machine.travel(T, tick=False):
        assert edit(client_for(admin), target, schedule=expression).status_code == 302
    target.refresh_from_db()
    return target


def backups_started(target: DatabaseTarget) -> list[Operation]:
    return list(
        Operation.objects.filter(kind="backups.backup", target_id=str(target.pk)).order_by("pk")
    )


def test_a_due_backup_starts_once_however_many_beats_tick(
    target: DatabaseTarget, admin: Any
) -> None:
    scheduled(target, admin, "15 2 * * *")
    with time_machine.travel(datetime(2026, 4, 1, 2, 14, 59, tzinfo=UTC), tick=False):
        assert start_due_backups() == []
    with time_machine.travel(datetime(2026, 4, 1, 2, 15, 0, tzinfo=UTC), tick=False):
        first = start_due_backups()
        assert start_due_backups() == []  # a second beat in the same minute
    with time_machine.travel(datetime(2026, 4, 1, 2, 16, 5, tzinfo=UTC), tick=False):
        assert tasks.tick_backups()["started"] == []  # the next tick

    assert [operation.pk for operation in backups_started(target)] == [first[0].pk]
    operation = first[0]
    assert operation.state == State.QUEUED
    assert operation.requested_by.get_username() == SCHEDULER_USERNAME
    assert operation.reason == (
        "Scheduled backup of Orders DB (15 2 * * *, due 2026-04-01 02:15 UTC)."
    )
    target.refresh_from_db()
    assert target.schedule_next_at == datetime(2026, 4, 2, 2, 15, tzinfo=UTC)


def test_a_beat_that_read_the_due_time_late_claims_nothing(
    target: DatabaseTarget, admin: Any
) -> None:
    """Two beats read the same due target; the one whose UPDATE comes second finds the due
    time moved and starts nothing."""
    scheduled(target, admin, "15 2 * * *")
    due = datetime(2026, 4, 1, 2, 15, 30, tzinfo=UTC)
    first_read = DatabaseTarget.objects.get(pk=target.pk)
    second_read = DatabaseTarget.objects.get(pk=target.pk)
    assert schedules._claim(first_read, due) is True
    assert schedules._claim(second_read, due) is False


def test_missed_due_times_start_one_backup_not_one_each(target: DatabaseTarget, admin: Any) -> None:
    scheduled(target, admin, "0 * * * *")  # hourly; no beat ran for five hours
    with time_machine.travel(datetime(2026, 4, 1, 7, 0, 30, tzinfo=UTC), tick=False):
        assert len(start_due_backups()) == 1
        assert start_due_backups() == []
    target.refresh_from_db()
    assert target.schedule_next_at == datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


def test_a_target_busy_with_a_backup_skips_that_due_time(
    target: DatabaseTarget, admin: Any
) -> None:
    scheduled(target, admin, "15 2 * * *")
    with time_machine.travel(datetime(2026, 4, 1, 2, 15, tzinfo=UTC), tick=False):
        assert len(start_due_backups()) == 1
    with time_machine.travel(datetime(2026, 4, 2, 2, 15, tzinfo=UTC), tick=False):
        # Yesterday's is still queued (exclusive kind): refused, logged, the day skipped.
        assert start_due_backups() == []
    target.refresh_from_db()
    assert target.schedule_next_at == datetime(2026, 4, 3, 2, 15, tzinfo=UTC)
    assert len(backups_started(target)) == 1


def test_a_removed_schedule_starts_nothing(target: DatabaseTarget, admin: Any) -> None:
    scheduled(target, admin, "15 2 * * *")
    with time_machine.travel(T, tick=False):
        edit(client_for(admin), target, schedule="")
    target.refresh_from_db()
    assert target.schedule_next_at is None
    with time_machine.travel(datetime(2026, 4, 1, 2, 15, tzinfo=UTC), tick=False):
        assert start_due_backups() == []


def test_the_beat_ticks_every_minute() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["tick-backups"]
    assert entry["task"] == tasks.tick_backups.name == "apps.backups.tasks.tick_backups"
    assert str(entry["schedule"]) == "<crontab: * * * * * (m/h/dM/MY/d)>"


def test_a_scheduled_backup_names_its_schedule(target: DatabaseTarget, admin: Any) -> None:
    from apps.backups.operations import _schedule_label

    scheduled(target, admin, "15 2 * * *")
    with time_machine.travel(datetime(2026, 4, 1, 2, 15, tzinfo=UTC), tick=False):
        (operation,) = start_due_backups()
    assert _schedule_label(operation, target, note="") == "15 2 * * *"
    # A safety backup taken by a scheduled restore names why instead.
    assert _schedule_label(operation, target, note="Safety backup before …") == ""
    by_hand = Operation(kind="backups.backup", requested_by=admin)
    assert _schedule_label(by_hand, target, note="") == ""
