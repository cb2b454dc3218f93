"""What the beat task watches on open incidents (apps.incidents.tasks.watch_incidents):

- an unacknowledged incident whose acknowledgement deadline passed escalates to the next
  level of its policy, and the deadline moves one period on, so a SEV-1 declared at T
  reaches level 2 at T+5 min and level 3 at T+10 min; at the last level nothing more
  happens (the deadline stays passed: the page says "escalated to the last level");
- a SEV-1/SEV-2 whose next update is overdue reminds its commander once per cadence.

Each change is claimed with a conditional UPDATE (zero rows updated: another worker, or an
earlier run of the same beat, already did it), so escalations and reminders happen exactly
once however many workers race."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from apps.audit.records import record
from apps.incidents import notifications
from apps.incidents.actions import add_entry, audit_target
from apps.incidents.choices import OPEN_STATES, EntryKind
from apps.incidents.models import EscalationLevel, Incident
from apps.incidents.policy_forms import format_period

logger = logging.getLogger(__name__)

# The audit history's name for what the beat task does on its own.
SYSTEM_ACTOR = "escalation"


def next_level(incident: Incident) -> EscalationLevel | None:
    """The level an unacknowledged ``incident`` escalates to next, or None at the last one."""
    if incident.policy_id is None:
        return None
    return EscalationLevel.objects.filter(
        policy_id=incident.policy_id, level=incident.escalation_level + 1
    ).first()


def _told(level: EscalationLevel) -> tuple[list[str], list[str]]:
    """The people a level names (directly or through its groups) and its groups, by name."""
    people = User.objects.filter(
        Q(pk__in=level.users.values("pk")) | Q(groups__in=level.groups.values("pk")),
        is_active=True,
    ).distinct()
    return (
        sorted(people.values_list("username", flat=True)),
        sorted(level.groups.values_list("name", flat=True)),
    )


def escalate_overdue(now: datetime) -> int:
    """Escalate every open, unacknowledged incident whose deadline passed by ``now`` and
    whose policy has a further level, one level each; returns how many were escalated."""
    has_next = EscalationLevel.objects.filter(
        policy_id=OuterRef("policy_id"), level=OuterRef("escalation_level") + 1
    )
    due = (
        Incident.objects.filter(
            state__in=OPEN_STATES,
            acknowledged_at__isnull=True,
            acknowledge_by__lte=now,
        )
        .filter(Exists(has_next))
        .order_by("acknowledge_by", "pk")
        .values_list("pk", "escalation_level")
    )
    escalated = 0
    for pk, level in list(due):
        try:
            escalated += _escalate(pk, level, now)
        except Exception:
            # One incident's failure (a bad policy row, a lost connection) must not stop
            # the others from escalating: the next beat tries it again.
            logger.exception("escalating incident %s failed", pk)
    return escalated


def _escalate(pk: int, level: int, now: datetime) -> bool:
    """Escalate incident ``pk`` from ``level`` to the next one, unless someone else did."""
    with transaction.atomic():
        incident = (
            Incident.objects.select_related("severity", "policy", "commander").filter(pk=pk).first()
        )
        if incident is None or incident.escalation_level != level:
            return False
        target = next_level(incident)
        if target is None or incident.acknowledge_by is None:
            return False
        passed = incident.acknowledge_by
        # The next level has one more period to answer, counted from the deadline that
        # passed (not from now: a late beat does not give it extra time).
        deadline = incident.severity.acknowledge_by(passed)
        claimed = Incident.objects.filter(
            pk=pk,
            state__in=OPEN_STATES,
            escalation_level=level,
            acknowledged_at__isnull=True,
            acknowledge_by=passed,  # not moved meanwhile (a severity change)
            acknowledge_by__lte=now,
        ).update(escalation_level=target.level, acknowledge_by=deadline)
        if not claimed:
            return False
        incident.escalation_level = target.level
        incident.acknowledge_by = deadline
        people, groups = _told(target)
        last = next_level(incident) is None
        data = {
            "from": level,
            "to": target.level,
            "level": target.level,
            "name": target.name,
            "told": people,
            "groups": groups,
            "deadline": None if last else deadline.isoformat(),
            "last_level": last,
        }
        told = [*people, *(f"group {group}" for group in groups)]
        entry = add_entry(
            incident,
            EntryKind.ESCALATED,
            None,
            occurred_at=now,
            text=(
                f"Not acknowledged within {format_period(incident.severity.acknowledge_within)}. "
                + (
                    f"Told: {', '.join(told)}."
                    if told
                    else "This level names nobody: an admin sets its people in the policy."
                )
                + (" This is the policy's last level." if last else "")
            ),
            data=data,
        )
        record(
            "incident.escalated",
            actor=None,
            actor_label=SYSTEM_ACTOR,
            target=audit_target(incident),
            data=data,
        )
        notifications.notify(incident, EntryKind.ESCALATED, level=target.level, entry=entry)
    logger.info("incident %s escalated to level %s", pk, target.level)
    return True


def reminder_due(next_update_due: datetime, every: timedelta, now: datetime) -> datetime:
    """The latest due time at or before ``now`` of the cadence that started missing at
    ``next_update_due``: the first reminder is for it, the next one a cadence later…"""
    missed = (now - next_update_due) // every
    return next_update_due + missed * every


def remind_overdue_updates(now: datetime) -> int:
    """Remind the commanders of open incidents whose next update is overdue, once per
    cadence; returns how many were reminded."""
    overdue = (
        Incident.objects.filter(
            state__in=OPEN_STATES,
            next_update_due__lte=now,
            severity__update_every__isnull=False,
        )
        .order_by("next_update_due", "pk")
        .values_list("pk", "next_update_due", "reminded_for", "severity__update_every")
    )
    reminded = 0
    for pk, next_update_due, reminded_for, every in list(overdue):
        if next_update_due is None or every is None:
            continue  # the query's filters exclude them; this tells the type checker
        due = reminder_due(next_update_due, every, now)
        if reminded_for is not None and reminded_for >= due:
            continue
        try:
            reminded += _remind(pk, next_update_due, due, now)
        except Exception:
            logger.exception("reminding incident %s failed", pk)
    return reminded


def _remind(pk: int, next_update_due: datetime, due: datetime, now: datetime) -> bool:
    """Remind the commander of incident ``pk`` about the update due at ``due``, unless that
    was done already or an update came in meanwhile."""
    with transaction.atomic():
        claimed = (
            Incident.objects.filter(pk=pk, state__in=OPEN_STATES, next_update_due=next_update_due)
            .filter(Q(reminded_for__isnull=True) | Q(reminded_for__lt=due))
            .update(reminded_for=due)
        )
        if not claimed:
            return False
        incident = Incident.objects.select_related("severity", "policy", "commander").get(pk=pk)
        every = incident.severity.update_every
        assert every is not None  # the query chose incidents with a cadence
        data = {
            "due": due.isoformat(),
            "first_due": next_update_due.isoformat(),
            "missed": int((due - next_update_due) // every) + 1,
            "commander": incident.commander.get_username(),
            "every_minutes": int(every.total_seconds() // 60),
        }
        entry = add_entry(
            incident,
            EntryKind.REMINDER,
            None,
            occurred_at=now,
            text=(
                f"{incident.severity.key} updates are due every {format_period(every)}: "
                f"{incident.commander.get_username()}, post a status update."
            ),
            data=data,
        )
        record(
            "incident.update_reminded",
            actor=None,
            actor_label=SYSTEM_ACTOR,
            target=audit_target(incident),
            data=data,
        )
        notifications.notify(incident, EntryKind.REMINDER, entry=entry)
    logger.info("incident %s: commander reminded of the update due at %s", pk, due)
    return True
