from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.audit.models import AuditEvent
from tests.factories import PASSWORD

pytestmark = pytest.mark.core


def test_anonymous_users_go_to_the_login_page(db: None) -> None:
    response = Client().get("/operations/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/operations/"


def test_a_login_rotates_the_session_and_is_audited(operator: Any) -> None:
    client = Client()
    client.get("/accounts/login/")
    before = client.cookies.get("sessionid")
    response = client.post(
        "/accounts/login/", {"username": operator.username, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert client.cookies["sessionid"].value != (before.value if before else None)
    assert AuditEvent.objects.filter(action="auth.login", actor=operator).exists()
    client.post("/accounts/logout/")
    assert AuditEvent.objects.filter(action="auth.logout", actor=operator).exists()


def test_failed_logins_are_audited_and_throttled(operator: Any, settings: Any) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post("/accounts/login/", {"username": operator.username, "password": "x"})
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()
    last = client.post("/accounts/login/", {"username": operator.username, "password": "x"})
    assert last.status_code == 429
    assert (
        AuditEvent.objects.filter(action="auth.login_failed", actor_label=operator.username).count()
        == settings.AXES_FAILURE_LIMIT
    )
    # Locked out now, even with the right password.
    response = client.post(
        "/accounts/login/", {"username": operator.username, "password": PASSWORD}
    )
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert AuditEvent.objects.filter(action="auth.locked_out", outcome="denied").exists()
    assert not AuditEvent.objects.filter(action="auth.login").exists()


def test_sessions_expire_after_idle_time(settings: Any) -> None:
    assert settings.SESSION_COOKIE_AGE == settings.SESSION_IDLE_TIMEOUT
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE


def test_every_response_carries_a_strict_csp_and_a_request_id(operator: Any) -> None:
    client = Client()
    client.force_login(operator)
    response = client.get("/", headers={"X-Request-ID": "abc-123-def-456"})
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response["X-Request-ID"] == "abc-123-def-456"
    generated = client.get("/", headers={"X-Request-ID": "bad id with spaces"})
    assert len(generated["X-Request-ID"]) == 32


def test_audit_events_record_the_request_id_and_address(operator: Any) -> None:
    client = Client()
    client.post(
        "/accounts/login/",
        {"username": operator.username, "password": PASSWORD},
        headers={"X-Request-ID": "req-000111222"},
        REMOTE_ADDR="10.1.2.3",
    )
    event = AuditEvent.objects.get(action="auth.login")
    assert event.request_id == "req-000111222"
    assert event.ip == "10.1.2.3"
