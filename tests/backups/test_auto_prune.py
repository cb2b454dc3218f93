"""Automatic pruning: an admin's standing consent, given with a reason on the target's form,
under which the hourly task prunes what the policy lets go, in that admin's name; the consent
ends, recorded, when that admin may no longer prune. Real deletions on a real worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User

from apps.accounts.roles import OPERATOR
from apps.audit.choices import ReviewRule
from apps.audit.models import AuditEvent, ReviewItem
from apps.backups import tasks
from apps.backups.choices import BackupState
from apps.backups.models import Backup, DatabaseTarget
from apps.backups.schedules import SCHEDULER_USERNAME
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.backups.conftest import Server, make_local_storage, make_target
from tests.backups.test_backup_schedules import edit
from tests.backups.test_prune_operation import stored_backup
from tests.conftest import client_for
from tests.support.waiting import wait_for


@pytest.fixture
def target(db: None, pg_server: Server, backup_dir: Path) -> DatabaseTarget:
    return make_target(
        pg_server,
        "postgres",
        make_local_storage(backup_dir),
        name="Orders DB",
        keep_daily=1,
        keep_weekly=0,
        keep_monthly=0,
    )


def stored(target: DatabaseTarget, days_ago: int) -> Backup:
    """A good backup of ``days_ago`` days ago, with its file in the directory storage."""
    return stored_backup(target, target.storage, days_ago, s3=None)


def consent(admin: Any, target: DatabaseTarget) -> DatabaseTarget:
    client = client_for(admin)
    response = edit(client, target, auto_prune="on", auto_prune_reason="The disk fills up.")
    assert response.status_code == 302, response.content.decode()[:3000]
    target.refresh_from_db()
    return target


def test_turning_it_on_needs_a_reason_and_records_who_consented(
    admin: Any, target: DatabaseTarget
) -> None:
    response = edit(client_for(admin), target, auto_prune="on")

    assert response.status_code == 400
    assert "Say why backups past the policy may be deleted" in response.content.decode()
    target.refresh_from_db()
    assert not target.auto_prune

    target = consent(admin, target)

    assert target.auto_prune and target.auto_prune_by == admin
    assert target.auto_prune_reason == "The disk fills up."
    assert target.auto_prune_since is not None
    event = AuditEvent.objects.get(action="databasetarget.changed", actor=admin)
    assert event.reason == "The disk fills up."
    assert event.data["changes"] == {"auto_prune": ["False", "True"]}
    assert ReviewItem.objects.get(event=event).rule == ReviewRule.AUTO_PRUNE  # for managers
    page = client_for(admin).get(f"/backups/targets/{target.pk}/").content.decode()
    assert "Pruned automatically every hour, as alice-admin consented" in page
    assert "“The disk fills up.”" in page


def test_the_form_says_what_turning_it_on_deletes_now(admin: Any, target: DatabaseTarget) -> None:
    for days in (9, 8, 1):
        stored(target, days)
    page = client_for(admin).get(f"/backups/targets/{target.pk}/edit/").content.decode()
    assert "Turning it on deletes the 2 backups now past the policy within the hour." in page


def test_turning_it_off_ends_the_consent(admin: Any, target: DatabaseTarget) -> None:
    consent(admin, target)
    assert edit(client_for(admin), target).status_code == 302  # the box unticked
    target.refresh_from_db()
    assert not target.auto_prune
    assert (target.auto_prune_by, target.auto_prune_reason, target.auto_prune_since) == (
        None,
        "",
        None,
    )
    page = client_for(admin).get(f"/backups/targets/{target.pk}/").content.decode()
    assert "Pruned only by hand." in page


def test_only_someone_who_may_prune_can_turn_it_on(target: DatabaseTarget) -> None:
    """Editing targets and pruning are separate permissions: the box is disabled without the
    second, and a forged POST changes nothing."""
    editor = User.objects.create_user("ed-editor")
    editor.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["change_databasetarget", "view_backup"], content_type__app_label="backups"
        )
    )
    page = client_for(editor).get(f"/backups/targets/{target.pk}/edit/").content.decode()
    assert "Only someone allowed to prune backups can change this." in page

    response = edit(client_for(editor), target, auto_prune="on", auto_prune_reason="why not")
    assert response.status_code == 302

    target.refresh_from_db()
    assert not target.auto_prune and target.auto_prune_by is None


def test_the_hourly_task_prunes_in_the_consenting_admins_name(
    admin: Any, target: DatabaseTarget, celery_worker: Any
) -> None:
    doomed = [stored(target, days) for days in (9, 8)]
    newest = stored(target, 0)
    assert tasks.start_due_prunes() == {"started": []}  # not turned on: nothing

    consent(admin, target)
    started = tasks.start_due_prunes()["started"]

    assert len(started) == 1
    operation = Operation.objects.get(pk=started[0])
    assert operation.kind == "backups.prune" and operation.requested_by == admin
    assert operation.reason.startswith("Automatic pruning of Orders DB, turned on by alice-admin")
    assert operation.reason.endswith(": The disk fills up.")
    assert sorted(operation.params["backups"]) == sorted(backup.pk for backup in doomed)
    assert tasks.start_due_prunes() == {"started": []}  # one prune at a time
    wait_for(lambda: Operation.objects.get(pk=operation.pk).is_final, timeout=60, what="prune")
    operation.refresh_from_db()
    assert operation.state == State.SUCCEEDED, operation.error
    for backup in doomed:
        backup.refresh_from_db()
        assert backup.state == BackupState.PRUNED
        assert not (Path(target.storage.directory) / backup.key).exists()
    assert Backup.objects.get(pk=newest.pk).is_good
    assert (Path(target.storage.directory) / newest.key).exists()

    # Nothing past the policy now: no operation, and no refused or invalid request recorded.
    assert tasks.start_due_prunes() == {"started": []}
    assert Operation.objects.filter(kind="backups.prune").count() == 1
    assert not AuditEvent.objects.filter(action__in=["operation.refused", "operation.invalid"])


@pytest.mark.parametrize("how", ["demoted", "deactivated"])
def test_a_consent_that_no_longer_holds_turns_it_off_once(
    how: str, admin: Any, target: DatabaseTarget
) -> None:
    consent(admin, target)
    for days in (9, 1):
        stored(target, days)
    if how == "demoted":
        admin.groups.set([Group.objects.get(name=OPERATOR)])
    else:
        admin.is_active = False
        admin.save(update_fields=["is_active"])
    admin = User.objects.get(pk=admin.pk)  # no cached permissions
    assert not admin.has_perm("operations.run_destructive_operation")

    assert tasks.start_due_prunes() == {"started": []}
    assert tasks.start_due_prunes() == {"started": []}

    target.refresh_from_db()
    assert not target.auto_prune and target.auto_prune_by is None
    assert not Operation.objects.filter(kind="backups.prune").exists()
    stop = AuditEvent.objects.get(
        action="databasetarget.changed", actor__username=SCHEDULER_USERNAME
    )
    assert stop.reason == "Automatic pruning stopped: alice-admin may no longer prune backups."
    assert stop.data["changes"] == {"auto_prune": ["True", "False"]}
    assert not AuditEvent.objects.filter(action="operation.refused").exists()


def test_the_beat_runs_it_hourly() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["start-due-prunes"]
    assert entry["task"] == tasks.start_due_prunes.name
    assert entry["schedule"] == crontab(minute=47)  # every hour
