from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

from apps.operations.choices import State
from tests.factories import make_operation

pytestmark = pytest.mark.core


def test_live_answers_without_checking_anything(db: None) -> None:
    response = Client().get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_checks_the_database_and_the_broker(db: None) -> None:
    response = Client().get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": True, "broker": True}


def test_ready_is_503_when_the_broker_is_down(db: None, monkeypatch: Any) -> None:
    from opsportal.celery import app

    # A real connection attempt to a port where nothing listens.
    monkeypatch.setitem(app.conf, "broker_write_url", "redis://127.0.0.1:1/0")
    response = Client().get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] is False


def test_health_reports_version_uptime_and_timed_checks(db: None) -> None:
    body = Client().get("/health").json()
    assert body["version"]
    assert body["uptime_seconds"] >= 0
    names = [check["name"] for check in body["checks"]]
    assert names == ["database", "broker"]
    assert all(check["milliseconds"] >= 0 for check in body["checks"])


def test_metrics_exports_requests_and_operations(operator: Any) -> None:
    make_operation(operator, state=State.QUEUED)
    make_operation(operator, state=State.FAILED)
    client = Client()
    client.get("/health/live")
    text = client.get("/metrics").content.decode()
    assert 'opsportal_http_requests_total{method="GET",route="health-live",status="200"}' in text
    assert 'opsportal_operations{kind="diagnostics.ping",state="queued"} 1.0' in text
    assert "opsportal_operations_queue_depth 1.0" in text
    assert "opsportal_http_request_duration_seconds_bucket" in text


@override_settings(METRICS_TOKEN="s3cret-token")
def test_metrics_can_require_a_bearer_token(db: None) -> None:
    assert Client().get("/metrics").status_code == 401
    ok = Client().get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
