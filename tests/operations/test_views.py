"""The operation pages: the two-step start, bad input, live progress, the list."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.operations import registry
from apps.operations.choices import State
from apps.operations.diagnostics import portal_target
from apps.operations.models import Operation, OperationLogLine
from tests.conftest import client_for
from tests.factories import PASSWORD, make_operation

pytestmark = pytest.mark.core

START = "/operations/start/diagnostics.ping/"


def _form(**overrides: Any) -> dict[str, str]:
    data = {
        "target": "self",
        "p-pause_seconds": "0",
        "reason": "checking after deploy",
        "idempotency_key": uuid.uuid4().hex,
        "confirmed": "1",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_it_shows_the_form_with_a_fresh_idempotency_key(operator: Any) -> None:
    response = client_for(operator).get(f"{START}?target=self")
    assert response.status_code == 200
    assert 'name="idempotency_key"' in response.content.decode()
    assert response.context["request_form"]["idempotency_key"].value()


def test_review_shows_what_will_happen_and_the_runbook_command(operator: Any) -> None:
    response = client_for(operator).post(START, _form(confirmed=None))
    content = response.content.decode()
    assert response.status_code == 200
    assert "A worker checks the database, the broker and the backup storage" in content
    assert "psql -c &#x27;SELECT 1&#x27;" in content
    assert not Operation.objects.exists()  # nothing happens before the confirmation


def test_confirming_queues_it_and_redirects_to_its_page(operator: Any) -> None:
    response = client_for(operator).post(START, _form())
    operation = Operation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/operations/{operation.pk}/"
    assert operation.state == State.QUEUED
    assert operation.params == {"pause_seconds": 0}
    assert operation.reason == "checking after deploy"


def test_posting_the_same_form_twice_creates_one_operation(operator: Any) -> None:
    client = client_for(operator)
    data = _form()
    first = client.post(START, data)
    second = client.post(START, data)
    assert Operation.objects.count() == 1
    assert first["Location"] == second["Location"]


def test_an_unknown_kind_gets_a_clear_message(operator: Any) -> None:
    response = client_for(operator).post("/operations/start/no.such.thing/", _form())
    assert response.status_code == 404
    assert "There is no operation called &#x27;no.such.thing&#x27;" in response.content.decode()
    assert not Operation.objects.exists()


def test_invalid_parameters_get_a_message_next_to_the_field(operator: Any) -> None:
    response = client_for(operator).post(START, _form(**{"p-pause_seconds": "-5"}))
    assert response.status_code == 400
    assert "greater than or equal to 0" in response.content.decode()
    assert not Operation.objects.exists()


@override_settings(PORTAL_IS_PRODUCTION=True, PORTAL_ENVIRONMENT="production")
def test_production_needs_a_reason(operator: Any) -> None:
    response = client_for(operator).post(START, _form(reason=""))
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert not Operation.objects.exists()
    # The rule lives in the action too, not only in the form.
    from apps.operations import actions

    with pytest.raises(actions.OperationRefused, match="A reason is required on production"):
        actions.do_start_operation(operator, "diagnostics.ping", "self", {}, "  ")


def test_a_conflicting_operation_is_named_and_nothing_is_queued(operator: Any, admin: Any) -> None:
    running = make_operation(admin, state=State.RUNNING, target_key=portal_target("self").key)
    response = client_for(operator).post(START, _form())
    content = response.content.decode()
    assert response.status_code == 409
    assert f"Operation #{running.pk}" in content
    assert "alice-admin" in content
    assert f'href="/operations/{running.pk}/"' in content
    assert Operation.objects.count() == 1
    event = AuditEvent.objects.get(action="operation.refused")
    assert event.outcome == "denied"
    assert event.operation_id == running.pk


@pytest.fixture
def destructive_kind() -> Iterator[registry.OperationKind]:
    kind = registry.register(
        registry.OperationKind(
            name="tests.wipe",
            label="Wipe the test target",
            description="Destructive, for tests.",
            handler=lambda operation, reporter: None,
            resolve_target=portal_target,
            destructive=True,
        )
    )
    yield kind
    registry.unregister(kind.name)


def test_destructive_kinds_need_an_admin(operator: Any, destructive_kind: Any) -> None:
    response = client_for(operator).post("/operations/start/tests.wipe/", _form())
    assert response.status_code == 400
    assert "Your role does not allow Wipe the test target" in response.content.decode()
    assert not Operation.objects.exists()


def test_destructive_kinds_ask_for_the_password_when_it_is_stale(
    admin: Any, destructive_kind: Any
) -> None:
    client = client_for(admin)
    fresh = client.post("/operations/start/tests.wipe/", _form(confirmed=None))
    assert "type your password again" not in fresh.content.decode()  # signed in just now
    with time_machine.travel(timezone.now() + settings.REAUTH_MAX_AGE + timedelta(minutes=1)):
        review = client.post("/operations/start/tests.wipe/", _form(confirmed=None))
        assert "type your password again" in review.content.decode()
        wrong = client.post("/operations/start/tests.wipe/", _form(password="nope"))
        assert wrong.status_code == 400
        assert "That is not your password" in wrong.content.decode()
        assert not Operation.objects.exists()
        right = client.post("/operations/start/tests.wipe/", _form(password=PASSWORD))
    assert right.status_code == 302
    assert Operation.objects.get().kind == "tests.wipe"
    assert AuditEvent.objects.filter(action="auth.reauthenticated", actor=admin).exists()


def test_the_poll_returns_the_status_and_only_new_log_lines(viewer: Any, operator: Any) -> None:
    operation = make_operation(operator, state=State.RUNNING)
    old = OperationLogLine.objects.create(operation=operation, message="first line")
    OperationLogLine.objects.create(operation=operation, message="second line")
    response = client_for(viewer).get(
        f"/operations/{operation.pk}/?after={old.pk}", headers={"HX-Request": "true"}
    )
    content = response.content.decode()
    assert "second line" in content
    assert "first line" not in content
    assert 'hx-trigger="every 2s"' in content
    assert "<nav" not in content  # a fragment, not the page


def test_a_finished_operation_renders_without_polling(viewer: Any, operator: Any) -> None:
    operation = make_operation(operator, state=State.SUCCEEDED, progress=100)
    response = client_for(viewer).get(f"/operations/{operation.pk}/")
    content = response.content.decode()
    assert "Succeeded" in content
    assert "hx-trigger" not in content


def test_the_list_filters_by_state_and_pages_by_id(viewer: Any, operator: Any) -> None:
    for _ in range(3):
        make_operation(operator, state=State.FAILED)
    make_operation(operator, state=State.SUCCEEDED)
    client = client_for(viewer)
    failed = client.get("/operations/?state=failed")
    assert [op.state for op in failed.context["operations"]] == ["failed"] * 3
    fragment = client.get("/operations/?state=failed", headers={"HX-Request": "true"})
    assert 'id="results"' in fragment.content.decode()
    assert "<nav" not in fragment.content.decode()


def test_a_non_htmx_post_redirects_with_a_message(operator: Any) -> None:
    operation = make_operation(operator, state=State.QUEUED)
    response = client_for(operator).post(
        f"/operations/{operation.pk}/cancel/", {"reason": "wrong target"}, follow=True
    )
    assert response.redirect_chain == [(f"/operations/{operation.pk}/", 302)]
    assert f"Cancel of operation #{operation.pk} requested." in response.content.decode()
    operation.refresh_from_db()
    assert operation.state == State.CANCELLED


def test_cancelling_twice_says_it_has_ended(operator: Any) -> None:
    operation = make_operation(operator, state=State.SUCCEEDED)
    response = client_for(operator).post(f"/operations/{operation.pk}/cancel/", follow=True)
    assert "has already ended" in response.content.decode()


def test_a_poll_that_finds_the_operation_ended_reloads_the_page(viewer: Any, operator: Any) -> None:
    operation = make_operation(operator, state=State.FAILED)
    response = client_for(viewer).get(
        f"/operations/{operation.pk}/?after=0", headers={"HX-Request": "true"}
    )
    assert response["HX-Refresh"] == "true"
