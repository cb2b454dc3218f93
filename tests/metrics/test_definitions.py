"""Metric definitions: the runbooks' defaults on creation (and for services created before),
the check against Prometheus on save with its error next to the template, thresholds that
are not numbers refused, permissions and htmx fragments."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.metrics.models import MetricDefinition
from apps.services.models import Service
from tests.conftest import client_for
from tests.metrics.conftest import connect, make_service, write_http
from tests.support.prometheus import OpenMetrics, PrometheusServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(prometheus_session: Callable[[str, Callable[[], OpenMetrics]], PrometheusServer]) -> str:
    def build() -> OpenMetrics:
        data = OpenMetrics()
        # Around the real now: a definition is checked at the time it is saved.
        start = timezone.now() - timedelta(minutes=50)
        write_http(data, "shop-api", "shop", lambda s: 1.0, start=start)
        return data

    url = prometheus_session("definitions", build).url
    connect(url)
    return url


def form(**fields: Any) -> dict[str, Any]:
    return {
        "key": "checkout_errors",
        "name": "Checkout errors",
        "unit": "%",
        "template": 'sum by (job, namespace) (rate(http_requests_total{$labels, code="500"}[5m]))',
        "comparison": ">",
        "warning": "1",
        "critical": "5",
        "for_seconds": "300",
        "enabled": "on",
        **fields,
    }


def test_a_new_service_gets_the_runbooks_defaults(db: None) -> None:
    service, target = make_service("shop-api")
    defaults = {d.key: d for d in service.metric_definitions.all()}
    assert list(defaults) == [
        "request_rate", "error_rate", "latency_p50", "latency_p95", "latency_p99",
        "cpu", "memory", "db_connections", "queue_depth", "job_failure_rate",
    ]  # fmt: skip
    assert (defaults["latency_p95"].warning, defaults["latency_p95"].critical) == (500, 1000)
    assert (defaults["error_rate"].warning, defaults["error_rate"].critical) == (1, 5)
    assert (defaults["cpu"].warning, defaults["cpu"].critical) == (80, 90)
    assert (defaults["memory"].warning, defaults["memory"].critical) == (85, 95)
    assert (defaults["queue_depth"].critical, defaults["queue_depth"].for_seconds) == (1000, 600)
    assert not defaults["queue_depth"].enabled  # where they apply: an admin turns them on
    assert defaults["request_rate"].promql(target) == (
        'sum by (job, namespace) (rate(http_requests_total{job="shop-api", namespace="shop"}[5m]))'
    )


def test_the_command_gives_the_defaults_to_services_created_before(db: None) -> None:
    old = Service(name="legacy", slug="legacy", team="T")
    old._skip_metric_defaults = True  # type: ignore[attr-defined]
    old.save()
    assert not old.metric_definitions.exists()
    call_command("create_default_metrics")
    assert old.metric_definitions.count() == 10
    call_command("create_default_metrics")  # idempotent
    assert MetricDefinition.objects.filter(service=old).count() == 10


def test_an_admin_adds_a_metric_checked_by_prometheus(admin: Any, server: str) -> None:
    service, _ = make_service("shop-api")
    response = client_for(admin).post(f"/services/{service.pk}/metrics/new/", form())
    assert response.status_code == 302
    saved = MetricDefinition.objects.get(service=service, key="checkout_errors")
    assert saved.warning == 1.0 and saved.for_seconds == 300
    assert AuditEvent.objects.get(action="metricdefinition.created").reason == ""


def test_a_syntax_error_is_shown_next_to_the_template(admin: Any, server: str) -> None:
    service, _ = make_service("shop-api")
    response = client_for(admin).post(
        f"/services/{service.pk}/metrics/new/",
        form(template="sum by (job, namespace) (rate(http_requests_total{$labels}[5m])"),
    )
    assert response.status_code == 400
    errors = response.context["form"].errors["template"]
    assert errors[0].startswith("Prometheus rejects this query: 1:89: parse error")
    assert "parse error" in errors[0]
    assert "invalid-feedback" in response.content.decode()
    assert not MetricDefinition.objects.filter(key="checkout_errors").exists()


def test_a_query_without_job_and_namespace_is_refused(admin: Any, server: str) -> None:
    service, _ = make_service("shop-api")
    response = client_for(admin).post(
        f"/services/{service.pk}/metrics/new/",
        form(template="sum(rate(http_requests_total{$labels}[5m]))"),
    )
    assert response.status_code == 400
    assert "no job and namespace labels" in response.context["form"].errors["template"][0]


def test_thresholds_that_are_not_numbers_are_form_errors(admin: Any, server: str) -> None:
    service, _ = make_service("shop-api")
    response = client_for(admin).post(
        f"/services/{service.pk}/metrics/new/",
        form(warning="five", critical="nan", template="up{}"),
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors["warning"] == ["Enter a number."]
    assert errors["critical"] == ["Enter a number."]
    assert "$labels" in errors["template"][0]
    inverted = client_for(admin).post(
        f"/services/{service.pk}/metrics/new/", form(warning="5", critical="1")
    )
    assert inverted.context["form"].errors["critical"] == [
        "Above: the critical level is at least the warning."
    ]


def test_it_saves_unchecked_when_prometheus_is_down_and_says_so(
    admin: Any, closed_port_url: str
) -> None:
    service, _ = make_service("shop-api")
    connect(closed_port_url)
    definition = service.metric_definitions.get(key="error_rate")
    response = client_for(admin).post(
        f"/services/{service.pk}/metrics/{definition.pk}/edit/",
        form(key="error_rate", template=definition.template, warning="2"),
        follow=True,
    )
    assert response.status_code == 200
    definition.refresh_from_db()
    assert definition.warning == 2.0
    assert "saved without being checked" in response.content.decode()
    event = AuditEvent.objects.get(action="metricdefinition.changed")
    assert event.reason.startswith("Not checked: Cannot reach Prometheus")


def test_viewers_read_the_definitions_and_only_admins_edit(
    viewer: Any, operator: Any, admin: Any
) -> None:
    service, _ = make_service("shop-api")
    definition = service.metric_definitions.get(key="error_rate")
    page = client_for(viewer).get(f"/services/{service.pk}/metrics/")
    assert page.status_code == 200
    assert "Error rate" in page.content.decode() and "Edit</a>" not in page.content.decode()
    fragment = client_for(viewer).get(
        f"/services/{service.pk}/metrics/", headers={"HX-Request": "true"}
    )
    assert 'id="metric-table"' in fragment.content.decode()
    assert "<html" not in fragment.content.decode()
    assert client_for(viewer).post(f"/services/{service.pk}/metrics/").status_code == 405
    assert client_for(operator).get(f"/services/{service.pk}/metrics/new/").status_code == 403
    edit = f"/services/{service.pk}/metrics/{definition.pk}/edit/"
    assert client_for(operator).post(edit, form()).status_code == 403
    assert client_for(admin).get(edit).status_code == 200
    assert client_for(admin).get(f"/services/{service.pk + 99}/metrics/").status_code == 404
