"""The evaluator against a real Prometheus holding an hour of written traffic: exact states
for a service at 3 % errors (warning), at 7 % (critical once past the 5 min duration), one
that recovers (back to ok), pending before the duration, and the alerts fired and resolved;
one request per distinct template whatever the number of services."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from apps.metrics.choices import MetricStatus
from apps.metrics.evaluator import evaluate, fingerprint
from apps.metrics.models import Alert, MetricDefinition, MetricState, StateChange
from apps.services.models import DeploymentTarget
from tests.metrics.conftest import T0, connect, make_service, write_http
from tests.support.prometheus import OpenMetrics, PrometheusServer

pytestmark = pytest.mark.django_db


def recovering(seconds: float) -> float:
    return 7.0 if seconds < 30 * 60 else 0.5


def world() -> OpenMetrics:
    data = OpenMetrics()
    write_http(data, "steady", "shop", lambda s: 3.0, latency_seconds=0.7)
    write_http(data, "failing", "shop", lambda s: 7.0, latency_seconds=0.2)
    write_http(data, "recovering", "shop", recovering)
    write_http(data, "healthy", "shop", lambda s: 0.2, latency_seconds=0.05)
    return data


@pytest.fixture
def server(prometheus_session: Callable[[str, Callable[[], OpenMetrics]], PrometheusServer]) -> str:
    url = prometheus_session("evaluator", world).url
    connect(url)
    return url


def state(target: DeploymentTarget, key: str) -> MetricState:
    return MetricState.objects.get(target=target, definition__key=key)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_it_derives_warning_critical_and_recovery_with_the_for_duration(server: str) -> None:
    _, steady = make_service("steady")
    _, failing = make_service("failing")
    _, recovering_target = make_service("recovering")
    _, healthy = make_service("healthy")

    first = evaluate(at(10))
    # Past the thresholds, but not yet for 5 minutes: pending, and the state says no more.
    for target, pending in ((steady, "warning"), (failing, "critical")):
        error = state(target, "error_rate")
        assert error.state == MetricStatus.NO_DATA
        assert error.pending_state == pending
        assert error.pending_since == at(10)
    assert state(steady, "error_rate").value == pytest.approx(3.0)
    assert state(failing, "error_rate").value == pytest.approx(7.0)
    assert state(healthy, "error_rate").state == MetricStatus.OK
    assert state(healthy, "error_rate").value == pytest.approx(0.2)
    assert state(healthy, "request_rate").value == pytest.approx(10.0)

    evaluate(at(14))  # 4 minutes: still pending
    assert state(failing, "error_rate").state == MetricStatus.NO_DATA

    evaluate(at(16))  # 6 minutes past the threshold: for 5 minutes is met
    assert state(steady, "error_rate").state == MetricStatus.WARNING
    assert state(failing, "error_rate").state == MetricStatus.CRITICAL
    assert state(failing, "error_rate").since == at(16)
    assert state(recovering_target, "error_rate").state == MetricStatus.CRITICAL
    assert state(healthy, "error_rate").state == MetricStatus.OK
    # p95 of requests that all take 0.7 s: 0.5 + 0.95 × 0.5 s within the (0.5, 1] bucket.
    assert state(steady, "latency_p95").value == pytest.approx(975.0)
    assert state(steady, "latency_p95").state == MetricStatus.WARNING

    evaluate(at(40))  # the last 5 minutes of "recovering" are at 0.5 %
    assert state(recovering_target, "error_rate").state == MetricStatus.OK
    assert state(recovering_target, "error_rate").value == pytest.approx(0.5)
    assert state(failing, "error_rate").state == MetricStatus.CRITICAL
    assert state(failing, "error_rate").since == at(16)  # unchanged since it entered

    history = list(
        StateChange.objects.filter(target=recovering_target, definition__key="error_rate")
        .order_by("at")
        .values_list("old", "new", "at")
    )
    assert history == [("no_data", "critical", at(16)), ("critical", "ok", at(40))]

    # No series at all for CPU and memory: no data, never ok.
    assert state(healthy, "cpu").state == MetricStatus.NO_DATA
    assert state(healthy, "cpu").reason == "No series for this target."
    # One request per distinct enabled template (7 defaults), not per service.
    assert first.requests == 7
    assert first.evaluated == 4 * 7


def test_it_fires_and_resolves_the_alerts(server: str) -> None:
    _, recovering_target = make_service("recovering")
    definition = MetricDefinition.objects.get(service__slug="recovering", key="error_rate")
    key = fingerprint(definition.pk, recovering_target.pk)
    evaluate(at(10))
    assert not Alert.objects.filter(fingerprint=key).exists()
    evaluate(at(16))
    alert = Alert.objects.get(source="metrics", fingerprint=key)
    assert (alert.severity, alert.status) == ("critical", "firing")
    assert "Error rate" in alert.summary and "7%" in alert.summary
    evaluate(at(17))  # still critical: the same alert, not a second one
    assert Alert.objects.filter(fingerprint=key).count() == 1
    evaluate(at(40))
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert alert.ended_at == at(40)


def test_it_waits_for_the_duration_again_after_a_dip(server: str) -> None:
    _, failing = make_service("failing")
    definition = MetricDefinition.objects.get(service__slug="failing", key="error_rate")
    definition.warning, definition.critical = 1.0, 50.0  # 7 % is now a warning
    definition.save(update_fields=["warning", "critical"])
    evaluate(at(10))
    definition.warning = 10.0  # now under the warning level: back to ok, timer reset
    definition.save(update_fields=["warning"])
    evaluate(at(12))
    assert state(failing, "error_rate").state == MetricStatus.OK
    assert state(failing, "error_rate").pending_state == ""
    definition.warning = 1.0
    definition.save(update_fields=["warning"])
    evaluate(at(14))
    evaluate(at(18))  # 4 minutes since the timer restarted
    assert state(failing, "error_rate").state == MetricStatus.OK
    assert state(failing, "error_rate").pending_state == MetricStatus.WARNING
    evaluate(at(19))
    assert state(failing, "error_rate").state == MetricStatus.WARNING


def test_it_asks_once_per_template_whatever_the_number_of_services(server: str) -> None:
    for number in range(30):
        make_service(f"svc-{number}", namespace=f"ns-{number % 3}")
    make_service("steady")
    cycle = evaluate(at(20))
    assert cycle.requests == 7
    assert cycle.evaluated == 31 * 7
    steady = DeploymentTarget.objects.get(deployment="steady")
    assert state(steady, "error_rate").value == pytest.approx(3.0)
    assert state(steady, "error_rate").pending_state == MetricStatus.WARNING
