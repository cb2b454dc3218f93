"""Faults: Prometheus down or hanging, NaN, an empty vector, several series where one was
expected, a query Prometheus rejects. Each gives "unavailable" or "no data" with a reason:
never a 500, never a false ok, and an alert already firing is not resolved by a blip."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from apps.metrics.choices import MetricStatus
from apps.metrics.evaluator import evaluate
from apps.metrics.models import Alert, MetricDefinition, MetricState, PrometheusConnection
from apps.services.models import DeploymentTarget
from tests.metrics.conftest import T0, connect, make_service, write_http
from tests.support.prometheus import OpenMetrics, PrometheusServer

pytestmark = pytest.mark.django_db


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def world() -> OpenMetrics:
    data = OpenMetrics()
    write_http(data, "failing", "shop", lambda s: 7.0)
    write_http(data, "idle", "shop", lambda s: 0.0, requests_per_second=0.0)  # 0 / 0 = NaN
    for pod in ("a", "b"):
        points = [(T0.timestamp() + minute * 60, 1.0) for minute in range(61)]
        data.gauge("pods_up", {"job": "failing", "namespace": "shop", "pod": pod}, points)
    return data


@pytest.fixture
def server(prometheus_session: Callable[[str, Callable[[], OpenMetrics]], PrometheusServer]) -> str:
    url = prometheus_session("faults", world).url
    connect(url)
    return url


def state(target: DeploymentTarget, key: str) -> MetricState:
    return MetricState.objects.get(target=target, definition__key=key)


def add(service_slug: str, key: str, template: str) -> MetricDefinition:
    return MetricDefinition.objects.create(
        service_id=MetricDefinition.objects.filter(service__slug=service_slug)[0].service_id,
        key=key,
        name=key,
        template=template,
        warning=1,
    )


def test_it_says_no_data_for_nan_and_for_an_empty_vector(server: str) -> None:
    _, idle = make_service("idle")
    evaluate(at(20))
    error = state(idle, "error_rate")
    assert (error.state, error.value) == (MetricStatus.NO_DATA, None)
    assert error.reason == "The query gives NaN (no traffic?)."
    latency = state(idle, "latency_p95")  # no histogram written
    assert latency.state == MetricStatus.NO_DATA
    assert latency.reason == "No series for this target."


def test_it_says_no_data_when_several_series_come_where_one_was_expected(server: str) -> None:
    _, failing = make_service("failing")
    add("failing", "pods", "sum by (job, namespace, pod) (pods_up{$labels})")
    evaluate(at(20))
    pods = state(failing, "pods")
    assert pods.state == MetricStatus.NO_DATA
    assert pods.reason.startswith("2 series where one was expected")


def test_it_says_no_data_with_prometheus_sentence_for_a_rejected_query(server: str) -> None:
    _, failing = make_service("failing")
    add("failing", "broken", "sum by (job, namespace) (rate(pods_up{$labels}[5m])")
    cycle = evaluate(at(20))
    broken = state(failing, "broken")
    assert broken.state == MetricStatus.NO_DATA
    assert broken.reason.startswith("Prometheus rejects the query: ")
    assert "parse error" in broken.reason
    # The other templates were evaluated all the same.
    assert state(failing, "request_rate").state == MetricStatus.OK
    assert cycle.unavailable == ""


def test_it_says_unavailable_when_prometheus_is_down_and_keeps_the_alert(
    server: str, closed_port_url: str
) -> None:
    _, failing = make_service("failing")
    evaluate(at(10))
    evaluate(at(16))
    assert state(failing, "error_rate").state == MetricStatus.CRITICAL
    connect(closed_port_url)
    cycle = evaluate(at(17))
    error = state(failing, "error_rate")
    assert error.state == MetricStatus.UNAVAILABLE
    assert "Cannot reach Prometheus" in error.reason and "connection refused" in error.reason
    assert error.value == pytest.approx(7.0)  # the last value known, not a made-up one
    # Down: the first request says so and the cycle stops asking.
    assert cycle.requests == 1
    assert Alert.objects.get(fingerprint__startswith="metric:").status == "firing"


def test_it_says_unavailable_when_prometheus_hangs(silent_server: str) -> None:
    _, target = make_service("failing")
    connect(silent_server, timeout=0.5)
    cycle = evaluate(at(20))
    assert cycle.requests == 1
    states = set(MetricState.objects.filter(target=target).values_list("state", flat=True))
    assert states == {MetricStatus.UNAVAILABLE}
    assert "did not answer within 0.5 s" in state(target, "error_rate").reason


def test_it_stores_nothing_when_metrics_are_not_configured(db: None) -> None:
    make_service("failing")
    PrometheusConnection.objects.all().delete()
    cycle = evaluate(at(20))
    assert cycle.unavailable.startswith("Metrics are not configured")
    assert cycle.requests == 0
    assert not MetricState.objects.exists()
