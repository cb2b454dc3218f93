"""Defining actions (admins), the service page's list of them, and starting one through the
operations engine's usual form: typed parameters, confirmation, roles, audit."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.http_actions.models import HttpAction
from apps.operations.models import Operation
from apps.services.models import Environment, Service
from tests.conftest import client_for
from tests.http_actions.conftest import REPROCESS_PATH, TOKEN, make_action

ORIGIN = "https://api.maintainuk.com"


def _definition(environment: Environment, **overrides: str) -> dict[str, Any]:
    data = {
        "name": "Reprocess dead letter",
        "environment": str(environment.pk),
        "description": "From the runbook's DLQ section.",
        "method": "POST",
        "url_template": ORIGIN + REPROCESS_PATH,
        "parameters_text": "id integer",
        "headers_text": "X-Request-Source: opsportal",
        "expected_statuses_text": "200 202",
        "bearer_token": TOKEN,
        "timeout_seconds": "10",
    }
    data.update(overrides)
    return data


def _start(action: HttpAction, **overrides: str | None) -> dict[str, str]:
    data: dict[str, str | None] = {
        "target": str(action.pk),
        "p-id": "42",
        "reason": "DLQ grew overnight",
        "idempotency_key": uuid.uuid4().hex,
        "confirmed": "1",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_an_admin_defines_an_action_and_the_token_is_encrypted_and_masked(
    admin: Any, service: Service, production: Environment
) -> None:
    client = client_for(admin)
    response = client.post(
        reverse("http_actions:create", args=[service.slug]), _definition(production)
    )
    action = HttpAction.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/services/{service.slug}/?env=prod"
    assert action.parameters == [{"name": "id", "type": "integer", "pattern": ""}]
    assert action.headers == {"X-Request-Source": "opsportal"}
    assert action.expected_statuses == [200, 202]
    assert TOKEN not in action.token_encrypted and action.token() == TOKEN
    event = AuditEvent.objects.get(action="httpaction.created")
    assert TOKEN not in json.dumps(event.data)
    assert event.data["changes"]["token"] == "********"
    # Never shown again, and an empty field on edit keeps it.
    edit_url = reverse("http_actions:edit", args=[action.pk])
    page = client.get(edit_url).content.decode()
    assert TOKEN not in page and "A token is stored (not shown)" in page
    client.post(edit_url, _definition(production, bearer_token="", name="Reprocess DLQ item"))
    action.refresh_from_db()
    assert action.name == "Reprocess DLQ item" and action.token() == TOKEN


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        (
            "url_template",
            "https://{host}/api/v1/admin/dead-letters/{id}/reprocess",
            "host and port are fixed",
        ),
        ("url_template", "http://169.254.169.254/latest/{id}", "link-local"),
        ("url_template", ORIGIN + "@evil.example/{id}", "No user@"),
        ("url_template", ORIGIN + "/admin/../{id}", ". or .. segments"),
        ("url_template", ORIGIN + "/admin/%2F{id}", "no %-encoded"),
        ("parameters_text", "", "Declare every parameter of the URL: id"),
        ("parameters_text", "id integer\nextra string", "Not in the URL: extra"),
        ("headers_text", "Authorization: Bearer abc", "looks like a secret"),
        ("headers_text", "Host: evil.example", "sets Host itself"),
        ("expected_statuses_text", "200 2000", "not an HTTP status code"),
    ],
)
def test_bad_definitions_are_refused_at_save_with_nothing_saved(
    admin: Any, service: Service, production: Environment, field: str, value: str, says: str
) -> None:
    response = client_for(admin).post(
        reverse("http_actions:create", args=[service.slug]),
        _definition(production, **{field: value}),
    )
    assert response.status_code == 400
    assert says in response.content.decode().replace("&#x27;", "'")
    assert not HttpAction.objects.exists()
    assert not AuditEvent.objects.filter(action="httpaction.created").exists()


def test_operators_cannot_define_actions(operator: Any, service: Service) -> None:
    response = client_for(operator).get(reverse("http_actions:create", args=[service.slug]))
    assert response.status_code == 403


def test_the_service_page_lists_its_actions_with_run_buttons_by_role(
    operator: Any, viewer: Any, admin: Any, service: Service, production: Environment
) -> None:
    action = make_action(service, production, ORIGIN)
    wipe = make_action(
        service,
        production,
        ORIGIN,
        name="Drop dead letters",
        method="DELETE",
        url_template=ORIGIN + "/api/v1/admin/dead-letters/{id}",
    )
    run_url = f"/operations/start/http_actions.call/?target={action.pk}"
    wipe_url = f"/operations/start/http_actions.call_destructive/?target={wipe.pk}"
    as_operator = client_for(operator).get(service.get_absolute_url()).content.decode()
    assert "Admin API actions" in as_operator and "Reprocess dead letter" in as_operator
    assert run_url in as_operator and wipe_url not in as_operator  # destructive: admins only
    assert TOKEN not in as_operator
    as_viewer = client_for(viewer).get(service.get_absolute_url()).content.decode()
    assert "Reprocess dead letter" in as_viewer and run_url not in as_viewer
    as_admin = client_for(admin).get(service.get_absolute_url()).content.decode()
    assert wipe_url in as_admin and "destructive" in as_admin
    assert reverse("http_actions:edit", args=[action.pk]) in as_admin


def test_the_confirmation_says_what_will_be_sent_without_the_token(
    operator: Any, service: Service, production: Environment
) -> None:
    action = make_action(service, production, ORIGIN)
    response = client_for(operator).post(
        "/operations/start/http_actions.call/", _start(action, confirmed=None)
    )
    content = response.content.decode().replace("&#x27;", "'")
    assert response.status_code == 200
    url = ORIGIN + "/api/v1/admin/dead-letters/42/reprocess"
    assert f"POST {url} is sent to MaintainUK API in Production" in content
    assert f"curl -X POST {url} -H 'Authorization: Bearer &lt;token&gt;'" in content
    assert TOKEN not in content
    assert not Operation.objects.exists()


@pytest.mark.parametrize("bad", ["../1", "%2F1", "@evil", "1\r\nHost: evil", "-1", "x"])
def test_bad_parameter_values_are_refused_before_anything_is_queued(
    operator: Any, service: Service, production: Environment, bad: str
) -> None:
    action = make_action(service, production, ORIGIN)
    response = client_for(operator).post(
        "/operations/start/http_actions.call/", _start(action, **{"p-id": bad})
    )
    assert response.status_code == 400
    assert not Operation.objects.exists()
    assert AuditEvent.objects.filter(action="operation.invalid").exists()


def test_a_destructive_action_needs_an_admin_and_a_reason(
    operator: Any, admin: Any, service: Service, staging: Environment
) -> None:
    action = make_action(
        service,
        staging,
        ORIGIN,
        name="Drop",
        method="DELETE",
        url_template=ORIGIN + "/api/v1/admin/dead-letters/{id}",
    )
    url = "/operations/start/http_actions.call_destructive/"
    refused = client_for(operator).post(url, _start(action))
    assert refused.status_code == 400
    assert "Your role does not allow Call the admin API (destructive)" in refused.content.decode()
    assert not Operation.objects.exists()
    assert AuditEvent.objects.filter(action="operation.refused", outcome="denied").exists()
    no_reason = client_for(admin).post(url, _start(action, reason=""))
    assert no_reason.status_code == 400 and not Operation.objects.exists()
    # The harmless kind does not take a destructive action.
    sneaky = client_for(operator).get(f"/operations/start/http_actions.call/?target={action.pk}")
    assert sneaky.status_code == 404
    done = client_for(admin).post(url, _start(action))
    assert done.status_code == 302
    operation = Operation.objects.get()
    assert operation.kind == "http_actions.call_destructive" and operation.params == {"id": 42}
