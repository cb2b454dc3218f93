"""The retention policy of a target: which good backups pruning keeps and which it deletes.

Like the runbooks' "7 daily, 4 weekly, 12 monthly": going from the newest good backup back,
the newest backup of each of the ``keep_daily`` most recent days that have one is kept, and
likewise per ISO week and per month (UTC); a backup kept by any rule is kept. Whatever the
policy, the newest good backup is never deleted, nor one that a restore or test restore is
reading (its run still going, or its operation queued, awaiting approval or running)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db.models import IntegerField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from apps.backups.choices import RestoreState
from apps.backups.models import Backup, DatabaseTarget, RestoreRun
from apps.operations.choices import ACTIVE_STATES
from apps.operations.models import Operation

RESTORE_KINDS = ("backups.restore", "backups.test_restore")


@dataclass
class Plan:
    """Every good backup of the target, each kept (with the reasons) or to delete."""

    keep: dict[int, list[str]] = field(default_factory=dict)
    delete: list[Backup] = field(default_factory=list)
    kept: list[Backup] = field(default_factory=list)

    @property
    def delete_ids(self) -> list[int]:
        return [backup.pk for backup in self.delete]


def in_use_ids(target: DatabaseTarget) -> set[int]:
    """Backups of ``target`` that a restore is reading or is about to read."""
    running = RestoreRun.objects.filter(
        backup__target=target, state=RestoreState.RUNNING, operation__state__in=ACTIVE_STATES
    ).values_list("backup_id", flat=True)
    requested = (
        Operation.objects.active()
        .filter(kind__in=RESTORE_KINDS)
        .annotate(backup_id=Cast(KT("params__backup"), IntegerField()))
        .filter(backup_id__isnull=False)
        .values_list("backup_id", flat=True)
    )
    # A test restore of "the latest" (no backup chosen) reads the newest good one, always kept.
    wanted = {pk for pk in running if pk is not None} | set(requested)
    return set(Backup.objects.filter(target=target, pk__in=wanted).values_list("pk", flat=True))


def _periods(
    backups: list[Backup], count: int, key: Callable[[datetime], Hashable]
) -> list[Backup]:
    """The newest backup of each of the ``count`` most recent periods that have one."""
    chosen: list[Backup] = []
    seen: set[Hashable] = set()
    for backup in backups:
        if len(seen) >= count:
            break
        period = key(_when(backup))
        if period not in seen:
            seen.add(period)
            chosen.append(backup)
    return chosen


def _when(backup: Backup) -> datetime:
    return (backup.finished_at or backup.started_at).astimezone(UTC)


RULES: tuple[tuple[str, str, Callable[[datetime], Hashable]], ...] = (
    ("keep_daily", "daily", lambda when: when.date()),
    ("keep_weekly", "weekly", lambda when: when.isocalendar()[:2]),
    ("keep_monthly", "monthly", lambda when: (when.year, when.month)),
)


def plan(target: DatabaseTarget) -> Plan:
    """What pruning ``target`` now would keep and delete."""
    backups = sorted(
        Backup.objects.good().filter(target=target).select_related("storage"),
        key=lambda backup: (_when(backup), backup.pk),
        reverse=True,
    )
    result = Plan()
    if not backups:
        return result
    result.keep.setdefault(backups[0].pk, []).append("newest good backup")
    for attribute, word, key in RULES:
        for backup in _periods(backups, int(getattr(target, attribute)), key):
            result.keep.setdefault(backup.pk, []).append(word)
    for pk in in_use_ids(target):
        result.keep.setdefault(pk, []).append("a restore is using it")
    for backup in backups:
        (result.kept if backup.pk in result.keep else result.delete).append(backup)
    return result
