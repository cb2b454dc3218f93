"""Backups and test restores on a schedule.

Backups: each target may have a cron schedule (apps.backups.cron); the minute beat task calls
``start_due_backups``, which claims each due time by a conditional UPDATE of the target's
``schedule_next_at`` before starting the backup, so two beats never start it twice.

Test restores: every target with a good backup gets one soon after its first
good backup, then every BACKUP_TEST_RESTORE_DAYS (quarterly). The hourly beat task
(apps.backups.tasks) calls ``start_due_test_restores``; the operations are requested by the
scheduler's own account, an operator that cannot sign in, so that their audit records and
their pages say who asked."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, Group, User
from django.db import transaction
from django.db.models import CharField, Exists, OuterRef, Q, Subquery
from django.db.models.functions import Cast
from django.utils import timezone

from apps.accounts.roles import OPERATOR
from apps.backups import cron
from apps.backups.choices import RestoreKind
from apps.backups.models import TARGET_TYPE, Backup, DatabaseTarget, RestoreRun
from apps.operations.actions import OperationRefused, do_start_operation
from apps.operations.models import Operation

logger = logging.getLogger(__name__)

SCHEDULER_USERNAME = "opsportal-scheduler"
SCHEDULE_LABEL = "scheduled test restores"
TEST_RESTORE_KIND = "backups.test_restore"
# Started this much before the interval ends, so that the next proof lands before the
# target turns amber (BACKUP_VERIFIED_RESTORE_MAX_AGE_DAYS, the same 90 days by default).
LEAD = timedelta(days=1)


def scheduler_user() -> User:
    """The account scheduled operations are requested by: an operator without a password."""
    user, created = User.objects.get_or_create(
        username=SCHEDULER_USERNAME, defaults={"first_name": "Scheduler"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
        user.groups.add(Group.objects.get(name=OPERATOR))
    return user


def is_scheduler(user: AbstractBaseUser) -> bool:
    return user.get_username() == SCHEDULER_USERNAME


def start(
    requester: User, kind: str, target: DatabaseTarget, params: dict[str, Any], reason: str
) -> Operation | None:
    """Request ``kind`` on ``target`` for a schedule, or None: a refusal (the target busy, a
    gate, the requester's role) is logged, and the scheduler goes on with the other targets."""
    try:
        return do_start_operation(requester, kind, str(target.pk), params, reason)
    except OperationRefused as exc:
        logger.warning("%s of %s not started: %s", kind, target.name, exc.message)
        return None


def under_way(kind: str) -> Exists:
    """For an annotation of targets: whether an operation of ``kind`` is queued, awaiting
    approval or running on the target."""
    return Exists(
        Operation.objects.active().filter(
            kind=kind,
            target_type=TARGET_TYPE,
            target_id=Cast(OuterRef("pk"), output_field=CharField()),
        )
    )


def targets_due(now: datetime) -> list[DatabaseTarget]:
    """Targets with a good backup whose last test restore started more than the interval
    (less the lead) ago, or never, and that have none queued or running now."""
    every = timedelta(days=settings.BACKUP_TEST_RESTORE_DAYS)
    last_test = (
        RestoreRun.objects.filter(target=OuterRef("pk"), kind=RestoreKind.TEST)
        .order_by("-started_at")
        .values("started_at")[:1]
    )
    return list(
        DatabaseTarget.objects.annotate(
            last_test=Subquery(last_test),
            has_good=Exists(Backup.objects.good().filter(target=OuterRef("pk"))),
            busy=under_way(TEST_RESTORE_KIND),
        )
        .filter(has_good=True, busy=False)
        .filter(Q(last_test__isnull=True) | Q(last_test__lt=now - every + LEAD))
        .order_by("pk")
    )


def start_due_test_restores(now: datetime | None = None) -> list[Operation]:
    """Request a test restore of the latest good backup of every target due; a refusal (the
    gate of another kind, a race) is logged and the others go on."""
    now = now or timezone.now()
    due = targets_due(now)
    if not due:
        return []
    requester = scheduler_user()
    started = []
    for target in due:
        first = not RestoreRun.objects.filter(target=target, kind=RestoreKind.TEST).exists()
        why = (
            "its first good backup" if first else f"every {settings.BACKUP_TEST_RESTORE_DAYS} days"
        )
        operation = start(
            requester,
            TEST_RESTORE_KIND,
            target,
            {"backup": None},
            f"Scheduled test restore of {target.name} ({why}).",
        )
        if operation is not None:
            started.append(operation)
    return started


# --- Scheduled backups ---------------------------------------------------------------------

BACKUP_KIND = "backups.backup"
BACKUP_SCHEDULE_LABEL = "backup schedule"


def next_due(target: DatabaseTarget, after: datetime) -> datetime | None:
    """The target's next due time after ``after``, None without a schedule."""
    if not target.schedule.strip():
        return None
    return cron.next_after(cron.parse(target.schedule), after)


def _claim(target: DatabaseTarget, now: datetime) -> bool:
    """Move the target's due time past ``now``, only if nobody did meanwhile: the one row
    UPDATE that makes each due time start one backup, whatever the number of beats."""
    following = next_due(target, now)
    claimed = DatabaseTarget.objects.filter(
        pk=target.pk, schedule=target.schedule, schedule_next_at=target.schedule_next_at
    ).update(schedule_next_at=following)
    return claimed == 1


def start_due_backups(now: datetime | None = None) -> list[Operation]:
    """Start a backup of every target whose scheduled time has come. A due time missed while
    no beat ran starts one backup (not one per missed time); a refusal (the target busy, a
    gate) is logged and that due time is skipped."""
    now = now or timezone.now()
    due = DatabaseTarget.objects.exclude(schedule="").filter(schedule_next_at__lte=now)
    started: list[Operation] = []
    requester: User | None = None
    for target in due.order_by("pk"):
        when = target.schedule_next_at
        with transaction.atomic():
            if not _claim(target, now):
                continue
            requester = requester or scheduler_user()
            operation = start(
                requester,
                BACKUP_KIND,
                target,
                {},
                f"Scheduled backup of {target.name} ({target.schedule}, due "
                f"{when:%Y-%m-%d %H:%M} UTC).",
            )
        if operation is not None:
            started.append(operation)
    return started
