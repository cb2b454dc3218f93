"""Four-eyes approval: bound to the exact parameters, never by the requester, and expiring."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.test import override_settings

from apps.audit.models import AuditEvent
from apps.operations import actions
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.conftest import client_for

pytestmark = [pytest.mark.core, pytest.mark.usefixtures("second_admin")]


@pytest.fixture(autouse=True)
def _ping_needs_approval() -> Any:
    with override_settings(OPERATIONS_REQUIRE_APPROVAL=["diagnostics.ping"]):
        yield


def _request(user: Any) -> Operation:
    return actions.do_start_operation(user, "diagnostics.ping", "self", {"pause_seconds": 1}, "fix")


def test_it_waits_for_approval_and_tells_the_approvers(
    admin: Any, second_admin: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        operation = _request(admin)
    assert operation.state == State.AWAITING_APPROVAL
    assert operation.queued_at is None
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [second_admin.email]  # never the requester
    assert f"/operations/{operation.pk}/" in mail.outbox[0].body
    page = client_for(second_admin).get("/")
    assert "1 awaiting your approval" in page.content.decode()


def test_the_requester_cannot_approve_their_own_operation(admin: Any) -> None:
    operation = _request(admin)
    with pytest.raises(actions.OperationRefused, match="your own operation"):
        actions.do_approve_operation(admin, operation, "looks fine to me")
    operation.refresh_from_db()
    assert operation.state == State.AWAITING_APPROVAL
    assert AuditEvent.objects.filter(action="operation.refused", outcome="denied").exists()


def test_an_operator_cannot_approve(operator: Any, admin: Any) -> None:
    operation = _request(admin)
    with pytest.raises(actions.OperationRefused, match="cannot approve"):
        actions.do_approve_operation(operator, operation, "")


def test_another_admin_approves_and_the_requester_runs_it(
    admin: Any, second_admin: Any, django_capture_on_commit_callbacks: Any
) -> None:
    operation = _request(admin)
    actions.do_approve_operation(second_admin, operation, "ok")
    with django_capture_on_commit_callbacks() as callbacks:
        operation = actions.do_run_approved_operation(admin, operation)
    assert operation.state == State.QUEUED
    assert len(callbacks) == 1  # the message to the broker, sent on commit
    assert list(
        AuditEvent.objects.filter(operation_id=operation.pk)
        .order_by("seq")
        .values_list("action", flat=True)
    ) == ["operation.requested", "operation.approved", "operation.queued"]


def test_a_changed_parameter_voids_the_approval(admin: Any, second_admin: Any) -> None:
    operation = _request(admin)
    actions.do_approve_operation(second_admin, operation, "ok")
    operation = actions.do_change_operation_params(admin, operation, {"pause_seconds": 30})
    assert operation.state == State.AWAITING_APPROVAL
    assert operation.approved_by is None
    with pytest.raises(actions.OperationRefused, match="not approved"):
        actions.do_run_approved_operation(admin, operation)


def test_parameters_altered_behind_the_portals_back_void_the_approval(
    admin: Any, second_admin: Any
) -> None:
    operation = _request(admin)
    actions.do_approve_operation(second_admin, operation, "ok")
    # Someone edits the row directly; the approval was for the old parameters.
    Operation.objects.filter(pk=operation.pk).update(
        params={"pause_seconds": 60}, params_hash="0" * 64
    )
    with pytest.raises(actions.OperationRefused, match="parameters changed after approval"):
        actions.do_run_approved_operation(admin, operation)
    operation.refresh_from_db()
    assert operation.state == State.AWAITING_APPROVAL


def test_an_expired_approval_cannot_be_used(admin: Any, second_admin: Any) -> None:
    operation = _request(admin)
    actions.do_approve_operation(second_admin, operation, "ok")
    later = operation.created_at + settings.OPERATIONS_APPROVAL_TTL + timedelta(minutes=1)
    with time_machine.travel(later), pytest.raises(actions.OperationRefused, match="expired"):
        actions.do_run_approved_operation(admin, operation)
    operation.refresh_from_db()
    assert operation.state == State.AWAITING_APPROVAL
    assert AuditEvent.objects.filter(action="operation.approval_void", outcome="denied").exists()


def test_a_rejection_ends_it_and_needs_a_comment(admin: Any, second_admin: Any) -> None:
    operation = _request(admin)
    with pytest.raises(actions.OperationRefused, match="Say why"):
        actions.do_reject_operation(second_admin, operation, "  ")
    operation = actions.do_reject_operation(second_admin, operation, "not during peak hours")
    assert operation.state == State.REJECTED
    assert operation.is_final


def test_the_approve_button_posts_and_redirects(admin: Any, second_admin: Any) -> None:
    operation = _request(admin)
    page = client_for(second_admin).get(f"/operations/{operation.pk}/")
    assert "Approve these parameters" in page.content.decode()
    response = client_for(second_admin).post(
        f"/operations/{operation.pk}/approve/", {"comment": "go"}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/operations/{operation.pk}/"
    operation.refresh_from_db()
    assert operation.state == State.APPROVED
    assert operation.approval_comment == "go"
