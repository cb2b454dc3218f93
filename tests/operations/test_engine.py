"""The engine end to end with a real worker process on the real broker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.operations import actions
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.operations.tasks import reap_operations, run_operation
from tests.factories import make_operation
from tests.support.waiting import wait_for
from tests.support.worker import Worker

pytestmark = pytest.mark.core


def _state(operation: Operation) -> str:
    return Operation.objects.values_list("state", flat=True).get(pk=operation.pk)


def test_it_runs_diagnostics_on_a_worker_and_audits_the_outcome(
    celery_worker: Worker, operator: Any
) -> None:
    operation = actions.do_start_operation(
        operator, "diagnostics.ping", "self", {"pause_seconds": 0}, "smoke test"
    )
    wait_for(lambda: _state(operation) == State.SUCCEEDED, what="the operation to succeed")
    operation.refresh_from_db()
    assert operation.progress == 100
    assert operation.worker == celery_worker.name
    messages = list(operation.log_lines.values_list("message", flat=True))
    assert any(message.startswith("Database: OK") for message in messages)
    assert any(message.startswith("Broker: OK") for message in messages)
    assert any(message.startswith("Backup storage: OK") for message in messages)
    actions_seen = list(
        AuditEvent.objects.filter(operation_id=operation.pk)
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions_seen == ["operation.queued", "operation.succeeded"]


def test_it_fails_an_operation_whose_worker_was_killed(
    start_worker: Callable[..., Worker], operator: Any
) -> None:
    worker = start_worker()
    operation = actions.do_start_operation(
        operator, "diagnostics.ping", "self", {"pause_seconds": 60}, "will be killed"
    )
    wait_for(lambda: _state(operation) == State.RUNNING, what="the operation to run")
    worker.kill()
    operation.refresh_from_db()
    last_beat = operation.heartbeat_at
    assert last_beat is not None

    # Inside the window the reaper leaves it alone: the worker might only be slow.
    with time_machine.travel(last_beat + timedelta(seconds=5)):
        reap_operations()
    assert _state(operation) == State.RUNNING

    window = settings.OPERATIONS_WORKER_LOST_AFTER + timedelta(
        seconds=settings.OPERATIONS_REAPER_INTERVAL_SECONDS
    )
    assert window <= timedelta(minutes=2)
    with time_machine.travel(last_beat + window):
        reap_operations()
    operation.refresh_from_db()
    assert operation.state == State.FAILED
    assert "Worker lost" in operation.error
    assert not Operation.objects.filter(state=State.RUNNING).exists()
    assert AuditEvent.objects.filter(
        operation_id=operation.pk, action="operation.failed", outcome="failed"
    ).exists()


def test_it_fails_what_a_restarted_worker_was_running(
    start_worker: Callable[..., Worker], operator: Any
) -> None:
    worker = start_worker()
    operation = actions.do_start_operation(
        operator, "diagnostics.ping", "self", {"pause_seconds": 60}, "restart"
    )
    wait_for(lambda: _state(operation) == State.RUNNING, what="the operation to run")
    worker.kill()
    start_worker(name=worker.name)
    operation.refresh_from_db()
    assert operation.state == State.FAILED
    assert "restarted" in operation.error


def test_it_never_runs_an_operation_twice_when_the_message_comes_again(
    transactional_db: None, operator: Any
) -> None:
    operation = make_operation(operator, state=State.QUEUED)
    run_operation.apply(args=(operation.pk,))
    operation.refresh_from_db()
    assert operation.state == State.SUCCEEDED
    finished_at = operation.finished_at
    lines = operation.log_lines.count()

    run_operation.apply(args=(operation.pk,))  # the broker redelivers

    operation.refresh_from_db()
    assert operation.finished_at == finished_at
    assert operation.log_lines.count() == lines


def test_it_refuses_a_forged_task_for_a_user_without_permission(
    transactional_db: None, viewer: Any
) -> None:
    # Written straight into the database, as if someone bypassed the views.
    operation = make_operation(viewer, state=State.QUEUED)
    run_operation.apply(args=(operation.pk,))
    operation.refresh_from_db()
    assert operation.state == State.FAILED
    assert "lacks operations.run_operation" in operation.error
    assert not operation.log_lines.filter(message__startswith="Database").exists()
    assert AuditEvent.objects.filter(
        operation_id=operation.pk, action="operation.refused", outcome="denied"
    ).exists()


def test_it_sends_a_stuck_queued_operation_again_then_fails_it(
    transactional_db: None, operator: Any
) -> None:
    operation = make_operation(operator, state=State.QUEUED, send_count=1)
    later = timezone.now() + settings.OPERATIONS_QUEUED_RESEND_AFTER + timedelta(seconds=1)
    for attempt in range(2, settings.OPERATIONS_QUEUED_MAX_SENDS + 1):
        with time_machine.travel(later):
            reap_operations()
        operation.refresh_from_db()
        assert operation.state == State.QUEUED
        assert operation.send_count == attempt
        later += settings.OPERATIONS_QUEUED_RESEND_AFTER + timedelta(seconds=1)
    with time_machine.travel(later):
        reap_operations()
    operation.refresh_from_db()
    assert operation.state == State.FAILED
    assert "No worker picked this up" in operation.error


def test_it_cancels_a_running_operation_cooperatively(celery_worker: Worker, operator: Any) -> None:
    operation = actions.do_start_operation(
        operator, "diagnostics.ping", "self", {"pause_seconds": 60}, "cancel me"
    )
    wait_for(lambda: _state(operation) == State.RUNNING, what="the operation to run")
    actions.do_cancel_operation(operator, operation, "changed my mind")
    wait_for(lambda: _state(operation) == State.CANCELLED, what="the cancel to land")
    assert AuditEvent.objects.filter(
        operation_id=operation.pk, action="operation.cancel_requested"
    ).exists()
