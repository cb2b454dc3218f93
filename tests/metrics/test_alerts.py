"""fire() and resolve() (apps.metrics.alerts) on PostgreSQL: one firing row per fingerprint,
replays that change nothing, silences, and alerts opening, joining and annotating incidents."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.incidents.choices import EntryKind
from apps.incidents.models import Incident, Severity, TimelineEntry
from apps.metrics import alerts, incident_link
from apps.metrics.models import Alert, AlertStatus, ServiceAlerting, Silence
from apps.services.choices import ClusterAccess
from apps.services.models import Cluster, DeploymentTarget, Environment, Service
from tests.factories import ensure_incident_defaults, make_incident, make_user

STARTED = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)


@dataclass
class World:
    service: Service
    production: DeploymentTarget
    staging: DeploymentTarget


def make_world() -> World:
    ensure_incident_defaults()
    service = Service.objects.create(name="shop-api", slug="shop-api", team="Shop")
    staging = Environment.objects.create(name="staging", slug="staging", order=0)
    production = Environment.objects.create(
        name="production", slug="production", is_production=True, order=1
    )
    cluster = Cluster.objects.create(name="alerts-cluster", access=ClusterAccess.IN_CLUSTER)

    def target(environment: Environment, namespace: str) -> DeploymentTarget:
        return DeploymentTarget.objects.create(
            service=service,
            environment=environment,
            cluster=cluster,
            namespace=namespace,
            deployment="api",
            container="api",
        )

    return World(service, target(production, "shop"), target(staging, "shop-staging"))


@pytest.fixture
def world(db: None) -> World:
    return make_world()


def switch_on(service: Service, severity: str | None = None) -> None:
    ServiceAlerting.objects.create(
        service=service,
        auto_incident=True,
        incident_severity=Severity.objects.get(key=severity) if severity else None,
    )


def fire(world: World, **fields: Any) -> Alert:
    values: dict[str, Any] = {
        "service": world.service,
        "target": world.production,
        "source": "metrics",
        "fingerprint": "metric:1:1",
        "name": "Error rate",
        "severity": "critical",
        "summary": "Error rate 7 % > 5 %",
        "labels": {"job": "api", "namespace": "shop"},
        "started_at": STARTED,
    }
    values.update(fields)
    return alerts.fire(**values)


def test_it_records_a_firing_alert_and_audits_it(world: World) -> None:
    alert = fire(world)
    assert alert.status == AlertStatus.FIRING
    assert (alert.service, alert.target, alert.severity) == (
        world.service,
        world.production,
        "critical",
    )
    event = AuditEvent.objects.get(action="alert.fired")
    assert event.target_id == str(alert.pk)
    assert event.actor_label == "metrics"


def test_firing_twice_updates_the_one_row(world: World) -> None:
    first = fire(world, severity="warning", summary="3 %")
    second = fire(world, severity="critical", summary="7 %")
    assert first.pk == second.pk
    alert = Alert.objects.get()
    assert (alert.severity, alert.summary, alert.times_seen) == ("critical", "7 %", 2)
    assert AuditEvent.objects.filter(action="alert.fired").count() == 1


def test_the_database_refuses_a_second_firing_row(world: World) -> None:
    alert = fire(world)
    duplicate = Alert(
        source=alert.source,
        fingerprint=alert.fingerprint,
        name="again",
        severity="critical",
        started_at=STARTED,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_resolve_ends_the_episode_once(world: World) -> None:
    fire(world)
    ended = STARTED + timedelta(minutes=20)
    alert = alerts.resolve(source="metrics", fingerprint="metric:1:1", ended_at=ended)
    assert alert is not None
    assert (alert.status, alert.ended_at) == (AlertStatus.RESOLVED, ended)
    assert alerts.resolve(source="metrics", fingerprint="metric:1:1", ended_at=ended) is None
    assert AuditEvent.objects.filter(action="alert.resolved").count() == 1


def test_a_late_replay_of_a_resolved_episode_does_not_fire_it_again(world: World) -> None:
    fire(world)
    alerts.resolve(source="metrics", fingerprint="metric:1:1", ended_at=STARTED)
    replay = fire(world)
    assert replay.status == AlertStatus.RESOLVED
    assert Alert.objects.count() == 1


def test_a_new_episode_after_the_resolution_is_a_new_alert(world: World) -> None:
    first = fire(world)
    alerts.resolve(source="metrics", fingerprint="metric:1:1", ended_at=STARTED)
    second = fire(world, started_at=STARTED + timedelta(hours=1))
    assert second.pk != first.pk
    assert second.status == AlertStatus.FIRING


# --- Alerts to incidents ---------------------------------------------------------------------


def test_with_the_switch_off_a_critical_alert_opens_no_incident(world: World) -> None:
    alert = fire(world)
    assert alert.incident is None
    assert not Incident.objects.exists()


def test_a_critical_production_alert_opens_an_incident_once(world: World) -> None:
    switch_on(world.service, "SEV-1")
    alert = fire(world)
    incident = Incident.objects.get()
    assert alert.incident == incident
    assert incident.severity.key == "SEV-1"
    assert list(incident.services.all()) == [world.service]
    assert list(incident.environments.all()) == [world.production.environment]
    assert incident.declared_by.username == incident_link.ALERTS_USERNAME
    assert not incident.declared_by.is_active
    assert incident.entries.filter(kind=EntryKind.ALERT, data__phase="opened").count() == 1
    # A replay (the evaluator or Alertmanager repeating itself) changes nothing.
    fire(world)
    fire(world)
    assert Incident.objects.count() == 1
    assert TimelineEntry.objects.filter(kind=EntryKind.ALERT).count() == 1


def test_the_default_severity_is_sev_2(world: World) -> None:
    switch_on(world.service)
    fire(world)
    assert Incident.objects.get().severity.key == "SEV-2"


def test_a_critical_alert_joins_the_services_open_incident(world: World) -> None:
    switch_on(world.service)
    person = make_user("pat-operator", "operator")
    incident = make_incident(person, "SEV-2", services=[world.service])
    alert = fire(world)
    assert alert.incident == incident
    assert Incident.objects.count() == 1
    entry = incident.entries.get(kind=EntryKind.ALERT)
    assert entry.data["phase"] == "attached"
    assert entry.data["alert"] == alert.pk
    assert "Error rate" in entry.text
    assert AuditEvent.objects.filter(action="incident.alert_attached").count() == 1


def test_a_second_alert_of_the_service_joins_the_incident_the_first_opened(world: World) -> None:
    switch_on(world.service)
    first = fire(world)
    second = fire(world, fingerprint="metric:2:1", name="p95 latency")
    assert first.incident is not None
    assert second.incident == first.incident
    assert Incident.objects.count() == 1


def test_the_resolution_adds_a_timeline_entry_once(world: World) -> None:
    switch_on(world.service)
    alert = fire(world)
    ended = STARTED + timedelta(minutes=30)
    alerts.resolve(source="metrics", fingerprint="metric:1:1", ended_at=ended)
    alerts.resolve(source="metrics", fingerprint="metric:1:1", ended_at=ended)
    entries = TimelineEntry.objects.filter(kind=EntryKind.ALERT, data__phase="resolved")
    assert entries.count() == 1
    assert entries.get().occurred_at == ended
    assert entries.get().incident_id == alert.incident_id


@pytest.mark.parametrize(
    "case",
    ["warning", "staging", "no target"],
)
def test_only_critical_alerts_on_production_open_incidents(world: World, case: str) -> None:
    switch_on(world.service)
    cases: dict[str, dict[str, Any]] = {
        "warning": {"severity": "warning"},
        "staging": {"target": world.staging},
        "no target": {"target": None},
    }
    fields = cases[case]
    alert = fire(world, **fields)
    assert alert.incident is None
    assert not Incident.objects.exists()


def test_a_warning_that_turns_critical_opens_the_incident_then(world: World) -> None:
    switch_on(world.service)
    assert fire(world, severity="warning").incident is None
    assert fire(world, severity="critical").incident is not None


def test_a_silenced_alert_records_but_opens_no_incident(world: World) -> None:
    switch_on(world.service)
    person = make_user("pat-operator", "operator")
    silence = Silence.objects.create(
        source="metrics",
        fingerprint="metric:1:1",
        alert=fire(world, severity="warning"),
        reason="known",
        created_by=person,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    alert = fire(world, severity="critical")
    assert alert.suppressed
    assert alert.times_seen == 2
    assert not Incident.objects.exists()
    # Lifting the silence lets the still-firing alert open its incident now.
    alerts.do_lift_silence(person, silence)
    alert.refresh_from_db()
    assert not alert.suppressed
    assert alert.incident is not None


def test_an_expired_silence_no_longer_holds_the_alert_back(world: World) -> None:
    switch_on(world.service)
    person = make_user("pat-operator", "operator")
    first = fire(world, severity="warning")
    Silence.objects.create(
        source="metrics",
        fingerprint="metric:1:1",
        alert=first,
        reason="known",
        created_by=person,
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    alert = fire(world)
    assert not alert.suppressed
    assert alert.incident is not None


def test_two_receivers_firing_at_once_make_one_alert(transactional_db: None) -> None:
    """Two workers (or Alertmanager's HA pair) deliver the same alert at the same moment:
    the partial unique constraint keeps one firing row and the loser updates it."""
    world = make_world()
    barrier = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(fire(world).pk)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len(results) == 2 and results[0] == results[1]
    alert = Alert.objects.get()
    assert alert.times_seen == 2
    assert AuditEvent.objects.filter(action="alert.fired").count() == 1
