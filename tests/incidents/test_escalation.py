"""Acknowledgement deadlines and update reminders, as the beat task sees them: time is moved
with time_machine, never slept through; "exactly once" is checked by running the task
twice and by real concurrent workers (threads with their own database connections)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections

from apps.audit.models import AuditEvent
from apps.common.locks import Lock, exclusively
from apps.incidents.actions import (
    do_acknowledge_incident,
    do_post_update,
    do_resolve_incident,
)
from apps.incidents.choices import EntryKind, Visibility
from apps.incidents.escalation import escalate_overdue, next_level, remind_overdue_updates
from apps.incidents.models import EscalationLevel, Incident, Notification, TimelineEntry
from apps.incidents.tasks import watch_incidents
from tests.factories import ensure_incident_defaults, make_incident, make_user

# A Tuesday at 3 a.m.: no weekend in sight for the business-day rule.
T = datetime(2025, 3, 4, 3, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T, tick=False) as traveller:
        yield traveller


@pytest.fixture
def on_call(db: None) -> dict[int, Any]:
    """The default policy's three levels, each with one person (who never signs in here:
    no password to hash)."""
    ensure_incident_defaults()
    people = {
        number: User.objects.create(username=name, email=f"{name}@example.com")
        for number, name in ((1, "oscar-oncall"), (2, "lena-lead"), (3, "carla-cto"))
    }
    for level in EscalationLevel.objects.filter(policy__is_default=True):
        level.users.set([people[level.level]])
    return people


def escalations(incident: Incident) -> list[dict[str, Any]]:
    return [
        entry.data
        for entry in TimelineEntry.objects.filter(incident=incident, kind=EntryKind.ESCALATED)
    ]


def reminders(incident: Incident) -> list[TimelineEntry]:
    return list(TimelineEntry.objects.filter(incident=incident, kind=EntryKind.REMINDER))


def test_it_escalates_a_sev1_to_level_2_at_5_minutes_and_to_level_3_after_the_next_period(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    incident = make_incident(operator, "SEV-1", title="Checkout down")
    assert incident.acknowledge_by == T + 5 * MINUTE

    clock.move_to(T + 5 * MINUTE - timedelta(seconds=1))
    assert escalate_overdue(T + 5 * MINUTE - timedelta(seconds=1)) == 0

    clock.move_to(T + 5 * MINUTE)
    assert escalate_overdue(T + 5 * MINUTE) == 1
    incident.refresh_from_db()
    assert incident.escalation_level == 2
    assert incident.acknowledge_by == T + 10 * MINUTE
    [first] = escalations(incident)
    assert first["from"] == 1
    assert first["to"] == 2
    assert first["level"] == 2
    assert first["name"] == "Engineering lead"
    assert first["last_level"] is False
    assert first["told"] == ["lena-lead"]
    told = Notification.objects.filter(incident=incident, event=EntryKind.ESCALATED)
    assert list(told.values_list("recipient", flat=True)) == ["lena-lead@example.com"]

    clock.move_to(T + 10 * MINUTE - timedelta(seconds=1))
    assert escalate_overdue(T + 10 * MINUTE - timedelta(seconds=1)) == 0
    clock.move_to(T + 10 * MINUTE)
    assert escalate_overdue(T + 10 * MINUTE) == 1
    incident.refresh_from_db()
    assert incident.escalation_level == 3
    assert [data["to"] for data in escalations(incident)] == [2, 3]
    assert escalations(incident)[1]["told"] == ["carla-cto"]
    assert escalations(incident)[1]["last_level"] is True
    last = TimelineEntry.objects.filter(incident=incident, kind=EntryKind.ESCALATED).last()
    assert last is not None
    assert last.text == (
        "Not acknowledged within 5m. Told: carla-cto. This is the policy's last level."
    )
    assert next_level(incident) is None

    # The last level: nothing more happens, however long it stays unacknowledged.
    for minutes in (15, 20, 60, 24 * 60):
        clock.move_to(T + minutes * MINUTE)
        assert escalate_overdue(T + minutes * MINUTE) == 0
    incident.refresh_from_db()
    assert incident.escalation_level == 3
    assert len(escalations(incident)) == 2


def test_each_escalation_is_audited_as_the_escalation_not_a_person(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    incident = make_incident(operator, "SEV-1")
    clock.move_to(T + 5 * MINUTE)
    escalate_overdue(T + 5 * MINUTE)
    event = AuditEvent.objects.get(action="incident.escalated")
    assert event.actor is None
    assert event.actor_label == "escalation"
    assert event.target_id == str(incident.pk)
    assert event.data["to"] == 2
    entry = TimelineEntry.objects.get(incident=incident, kind=EntryKind.ESCALATED)
    assert entry.author is None
    assert entry.text == "Not acknowledged within 5m. Told: lena-lead."


def test_the_task_run_twice_escalates_once(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    incident = make_incident(operator, "SEV-1")
    clock.move_to(T + 5 * MINUTE)
    assert watch_incidents() == {"escalated": 1, "reminded": 0}
    assert watch_incidents() == {"escalated": 0, "reminded": 0}
    assert escalate_overdue(T + 5 * MINUTE) == 0
    incident.refresh_from_db()
    assert incident.escalation_level == 2
    assert len(escalations(incident)) == 1
    assert AuditEvent.objects.filter(action="incident.escalated").count() == 1


def test_an_acknowledged_incident_never_escalates(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    incident = make_incident(operator, "SEV-1")
    clock.move_to(T + 4 * MINUTE)
    do_acknowledge_incident(on_call[1], incident)
    for minutes in (5, 10, 15, 120):
        clock.move_to(T + minutes * MINUTE)
        assert escalate_overdue(T + minutes * MINUTE) == 0
    incident.refresh_from_db()
    assert incident.escalation_level == 1
    assert escalations(incident) == []


def test_an_incident_acknowledged_at_level_2_stops_there(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    incident = make_incident(operator, "SEV-1")
    clock.move_to(T + 5 * MINUTE)
    escalate_overdue(T + 5 * MINUTE)
    clock.move_to(T + 7 * MINUTE)
    do_acknowledge_incident(on_call[2], incident)
    clock.move_to(T + 10 * MINUTE)
    assert escalate_overdue(T + 10 * MINUTE) == 0
    incident.refresh_from_db()
    assert incident.escalation_level == 2


def test_a_resolved_incident_neither_escalates_nor_is_reminded(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    incident = make_incident(operator, "SEV-1")
    do_resolve_incident(operator, incident, current_status="False alarm.")
    Incident.objects.filter(pk=incident.pk).update(acknowledged_at=None)  # even so
    clock.move_to(T + 60 * MINUTE)
    assert escalate_overdue(T + 60 * MINUTE) == 0
    assert remind_overdue_updates(T + 60 * MINUTE) == 0


def test_a_late_beat_climbs_one_level_per_run_from_the_deadlines_that_passed(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    incident = make_incident(operator, "SEV-1")
    clock.move_to(T + 12 * MINUTE)  # the beat was down for a while
    assert escalate_overdue(T + 12 * MINUTE) == 1
    incident.refresh_from_db()
    # Counted from the passed deadline, not from now: level 2's time is already up.
    assert incident.acknowledge_by == T + 10 * MINUTE
    assert escalate_overdue(T + 12 * MINUTE) == 1
    incident.refresh_from_db()
    assert incident.escalation_level == 3


def test_a_sev4_deadline_skips_the_weekend(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    friday = datetime(2025, 3, 7, 10, 0, tzinfo=UTC)
    monday = datetime(2025, 3, 10, 10, 0, tzinfo=UTC)
    clock.move_to(friday)
    incident = make_incident(operator, "SEV-4")
    assert incident.acknowledge_by == monday
    clock.move_to(monday - MINUTE)
    assert escalate_overdue(monday - MINUTE) == 0
    clock.move_to(monday)
    assert escalate_overdue(monday) == 1
    incident.refresh_from_db()
    assert incident.acknowledge_by == monday + timedelta(days=1)


def test_an_incident_without_a_policy_stays_at_level_1(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    incident = make_incident(operator, "SEV-1")
    Incident.objects.filter(pk=incident.pk).update(policy=None)
    clock.move_to(T + 30 * MINUTE)
    assert escalate_overdue(T + 30 * MINUTE) == 0


def test_the_overdue_update_reminder_fires_once_per_cadence(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    incident = make_incident(operator, "SEV-1")  # updates every 15 minutes
    do_acknowledge_incident(on_call[1], incident)
    assert incident.next_update_due == T + 15 * MINUTE

    def remind_at(minutes: int) -> int:
        clock.move_to(T + minutes * MINUTE)
        return remind_overdue_updates(T + minutes * MINUTE)

    assert remind_at(14) == 0
    assert remind_at(15) == 1
    incident.refresh_from_db()
    assert incident.reminded_for == T + 15 * MINUTE
    [reminder] = reminders(incident)
    assert reminder.author is None
    assert reminder.data["commander"] == operator.username
    assert "post a status update" in reminder.text
    notified = Notification.objects.filter(incident=incident, event=EntryKind.REMINDER)
    assert list(notified.values_list("recipient", flat=True)) == [operator.email]

    # Once per cadence: not again before the next one.
    assert [remind_at(minutes) for minutes in (15, 16, 20, 29)] == [0, 0, 0, 0]
    # Still no update one cadence later: reminded again, once.
    assert remind_at(30) == 1
    assert remind_at(31) == 0
    assert len(reminders(incident)) == 2

    # An update moves the due time on and ends the reminders…
    clock.move_to(T + 32 * MINUTE)
    do_post_update(
        operator, incident, visibility=Visibility.INTERNAL, current_status="Rolling back."
    )
    assert remind_at(40) == 0
    assert remind_at(46) == 0
    # …until that one is late too.
    assert remind_at(47) == 1
    assert len(reminders(incident)) == 3
    assert AuditEvent.objects.filter(action="incident.update_reminded").count() == 3


def test_a_late_beat_reminds_once_for_the_latest_missed_update(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    incident = make_incident(operator, "SEV-2")  # updates every 30 minutes
    clock.move_to(T + 100 * MINUTE)
    assert remind_overdue_updates(T + 100 * MINUTE) == 1
    assert remind_overdue_updates(T + 100 * MINUTE) == 0
    incident.refresh_from_db()
    assert incident.reminded_for == T + 90 * MINUTE
    assert reminders(incident)[0].data["missed"] == 3


def test_a_severity_without_a_cadence_is_never_reminded(
    operator: Any, on_call: dict[int, Any], clock: time_machine.Traveller
) -> None:
    make_incident(operator, "SEV-3")
    clock.move_to(T + timedelta(days=2))
    assert remind_overdue_updates(T + timedelta(days=2)) == 0


def test_the_beat_schedule_runs_the_watcher_every_30_seconds() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["watch-incidents"]
    assert entry["task"] == "apps.incidents.tasks.watch_incidents"
    assert entry["schedule"] == 30.0
    assert watch_incidents.name == entry["task"]


def _in_threads(count: int, work: Callable[[], int]) -> list[int]:
    """Run ``work`` in ``count`` threads at once, each on its own database connection."""
    barrier = threading.Barrier(count)
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(work())
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_workers_racing_escalate_each_incident_exactly_once(clock: time_machine.Traveller) -> None:
    ensure_incident_defaults()
    operator = make_user("olga-operator", "operator")
    incidents = [make_incident(operator, "SEV-1") for _ in range(3)]
    now = T + 5 * MINUTE
    clock.move_to(now)

    results = _in_threads(4, lambda: escalate_overdue(now))

    assert sum(results) == 3
    for incident in incidents:
        incident.refresh_from_db()
        assert incident.escalation_level == 2
        assert len(escalations(incident)) == 1
    assert AuditEvent.objects.filter(action="incident.escalated").count() == 3

    later = T + 10 * MINUTE
    clock.move_to(later)
    assert sum(_in_threads(4, lambda: escalate_overdue(later))) == 3
    assert TimelineEntry.objects.filter(kind=EntryKind.ESCALATED).count() == 6


@pytest.mark.django_db(transaction=True)
def test_workers_racing_remind_exactly_once(clock: time_machine.Traveller) -> None:
    ensure_incident_defaults()
    operator = make_user("olga-operator", "operator")
    incident = make_incident(operator, "SEV-1")
    now = T + 15 * MINUTE
    clock.move_to(now)

    assert sum(_in_threads(4, lambda: remind_overdue_updates(now))) == 1
    assert len(reminders(incident)) == 1
    assert AuditEvent.objects.filter(action="incident.update_reminded").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_beat_that_fires_while_the_previous_run_works_skips_its_turn() -> None:
    holding = threading.Event()
    release = threading.Event()

    def previous_run() -> None:
        try:
            with exclusively(Lock.WATCH_INCIDENTS) as acquired:
                assert acquired
                holding.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=previous_run)
    thread.start()
    try:
        assert holding.wait(timeout=10)
        assert watch_incidents() == {"skipped": True}
    finally:
        release.set()
        thread.join(timeout=30)
    assert watch_incidents() == {"escalated": 0, "reminded": 0}
