"""The Prometheus connection page: admins only, secrets write-only and encrypted, the test
button audited with what Prometheus said, bad input a message and never a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.metrics.client import MetricsUnavailable
from apps.metrics.connection import client
from apps.metrics.models import PrometheusConnection
from tests.conftest import client_for
from tests.support.prometheus import OpenMetrics, PrometheusServer

pytestmark = pytest.mark.django_db
URL = "/metrics/connection/"


def test_it_lets_an_admin_save_the_connection_with_a_write_only_token(admin: Any) -> None:
    response = client_for(admin).post(
        URL, {"url": "http://prometheus:9090", "token": "s3cret-token", "timeout_seconds": "3"}
    )
    assert response.status_code == 302
    saved = PrometheusConnection.objects.get()
    assert saved.url == "http://prometheus:9090"
    assert saved.has_token and "s3cret-token" not in saved.token_encrypted
    assert saved.client()._headers == {"Authorization": "Bearer s3cret-token"}
    page = client_for(admin).get(URL).content.decode()
    assert "s3cret-token" not in page
    assert "bearer token stored encrypted" in page
    event = AuditEvent.objects.get(action="prometheusconnection.created")
    assert "s3cret-token" not in str(event.data)
    # An empty token on edit keeps the stored one.
    client_for(admin).post(URL, {"url": "http://prometheus:9091", "timeout_seconds": "3"})
    saved.refresh_from_db()
    assert saved.url == "http://prometheus:9091" and saved.has_token


def test_it_refuses_bad_input_with_messages(admin: Any) -> None:
    response = client_for(admin).post(
        URL, {"url": "not a url", "username": "ops", "timeout_seconds": "soon"}
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "url" in errors and "timeout_seconds" in errors
    assert errors["password"] == ["Basic auth needs a password."]
    assert not PrometheusConnection.objects.exists()


def test_it_refuses_other_roles_and_methods(operator: Any, viewer: Any, admin: Any) -> None:
    assert client_for(operator).get(URL).status_code == 403
    assert client_for(viewer).post(URL, {"url": "http://x"}).status_code == 403
    assert client_for(admin).get("/metrics/connection/check/").status_code == 405
    assert AuditEvent.objects.filter(action="access.denied").count() == 2


def test_it_says_metrics_are_not_configured_without_a_connection(db: None) -> None:
    with pytest.raises(MetricsUnavailable, match="Metrics are not configured"):
        client()


def test_the_test_button_says_what_prometheus_answered_and_audits_it(
    admin: Any, prometheus: Callable[[OpenMetrics], PrometheusServer]
) -> None:
    server = prometheus(OpenMetrics())
    PrometheusConnection.objects.create(url=server.url)
    response = client_for(admin).post("/metrics/connection/check/")
    assert response.status_code == 302
    saved = PrometheusConnection.objects.get()
    assert saved.check_ok is True
    assert saved.check_detail.startswith("Prometheus ") and "answers queries" in saved.check_detail
    assert AuditEvent.objects.get(action="prometheusconnection.checked").outcome == "succeeded"


def test_the_test_button_reports_a_prometheus_that_is_down(
    admin: Any, closed_port_url: str
) -> None:
    PrometheusConnection.objects.create(url=closed_port_url)
    response = client_for(admin).post("/metrics/connection/check/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="connection-status"' in content and "<html" not in content  # the fragment
    assert "Cannot reach Prometheus" in content
    event = AuditEvent.objects.get(action="prometheusconnection.checked")
    assert event.outcome == "failed" and "connection refused" in event.reason


def test_the_test_button_reports_a_hanging_prometheus(admin: Any, silent_server: str) -> None:
    PrometheusConnection.objects.create(url=silent_server, timeout_seconds=0.5)
    client_for(admin).post("/metrics/connection/check/")
    saved = PrometheusConnection.objects.get()
    assert saved.check_ok is False
    assert saved.check_detail.endswith("did not answer within 0.5 s.")
