"""The service page's metrics panel: charts drawn from range queries against a real Prometheus
holding the series written here, with the thresholds as lines and deploys on the time axis;
and the sentences when Prometheus is down, not configured, rejects a query or has no data."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.template.loader import render_to_string
from django.urls import reverse

from apps.metrics import charts, panels
from apps.metrics.client import Series
from apps.metrics.models import MetricDefinition, MetricState, PrometheusConnection
from apps.operations.choices import State
from apps.services.models import TARGET_TYPE, DeploymentTarget, Environment, Service
from tests.conftest import client_for
from tests.factories import make_operation
from tests.services.conftest import make_cluster
from tests.support.prometheus import OpenMetrics, PrometheusServer

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
JOB, NAMESPACE = "api-production", "shop"
STEP = 15  # the written samples fall on the 1 h chart's steps, so it plots exactly them


def error_percent(index: int) -> float:
    """The written error rate at sample ``index`` (every 15 s): 0.5 % to 3 %, and a spike
    to 8 % for the ten minutes ending 20 minutes before NOW."""
    if 40 <= index % 480 < 80:
        return 8.0
    return 0.5 + (index % 6) * 0.5


SAMPLES = 8 * 60 * 4  # 8 hours every 15 s, ending at NOW
START = NOW.timestamp() - (SAMPLES - 1) * STEP


def written() -> list[tuple[float, float]]:
    return [(START + index * STEP, error_percent(SAMPLES - 1 - index)) for index in range(SAMPLES)]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    data = OpenMetrics()
    data.gauge("shop_error_percent", {"job": JOB, "namespace": NAMESPACE}, written())
    data.gauge("shop_error_percent", {"job": "other", "namespace": NAMESPACE}, written())
    server = PrometheusServer.start(Path(tmp_path_factory.mktemp("prometheus")), data)
    yield server
    server.stop()


@pytest.fixture
def target(db: None) -> DeploymentTarget:
    service = Service(name="shop-api", slug="shop-api", team="Shop")
    service._skip_metric_defaults = True  # type: ignore[attr-defined]  # these tests define theirs
    service.save()
    production = Environment.objects.create(
        name="production", slug="production", is_production=True
    )
    cluster = make_cluster("emulated", "apiVersion: v1\nkind: Config\n")
    return DeploymentTarget.objects.create(
        service=service,
        environment=production,
        cluster=cluster,
        namespace=NAMESPACE,
        deployment=JOB,
        container="api",
    )


def define(target: DeploymentTarget, key: str = "error_rate", **fields: Any) -> MetricDefinition:
    fields.setdefault("template", "shop_error_percent{$labels}")
    return MetricDefinition.objects.create(
        service=target.service,
        key=key,
        name=fields.pop("name", "Error rate"),
        unit=fields.pop("unit", "%"),
        warning=fields.pop("warning", 1.0),
        critical=fields.pop("critical", 5.0),
        **fields,
    )


@pytest.fixture
def connected(prometheus: PrometheusServer, db: None) -> PrometheusConnection:
    return PrometheusConnection.objects.create(url=prometheus.url)


# --- The chart as a pure function --------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "step", "points"),
    [("1h", 15, 240), ("6h", 120, 180), ("24h", 300, 288), ("7d", 3600, 168)],
)
def test_it_picks_a_step_giving_at_most_300_points(key: str, step: int, points: int) -> None:
    span = charts.RANGES[key]
    assert charts.step_for(span) == step
    assert span.total_seconds() / step == points


def test_it_breaks_the_line_where_there_is_no_value() -> None:
    start = NOW - timedelta(minutes=2)
    series = Series(
        {"job": JOB},
        [
            (start.timestamp(), 1.0),
            (start.timestamp() + 15, 2.0),
            (start.timestamp() + 30, math.nan),
            (start.timestamp() + 45, 3.0),
            (start.timestamp() + 60, math.nan),
            (start.timestamp() + 75, 4.0),
            (start.timestamp() + 90, 4.5),
        ],
    )

    chart = charts.time_chart(
        [series], name="Errors", unit="%", start=start, end=NOW, step_seconds=15
    )

    (line,) = chart.lines
    assert len(line.segments) == 2
    assert line.dots == [(chart.x_of(start.timestamp() + 45), chart.y_of(3.0))]
    assert [value for _, value in line.points] == [1.0, 2.0, 3.0, 4.0, 4.5]


def test_it_keeps_both_thresholds_inside_the_chart_even_far_above_the_values() -> None:
    start = NOW - timedelta(hours=1)
    series = Series({}, [(start.timestamp(), 100.0), (NOW.timestamp(), 120.0)])

    chart = charts.time_chart(
        [series],
        name="p95 latency",
        unit="ms",
        start=start,
        end=NOW,
        step_seconds=15,
        warning=500,
        critical=1000,
    )

    assert [t.level for t in chart.thresholds] == ["warning", "critical"]
    assert chart.high >= 1000
    for threshold in chart.thresholds:
        assert chart.top <= threshold.y <= chart.bottom
    assert chart.thresholds[1].y < chart.thresholds[0].y  # critical drawn above warning
    assert chart.aria_label == (
        "p95 latency: latest 120 ms, highest 120 ms, lowest 100 ms; "
        "warning threshold: 500 ms; critical threshold: 1000 ms"
    )


def test_it_says_no_data_rather_than_drawing_an_empty_chart() -> None:
    start = NOW - timedelta(hours=1)
    chart = charts.time_chart(
        [Series({}, [(start.timestamp(), math.nan)])],
        name="Errors",
        unit="%",
        start=start,
        end=NOW,
        step_seconds=15,
        critical=5,
    )
    assert chart.empty
    assert chart.aria_label == "Errors: no data in this window"


# --- Charts from a real Prometheus -------------------------------------------------------


def test_the_charts_range_query_returns_the_written_points(
    connected: PrometheusConnection, target: DeploymentTarget
) -> None:
    definition = define(target)

    panel = panels.metrics_panel(target, "1h", now=NOW)

    assert panel.message == ""
    (box,) = panel.charts
    assert box.definition == definition
    assert box.chart is not None
    (line,) = box.chart.lines  # the other job's series is not this target's
    start = NOW.timestamp() - 3600
    expected = [(at, value) for at, value in written() if at >= start]
    assert len(expected) == 241
    assert line.points == expected
    assert max(value for _, value in line.points) == 8.0
    # Every plotted value is drawn where the axis says it is.
    first_segment = line.segments[0].split(" ")
    x, y = (float(part) for part in first_segment[0].split(","))
    assert (x, y) == (box.chart.x_of(expected[0][0]), box.chart.y_of(expected[0][1]))


def test_it_draws_the_thresholds_and_a_deploy_at_its_time(
    connected: PrometheusConnection, target: DeploymentTarget, operator: Any
) -> None:
    define(target)
    deployed_at = NOW - timedelta(minutes=20)
    rollout = make_operation(
        operator,
        kind="services.rollout",
        state=State.SUCCEEDED,
        target_key=f"{TARGET_TYPE}:{target.pk}",
        params={"image": "registry.example.com/shop/api:2.0.0", "auto_rollback": True},
        finished_at=deployed_at,
    )
    # A deploy of another target and one outside the window are not marked.
    make_operation(
        operator,
        kind="services.rollout",
        state=State.SUCCEEDED,
        target_key=f"{TARGET_TYPE}:{target.pk + 1000}",
        finished_at=deployed_at,
    )
    make_operation(
        operator,
        kind="services.rollback",
        state=State.SUCCEEDED,
        target_key=f"{TARGET_TYPE}:{target.pk}",
        finished_at=NOW - timedelta(hours=2),
    )

    panel = panels.metrics_panel(target, "1h", now=NOW)

    chart = panel.charts[0].chart
    assert chart is not None
    warning, critical = chart.thresholds
    assert (warning.value, warning.y) == (1.0, chart.y_of(1.0))
    assert (critical.value, critical.y) == (5.0, chart.y_of(5.0))
    (mark,) = chart.deploys
    assert mark.x == chart.x_of(deployed_at.timestamp())
    assert mark.x == pytest.approx(chart.left + chart.plot_width * 40 / 60, abs=0.1)
    assert mark.label == (
        f"Rollout #{rollout.pk} of registry.example.com/shop/api:2.0.0 (succeeded) "
        "at 10 Mar 11:40 UTC"
    )
    html = render_to_string("metrics/_chart.html", {"chart": chart})
    assert f'y1="{critical.y}" y2="{critical.y}" data-testid="threshold-critical"' in html
    assert "<title>Critical threshold: 5 %</title>" in html
    assert f'<line x1="{mark.x}" x2="{mark.x}"' in html
    assert f'href="/operations/{rollout.pk}/"' in html
    assert "style=" not in html
    assert "<script" not in html


def test_the_7_day_chart_asks_for_at_most_300_points(
    connected: PrometheusConnection, target: DeploymentTarget
) -> None:
    define(target)

    panel = panels.metrics_panel(target, "7d", now=NOW)

    assert panel.step_seconds == 3600
    chart = panel.charts[0].chart
    assert chart is not None
    (line,) = chart.lines
    # The data covers 8 hours: 8 hourly steps (and the one at its start) see a value.
    assert 0 < len(line.points) <= 300
    assert line.points[-1] == (NOW.timestamp(), error_percent(0))


def test_it_shows_the_stored_states_against_the_thresholds(
    connected: PrometheusConnection, target: DeploymentTarget
) -> None:
    definition = define(target)
    since = NOW - timedelta(minutes=7)
    MetricState.objects.create(
        definition=definition, target=target, state="critical", value=7.25, since=since
    )
    latency = define(
        target, "latency_p95", name="p95 latency", unit="ms", warning=500, critical=1000
    )

    panel = panels.metrics_panel(target, "1h", now=NOW)

    errors, p95 = panel.rows
    assert (errors.state, errors.value, errors.thresholds, errors.since) == (
        "critical",
        "7.25 %",
        "warning > 1 %, critical > 5 %",
        since,
    )
    assert p95.definition == latency
    assert (p95.state, p95.value) == ("no_data", "not evaluated yet")


# --- When there is nothing to draw --------------------------------------------------------


def test_it_says_when_metrics_are_not_configured(target: DeploymentTarget) -> None:
    define(target)
    panel = panels.metrics_panel(target, "1h", now=NOW)
    assert panel.charts == []
    assert panel.message.startswith("No charts: Metrics are not configured")
    assert [row.state for row in panel.rows] == ["no_data"]


def test_it_says_when_prometheus_is_down(target: DeploymentTarget) -> None:
    define(target)
    define(target, "latency_p95", name="p95 latency")
    PrometheusConnection.objects.create(url="http://127.0.0.1:9", timeout_seconds=1)

    panel = panels.metrics_panel(target, "1h", now=NOW)

    assert panel.charts == []
    assert panel.message == (
        "Metrics unavailable: Cannot reach Prometheus at http://127.0.0.1:9 (connection refused)."
    )


def test_it_shows_prometheus_rejecting_a_query_and_a_query_without_data(
    connected: PrometheusConnection, target: DeploymentTarget
) -> None:
    define(target, "cpu", name="CPU", template="sum(rate(cpu{$labels}[5m])")
    define(target, "memory", name="Memory", template="absent_metric{$labels}")
    define(target, "error_rate")

    panel = panels.metrics_panel(target, "6h", now=NOW)

    by_key = {box.definition.key: box for box in panel.charts}
    assert by_key["cpu"].chart is None
    assert by_key["cpu"].message.startswith("Prometheus rejected the query: ")
    assert "parse error" in by_key["cpu"].message
    assert by_key["memory"].chart is None
    assert by_key["memory"].message == (
        "No data: Prometheus has no value of Memory for shop-api (production) over the last "
        "6 hours."
    )
    assert by_key["error_rate"].chart is not None


def test_it_says_when_a_service_has_no_metrics(target: DeploymentTarget) -> None:
    panel = panels.metrics_panel(target, "1h", now=NOW)
    assert panel.message.startswith("No metrics are defined for shop-api")


# --- The view ------------------------------------------------------------------------------


def url(target: DeploymentTarget, window: str = "") -> str:
    path = reverse("metrics:target-panel", args=[target.pk])
    return f"{path}?range={window}" if window else path


@time_machine.travel(NOW, tick=False)
def test_it_loads_the_panel_as_a_fragment_for_htmx(
    connected: PrometheusConnection, target: DeploymentTarget, viewer: Any
) -> None:
    define(target)

    response = client_for(viewer).get(url(target, "1h"), headers={"HX-Request": "true"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert 'data-testid="metric-chart"' in html
    assert 'data-testid="threshold-critical"' in html
    assert 'aria-current="true">1h</a>' in html
    assert f'hx-get="{url(target, "7d")}"' in html
    assert f'href="{url(target, "7d")}"' in html


@time_machine.travel(NOW, tick=False)
def test_without_javascript_the_panel_is_a_page_of_its_own(
    connected: PrometheusConnection, target: DeploymentTarget, viewer: Any
) -> None:
    define(target)

    response = client_for(viewer).get(url(target, "24h"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" in html
    assert "Metrics of shop-api (production)" in html
    assert 'aria-current="true">24h</a>' in html


def test_an_unknown_window_falls_back_to_6_hours(target: DeploymentTarget, viewer: Any) -> None:
    response = client_for(viewer).get(url(target, "1y"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'aria-current="true">6h</a>' in response.content.decode()


def test_a_down_prometheus_is_a_sentence_not_a_500(target: DeploymentTarget, viewer: Any) -> None:
    define(target)
    PrometheusConnection.objects.create(url="http://127.0.0.1:9", timeout_seconds=1)

    response = client_for(viewer).get(url(target), headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert "Metrics unavailable: Cannot reach Prometheus" in response.content.decode()
    assert 'data-testid="metric-chart"' not in response.content.decode()


def test_it_refuses_other_methods_and_people_without_access(
    target: DeploymentTarget, viewer: Any, nobody: Any
) -> None:
    assert client_for(viewer).post(url(target)).status_code == 405
    assert client_for(nobody).get(url(target)).status_code == 403
    assert client_for(viewer).get(reverse("metrics:target-panel", args=[9999])).status_code == 404


def test_the_service_page_loads_the_panel(target: DeploymentTarget, viewer: Any) -> None:
    response = client_for(viewer).get(target.service.get_absolute_url())
    html = response.content.decode()
    assert f'hx-get="{url(target)}"' in html
    assert f'<a href="{url(target)}">Open the metrics of shop-api (production)</a>' in html
