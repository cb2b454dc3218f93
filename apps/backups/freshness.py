"""Backup freshness: a target whose newest good backup is older than its objective (26 hours
by default) is stale, red on the backups pages, and has a firing alert (source "backups")
until a good backup lands. The minute beat task calls ``check_freshness``; a backup that
succeeds calls ``resolve_if_fresh`` at once, so the alert does not wait for the next tick."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from apps.backups.models import Backup, DatabaseTarget
from apps.metrics.alerts import fire, resolve
from apps.metrics.models import AlertSeverity, AlertSource

SOURCE = AlertSource.BACKUPS


@dataclass(frozen=True)
class Freshness:
    stale: bool
    # Since when the target has been stale (newest good backup + objective), or when it will be.
    due_at: datetime
    words: str


def freshness(target: DatabaseTarget, newest_good: datetime | None, now: datetime) -> Freshness:
    """Whether ``target`` is stale at ``now``, given when its newest good backup finished.
    A target without any good backup is stale once its objective has passed since it was
    registered."""
    objective = timedelta(hours=target.freshness_hours)
    due_at = (newest_good or target.created_at) + objective
    if now < due_at:
        return Freshness(False, due_at, f"Fresh (objective {target.freshness_hours} h)")
    if newest_good is None:
        words = (
            f"Stale: no good backup since it was registered (objective {target.freshness_hours} h)"
        )
    else:
        hours = (now - newest_good).total_seconds() / 3600
        words = (
            f"Stale: newest good backup {hours:.0f} h old (objective {target.freshness_hours} h)"
        )
    return Freshness(True, due_at, words)


def fingerprint(target: DatabaseTarget) -> str:
    return f"backup-freshness:{target.pk}"


def _fire(target: DatabaseTarget, state: Freshness, now: datetime) -> None:
    fire(
        service=target.service,
        source=SOURCE,
        fingerprint=fingerprint(target),
        name=f"Backups of {target.name} are stale",
        severity=AlertSeverity.CRITICAL if target.is_production else AlertSeverity.WARNING,
        summary=f"{target.name} ({target.dsn_label}): {state.words}.",
        labels={"backup_target": target.name, "database": target.database},
        started_at=state.due_at,
        now=now,
    )


def check_freshness(now: datetime | None = None) -> dict[str, list[int]]:
    """Fire the alert of every stale target and resolve that of every fresh one: two queries
    and one alert call per target (each idempotent)."""
    now = now or timezone.now()
    newest = dict(
        Backup.objects.good()
        .values("target")
        .annotate(newest=Max("finished_at"))
        .values_list("target", "newest")
    )
    stale, fresh = [], []
    for target in DatabaseTarget.objects.select_related("service"):
        state = freshness(target, newest.get(target.pk), now)
        if state.stale:
            _fire(target, state, now)
            stale.append(target.pk)
        else:
            resolve(source=SOURCE, fingerprint=fingerprint(target), ended_at=now)
            fresh.append(target.pk)
    return {"stale": stale, "fresh": fresh}


def resolve_if_fresh(target: DatabaseTarget, now: datetime | None = None) -> None:
    """After a good backup: end the target's stale alert, if one is firing."""
    now = now or timezone.now()
    resolve(source=SOURCE, fingerprint=fingerprint(target), ended_at=now)
