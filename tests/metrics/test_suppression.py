"""Alerts during maintenance windows (issue 6's interplay), with both apps on PostgreSQL and
the clock moved around the window's start and end (the maintenance beat starts and ends it):
while it runs, the alerts of its services are recorded as suppressed naming the window,
open no incident and tell no one; at its end, a critical production alert still firing
opens its incident, and one that resolved meanwhile opens nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection

from apps.audit.models import AuditEvent
from apps.incidents.models import EscalationLevel, EscalationPolicy, Incident, Notification
from apps.maintenance import actions, beat
from apps.maintenance.choices import OccurrenceState
from apps.maintenance.models import Occurrence, Window
from apps.metrics import alerts
from apps.metrics.models import Alert, AlertStatus
from apps.services.models import Service
from tests.conftest import client_for
from tests.factories import make_user
from tests.maintenance.helpers import schedule
from tests.metrics.test_alerts import World, make_world, switch_on
from tests.support.database import another_connection
from tests.support.waiting import wait_for

SCHEDULED_AT = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
START = datetime(2026, 6, 14, 2, 0, tzinfo=UTC)
END = START + timedelta(hours=2)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def world(db: None) -> World:
    """The alerts tests' service with its switch on, and someone on call at every level of
    the default escalation policy, so that an incident opened would tell them."""
    world = make_world()
    switch_on(world.service)
    default = EscalationPolicy.objects.get(is_default=True)
    for level in EscalationLevel.objects.filter(policy=default):
        level.users.set(
            [User.objects.create(username=f"oncall{level.level}", email=f"l{level.level}@ex.org")]
        )
    return world


@pytest.fixture
def owner(db: None) -> Any:
    return make_user("olga-operator", "operator")


def plan(owner: Any, services: list[Service], **fields: Any) -> Window:
    with time_machine.travel(SCHEDULED_AT, tick=False):
        return schedule(owner, services, START, END, **fields)


def tick(moment: datetime) -> beat.Tick:
    with time_machine.travel(moment, tick=False):
        return beat.tick(moment)


def fire(world: World, moment: datetime, **fields: Any) -> Alert:
    values: dict[str, Any] = {
        "service": world.service,
        "target": world.production,
        "source": "metrics",
        "fingerprint": "metric:1:1",
        "name": "Error rate",
        "severity": "critical",
        "summary": "Error rate 7 % > 5 %",
        "labels": {"job": "api", "namespace": "shop"},
        "started_at": moment,
    }
    values.update(fields)
    with time_machine.travel(moment, tick=False):
        return alerts.fire(**values)


def occurrence_of(window: Window) -> Occurrence:
    return Occurrence.objects.get(window=window, original_start=START)


@pytest.fixture
def running(world: World, owner: Any) -> Iterator[Window]:
    window = plan(owner, [world.service])
    assert tick(START).started == 1
    assert occurrence_of(window).state == OccurrenceState.IN_PROGRESS
    yield window


def named(window: Window) -> str:
    return f"Maintenance #{window.pk} \u201cDatabase upgrade\u201d in progress"


def test_a_critical_alert_in_the_window_is_recorded_suppressed_naming_it(
    world: World, running: Window, viewer: Any
) -> None:
    alert = fire(world, START + MINUTE)
    assert alert.status == AlertStatus.FIRING
    assert alert.suppressed
    assert alert.incident is None
    assert not Incident.objects.exists()
    assert not Notification.objects.exists()
    event = AuditEvent.objects.get(action="alert.fired", target_id=str(alert.pk))
    assert event.data["suppressed"] is True
    assert event.data["suppressed_by"] == named(running)
    # Replays while it runs change nothing.
    fire(world, START + 2 * MINUTE)
    assert not Incident.objects.exists()
    # The alerts page says why it is quiet.
    page = client_for(viewer).get("/alerts/").content.decode()
    row = page.split(f'id="alert-{alert.pk}"')[1].split("</tr>")[0]
    assert "Maintenance</span>" in row and "Silenced" not in row


def test_the_minute_before_the_start_the_same_alert_opens_an_incident(
    world: World, owner: Any
) -> None:
    window = plan(owner, [world.service])
    assert tick(START - MINUTE).started == 0
    alert = fire(world, START - MINUTE)
    assert not alert.suppressed
    assert alert.incident is not None
    assert Notification.objects.filter(incident=alert.incident).exists()
    # Once the window starts, the incident it already has is left alone.
    tick(START)
    assert occurrence_of(window).state == OccurrenceState.IN_PROGRESS
    again = fire(world, START + MINUTE)
    assert again.suppressed and again.incident == alert.incident
    assert Incident.objects.count() == 1


def test_a_warning_before_the_window_turning_critical_in_it_stays_quiet(
    world: World, owner: Any
) -> None:
    plan(owner, [world.service])
    warning = fire(world, START - MINUTE, severity="warning")
    assert not warning.suppressed and warning.incident is None
    tick(START)
    critical = fire(world, START + MINUTE, severity="critical")
    assert critical.pk == warning.pk
    assert critical.suppressed and critical.incident is None
    assert not Incident.objects.exists()
    event = AuditEvent.objects.get(action="alert.suppressed")
    assert event.target_id == str(critical.pk)
    assert "Database upgrade" in event.reason


def test_at_the_end_a_critical_alert_still_firing_opens_its_incident(
    world: World, running: Window
) -> None:
    alert = fire(world, START + MINUTE)
    assert tick(END - MINUTE).ended == 0
    alert.refresh_from_db()
    assert alert.suppressed and not Incident.objects.exists()
    assert tick(END).ended == 1
    alert.refresh_from_db()
    assert not alert.suppressed
    incident = Incident.objects.get()
    assert alert.incident == incident
    assert Notification.objects.filter(incident=incident).exists()
    released = AuditEvent.objects.get(action="alert.unsuppressed")
    assert released.target_id == str(alert.pk)
    assert released.reason == f"Maintenance #{running.pk} \u201cDatabase upgrade\u201d ended"
    ended = AuditEvent.objects.get(action="maintenance.ended")
    assert ended.data["alerts_released"] == [alert.pk]
    # A second tick finds nothing more to do.
    assert tick(END + MINUTE).ended == 0
    assert Incident.objects.count() == 1


def test_an_alert_that_resolved_in_the_window_opens_nothing_at_its_end(
    world: World, running: Window
) -> None:
    fire(world, START + MINUTE)
    alerts.resolve(source="metrics", fingerprint="metric:1:1", ended_at=START + 30 * MINUTE)
    tick(END)
    alert = Alert.objects.get()
    assert alert.status == AlertStatus.RESOLVED and alert.suppressed
    assert not Incident.objects.exists()
    assert not AuditEvent.objects.filter(action="alert.unsuppressed").exists()


def test_ending_the_window_early_lets_the_alert_go_at_once(
    world: World, owner: Any, running: Window
) -> None:
    alert = fire(world, START + MINUTE)
    with time_machine.travel(START + 10 * MINUTE, tick=False):
        actions.do_end_occurrence(owner, occurrence_of(running))
    alert.refresh_from_db()
    assert not alert.suppressed and alert.incident is not None
    after = fire(world, START + 11 * MINUTE, fingerprint="metric:2:1", name="p95 latency")
    assert not after.suppressed and after.incident == alert.incident


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
def test_an_end_and_an_alert_recorded_in_an_overlapping_window_do_not_deadlock(
    transactional_db: None, world: World, owner: Any
) -> None:
    """Windows B and A cover the same service; A ends while an alert of that service is being
    recorded. The recording locks the covering occurrences in id order (B, then A) before the
    alert; the end locks the same ones, in the same order, before the alerts it lets go.
    When the end locked A, then the alerts, then B, each held what the other waited for and
    PostgreSQL aborted one of them."""
    first, second = plan(owner, [world.service], title="B"), plan(owner, [world.service])
    assert tick(START).started == 2
    alert = fire(world, START + MINUTE)
    b, a = occurrence_of(first), occurrence_of(second)
    assert b.pk < a.pk and alert.suppressed
    ended: list[Exception | None] = []

    def end_a() -> None:
        try:
            with time_machine.travel(START + 10 * MINUTE, tick=False):
                actions.do_end_occurrence(owner, a)
            ended.append(None)
        except Exception as exc:  # the test reports it
            ended.append(exc)
        finally:
            connection.close()

    with another_connection() as recorder, another_connection(autocommit=True) as monitor:
        # The recording has taken B (window_in_progress, FOR NO KEY UPDATE) and asks for A next.
        lock = "SELECT id FROM maintenance_occurrence WHERE id = %s FOR NO KEY UPDATE"
        recorder.execute(lock, [b.pk])
        thread = threading.Thread(target=end_a)
        thread.start()
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        wait_for(lambda: monitor.execute(waiting).fetchone() == (1,), what="the end to wait")
        recorder.execute(lock, [a.pk])  # would wait for the end, which waits for B
        recorder.commit()
        thread.join(timeout=30)

    assert ended == [None]
    assert occurrence_of(second).state == OccurrenceState.COMPLETED
    alert.refresh_from_db()
    assert alert.suppressed and alert.incident is None  # B still covers it


def test_a_window_on_staging_leaves_production_alerts_alone(world: World, owner: Any) -> None:
    plan(owner, [world.service], environments=[world.staging.environment])
    tick(START)
    staging = fire(world, START + MINUTE, fingerprint="metric:1:2", target=world.staging)
    production = fire(world, START + MINUTE)
    assert staging.suppressed
    assert not production.suppressed and production.incident is not None


def test_other_services_alerts_are_not_suppressed(world: World, owner: Any) -> None:
    other = Service.objects.create(name="web", slug="web", team="Web")
    plan(owner, [other])
    tick(START)
    alert = fire(world, START + MINUTE)
    assert not alert.suppressed and alert.incident is not None


def test_an_alert_without_a_target_is_covered_by_a_window_of_all_environments(
    world: World, running: Window
) -> None:
    alert = fire(world, START + MINUTE, source="alertmanager", fingerprint="am1", target=None)
    assert alert.suppressed


def test_a_silence_outliving_the_window_keeps_the_alert_suppressed(
    world: World, owner: Any, running: Window
) -> None:
    alert = fire(world, START + MINUTE)
    with time_machine.travel(START + 2 * MINUTE, tick=False):
        alerts.do_silence_alert(owner, alert, duration=timedelta(hours=4), reason="Known issue")
    tick(END)
    alert.refresh_from_db()
    assert alert.suppressed and alert.incident is None
    assert not Incident.objects.exists()


def test_overlapping_windows_suppress_until_the_last_one_ends(
    world: World, owner: Any, running: Window
) -> None:
    with time_machine.travel(SCHEDULED_AT, tick=False):
        longer = schedule(
            owner, [world.service], START + MINUTE, END + timedelta(hours=1), title="Longer"
        )
    tick(START + MINUTE)
    alert = fire(world, START + 2 * MINUTE)
    assert tick(END).ended == 1
    alert.refresh_from_db()
    assert alert.suppressed and not Incident.objects.exists()
    later = fire(world, END + MINUTE, fingerprint="metric:2:1")
    assert later.suppressed
    event = AuditEvent.objects.get(action="alert.fired", target_id=str(later.pk))
    assert event.data["suppressed_by"] == f"Maintenance #{longer.pk} \u201cLonger\u201d in progress"
    assert tick(END + timedelta(hours=1)).ended == 1
    assert set(Alert.objects.filter(suppressed=False).values_list("pk", flat=True)) == {
        alert.pk,
        later.pk,
    }
    assert Incident.objects.count() == 1
