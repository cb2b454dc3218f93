"""Carrying out one operation on a worker: claim, re-check, run, record the outcome."""

from __future__ import annotations

import logging
import threading
import traceback

from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.records import AuditTarget, record
from apps.operations import signals
from apps.operations.choices import LogLevel, State
from apps.operations.models import Operation, OperationLogLine
from apps.operations.progress import OperationCancelled, OperationFailed, Reporter
from apps.operations.registry import UnknownKind, get_kind

logger = logging.getLogger(__name__)


def claim(operation_id: int, worker: str, task_id: str) -> Operation | None:
    """queued → running, only if still queued: a redelivered message claims nothing."""
    now = timezone.now()
    claimed = Operation.objects.filter(pk=operation_id, state=State.QUEUED).update(
        state=State.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=worker[:200],
        celery_task_id=task_id[:64],
        status_text="Started",
    )
    if not claimed:
        logger.info("operation %s was not queued any more: not running it", operation_id)
        return None
    return Operation.objects.select_related("requested_by").get(pk=operation_id)


def refusal(operation: Operation) -> str | None:
    """Why the operation may not run, read again from the database (the message may be
    forged or stale): the kind, the requester's permission, and the approval."""
    try:
        kind = get_kind(operation.kind)
    except UnknownKind as exc:
        return str(exc)
    requester = operation.requested_by
    if not requester.is_active:
        return f"{requester.get_username()} is no longer an active user."
    if not requester.has_perm(kind.permission):
        return f"{requester.get_username()} lacks {kind.permission}."
    if not operation.gate_overridden and (
        blockers := kind.blockers(operation.target, operation.origin)
    ):
        return " ".join(blockers)
    if kind.needs_approval(operation.target):
        approver = operation.approved_by
        if approver is None or operation.approval_params_hash != operation.params_hash:
            return "It needs an approval for exactly these parameters, and has none."
        if approver.pk == requester.pk or not approver.has_perm("operations.approve_operation"):
            return "Its approval was not given by another admin."
    return None


def finish(
    operation: Operation,
    state: State,
    status: str,
    error: str = "",
    *,
    from_state: State = State.RUNNING,
    by: str = "",
) -> bool:
    """Record the outcome, only if the operation is still in ``from_state`` (the reaper may
    have failed it meanwhile, or the worker finished it). ``by`` names who ended it when it
    was not the requester's worker (the reaper). Returns whether this call ended it."""
    now = timezone.now()
    fields: dict[str, object] = {
        "state": state,
        "finished_at": now,
        "status_text": status[:200],
        "error": error,
    }
    if state == State.SUCCEEDED:
        fields["progress"] = 100
    with transaction.atomic():
        ended = Operation.objects.filter(pk=operation.pk, state=from_state).update(**fields)
        if not ended:
            return False
        if error:
            OperationLogLine.objects.create(
                operation=operation, level=LogLevel.ERROR, message=error
            )
        record(
            f"operation.{state}",
            actor=None if by else operation.requested_by,
            actor_label=by,
            outcome=Outcome.SUCCEEDED if state == State.SUCCEEDED else Outcome.FAILED,
            target=AuditTarget(operation.target_type, operation.target_id, operation.target_label),
            reason=error or status,
            data={"kind": operation.kind, "worker": operation.worker},
            operation_id=operation.pk,
        )
        operation.refresh_from_db()
        signals.announce(signals.operation_finished, operation)
    return True


class Heartbeat(threading.Thread):
    """Beats the heartbeat while a handler blocks (a long pg_dump reports nothing for
    minutes), so that only a dead worker goes silent."""

    def __init__(self, operation_id: int) -> None:
        super().__init__(name=f"heartbeat-{operation_id}", daemon=True)
        self.operation_id = operation_id
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.OPERATIONS_HEARTBEAT_SECONDS):
                Operation.objects.filter(pk=self.operation_id, state=State.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        except Exception:
            logger.exception("heartbeat of operation %s stopped", self.operation_id)
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


def execute(operation_id: int, *, worker: str, task_id: str) -> None:
    close_old_connections()
    operation = claim(operation_id, worker, task_id)
    if operation is None:
        return
    why_not = refusal(operation)
    if why_not is not None:
        with transaction.atomic():
            OperationLogLine.objects.create(
                operation=operation, level=LogLevel.ERROR, message=f"Refused: {why_not}"
            )
            Operation.objects.filter(pk=operation.pk, state=State.RUNNING).update(
                state=State.FAILED,
                finished_at=timezone.now(),
                status_text="Refused by the worker",
                error=why_not,
            )
            record(
                "operation.refused",
                actor=operation.requested_by,
                outcome=Outcome.DENIED,
                target=AuditTarget(
                    operation.target_type, operation.target_id, operation.target_label
                ),
                reason=why_not,
                data={"kind": operation.kind, "checked_by": "worker"},
                operation_id=operation.pk,
            )
            operation.refresh_from_db()
            signals.announce(signals.operation_finished, operation)
        return
    kind = get_kind(operation.kind)
    reporter = Reporter(operation)
    heartbeat = Heartbeat(operation.pk)
    heartbeat.start()
    try:
        reporter.log(f"Started on {worker}")
        kind.handler(operation, reporter)
    except OperationCancelled:
        reporter.log("Cancelled on request.", LogLevel.WARNING)
        finish(operation, State.CANCELLED, "Cancelled")
    except SoftTimeLimitExceeded:
        message = f"Timed out after {kind.soft_time_limit} s"
        finish(operation, State.FAILED, message, message)
    except OperationFailed as exc:
        finish(operation, State.FAILED, str(exc), str(exc))
    except Exception as exc:
        logger.exception("operation %s raised", operation.pk)
        reporter.log(traceback.format_exc(), LogLevel.ERROR)
        message = f"Error: {type(exc).__name__}: {exc}"
        finish(operation, State.FAILED, message, message)
    else:
        reporter.log("Finished.")
        finish(operation, State.SUCCEEDED, operation.status_text or "Done")
    finally:
        heartbeat.stop()
