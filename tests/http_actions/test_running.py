"""Custom HTTP actions end to end: requested through the operations engine, carried out by a
real Celery worker, against a real HTTP server on loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.http_actions.models import HttpAction
from apps.operations import actions
from apps.operations.choices import State
from apps.operations.models import Operation, OperationLogLine
from apps.services.models import Environment, Service
from tests.http_actions.api_server import AdminApi
from tests.http_actions.conftest import TOKEN, make_action
from tests.support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("celery_worker")


def run(
    actor: Any, action: HttpAction, reason: str = "DLQ grew overnight", **params: Any
) -> Operation:
    operation = actions.do_start_operation(actor, action.kind_name, str(action.pk), params, reason)
    wait_for(
        lambda: Operation.objects.get(pk=operation.pk).is_final,
        timeout=60,
        what=f"{action.name} to end",
    )
    operation.refresh_from_db()
    return operation


def log_of(operation: Operation) -> str:
    return "\n".join(
        OperationLogLine.objects.filter(operation=operation).values_list("message", flat=True)
    )


def assert_token_nowhere(operation: Operation) -> None:
    assert TOKEN not in log_of(operation)
    assert TOKEN not in operation.status_text + operation.error
    for event in AuditEvent.objects.all():
        assert TOKEN not in json.dumps(event.data) + event.reason + event.target_label


def test_it_calls_the_api_and_logs_the_status_and_body(
    operator: Any, api: AdminApi, service: Service, staging: Environment
) -> None:
    api.answer(202, b'{"reprocessed": 1, "id": 42}')
    action = make_action(service, staging, api.origin, headers={"X-Request-Source": "opsportal"})
    operation = run(operator, action, id=42)
    assert operation.state == State.SUCCEEDED, log_of(operation)
    [request] = api.requests()
    assert request.method == "POST"
    assert request.path == "/api/v1/admin/dead-letters/42/reprocess"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["X-Request-Source"] == "opsportal"
    log = log_of(operation)
    assert f"POST {api.origin}/api/v1/admin/dead-letters/42/reprocess" in log
    assert "HTTP 202 Accepted" in log
    assert 'Response body: {"reprocessed": 1, "id": 42}' in log
    assert operation.status_text == "HTTP 202: Reprocess dead letter done."
    assert_token_nowhere(operation)


def test_an_unexpected_status_fails_the_operation_with_that_status(
    operator: Any, api: AdminApi, service: Service, staging: Environment
) -> None:
    api.answer(500, b'{"error": "queue locked"}')
    operation = run(operator, make_action(service, staging, api.origin), id=7)
    assert operation.state == State.FAILED
    assert operation.error.startswith("Unexpected HTTP 500 Internal Server Error from POST")
    assert "(expected 200, 202)" in operation.error
    assert 'Response body: {"error": "queue locked"}' in log_of(operation)
    failed = AuditEvent.objects.get(action="operation.failed", operation_id=operation.pk)
    assert "HTTP 500" in failed.reason
    assert_token_nowhere(operation)


def test_a_slow_api_fails_at_the_actions_timeout_with_a_clear_reason(
    operator: Any, api: AdminApi, service: Service, staging: Environment
) -> None:
    api.answer(200, b"{}", delay=5)
    operation = run(operator, make_action(service, staging, api.origin, timeout_seconds=1), id=1)
    assert operation.state == State.FAILED
    assert operation.error.startswith("No answer within 1 s (the action's timeout)")
    assert len(api.requests()) == 1  # sent once, never retried


def test_a_long_body_is_truncated_and_an_echoed_token_is_masked(
    operator: Any, api: AdminApi, service: Service, staging: Environment
) -> None:
    api.answer(200, f'{{"you_sent": "Bearer {TOKEN}", "pad": "{"x" * 9000}"}}'.encode())
    operation = run(operator, make_action(service, staging, api.origin), id=3)
    assert operation.state == State.SUCCEEDED
    log = log_of(operation)
    assert '"you_sent": "Bearer <token>"' in log
    assert log.count("x") < 2100 and "… (truncated)" in log
    assert_token_nowhere(operation)


def test_a_value_cannot_leave_its_path_segment(
    operator: Any, api: AdminApi, service: Service, staging: Environment
) -> None:
    action = make_action(
        service,
        staging,
        api.origin,
        name="Purge queue",
        url_template=api.origin + "/queues/{queue}/purge",
        parameters=[{"name": "queue", "type": "string", "pattern": r"[^\s]{1,100}"}],
    )
    operation = run(operator, action, queue="../admin@evil.example%2F")
    assert operation.state == State.SUCCEEDED, log_of(operation)
    [request] = api.requests()
    assert request.path == "/queues/..%2Fadmin%40evil.example%252F/purge"


def test_a_connection_refused_fails_clearly(
    operator: Any, service: Service, staging: Environment
) -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    operation = run(operator, make_action(service, staging, "http://127.0.0.1:9"), id=1)
    assert operation.state == State.FAILED
    assert operation.error.startswith("Could not connect")
