"""Scheduled test restores, with the clock controlled: a target gets one soon after its first
good backup, then quarterly (a day early, before it turns amber); never two at once; none
without a good backup. They are requested by the scheduler's account, an operator that
cannot sign in, and the beat schedule names the task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings

from apps.backups import tasks
from apps.backups.choices import BackupState, RestoreState
from apps.backups.models import DatabaseTarget
from apps.backups.schedules import (
    SCHEDULER_USERNAME,
    scheduler_user,
    start_due_test_restores,
    targets_due,
)
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.backups.conftest import Server, make_local_storage, make_target
from tests.backups.test_restore_input import add_backup
from tests.backups.test_restore_views import add_run

NOW = datetime(2026, 4, 1, 6, 41, tzinfo=UTC)


@pytest.fixture
def target(db: None, pg_server: Server, tmp_path: Path) -> DatabaseTarget:
    return make_target(pg_server, "postgres", make_local_storage(tmp_path), name="Orders DB")


def test_a_new_target_is_tested_after_its_first_good_backup(target: DatabaseTarget) -> None:
    with time_machine.travel(NOW, tick=False):
        add_backup(target, BackupState.FAILED)
        add_backup(target, BackupState.RUNNING)
        assert targets_due(NOW) == []  # nothing good to prove yet
        add_backup(target)

        started = start_due_test_restores()

    assert [operation.target_id for operation in started] == [str(target.pk)]
    operation = started[0]
    assert operation.kind == "backups.test_restore"
    assert operation.state == State.QUEUED
    assert operation.params == {"backup": None}  # the latest good one when it runs
    assert operation.reason == "Scheduled test restore of Orders DB (its first good backup)."
    assert operation.requested_by.get_username() == SCHEDULER_USERNAME
    # Queued and not run yet: the next beat does not start a second one.
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        assert start_due_test_restores() == []


def test_it_is_tested_again_each_quarter_before_it_turns_amber(target: DatabaseTarget) -> None:
    backup = add_backup(target)
    add_run(target, backup, RestoreState.PASSED, NOW)
    days = settings.BACKUP_TEST_RESTORE_DAYS

    assert targets_due(NOW + timedelta(days=30)) == []
    assert targets_due(NOW + timedelta(days=days - 1, hours=-1)) == []
    assert targets_due(NOW + timedelta(days=days - 1, hours=1)) == [target]


def test_a_failed_test_restore_is_not_retried_every_hour(target: DatabaseTarget) -> None:
    backup = add_backup(target)
    add_run(target, backup, RestoreState.FAILED, NOW)
    assert targets_due(NOW + timedelta(hours=1)) == []
    assert targets_due(NOW + timedelta(days=settings.BACKUP_TEST_RESTORE_DAYS)) == [target]


def test_the_scheduler_is_an_operator_that_cannot_sign_in(db: None) -> None:
    user = scheduler_user()
    assert scheduler_user() == user
    assert not user.has_usable_password()
    assert user.has_perm("operations.run_operation")
    assert not user.has_perm("operations.run_destructive_operation")


def test_the_beat_runs_the_task_hourly(target: DatabaseTarget) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["start-due-test-restores"]
    assert entry["task"] == tasks.start_due_test_restores.name
    add_backup(target)
    result = tasks.start_due_test_restores()
    assert result == {"started": [Operation.objects.get().pk]}
    assert tasks.start_due_test_restores() == {"started": []}
