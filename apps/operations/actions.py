"""Every change to an operation: start, approve, reject, run after approval, change
parameters, cancel. One transaction and one audit record each; the broker is told on commit."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.records import AuditTarget, record
from apps.operations import dispatch, origins, signals
from apps.operations.choices import State
from apps.operations.models import Operation, hash_params
from apps.operations.notifications import notify_approvers
from apps.operations.registry import (
    OperationKind,
    Target,
    TargetNotFound,
    UnknownKind,
    get_kind,
)

MAX_REASON_LENGTH = 2000


class OperationRefused(Exception):
    """The operation cannot start or change; ``message`` says why in words for people."""

    def __init__(self, message: str, *, existing: Operation | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.existing = existing


class InvalidParameters(OperationRefused):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        flat = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items())
        super().__init__(f"The parameters are not valid: {flat}")
        self.errors = errors


def _audit_target(operation: Operation) -> AuditTarget:
    return AuditTarget(operation.target_type, operation.target_id, operation.target_label)


def _refuse(
    actor: User,
    message: str,
    *,
    kind_name: str,
    target: AuditTarget | None = None,
    existing: Operation | None = None,
) -> OperationRefused:
    """Audit a refusal (denied) and return the exception that tells the user why."""
    record(
        "operation.refused",
        actor=actor,
        outcome=Outcome.DENIED,
        target=target,
        reason=message,
        data={"kind": kind_name},
        operation_id=existing.pk if existing else None,
    )
    return OperationRefused(message, existing=existing)


def _refuse_on(actor: User, operation: Operation, message: str) -> OperationRefused:
    return _refuse(
        actor,
        message,
        kind_name=operation.kind,
        target=_audit_target(operation),
        existing=operation,
    )


def resolve(kind_name: str, target_id: str) -> tuple[OperationKind, Target]:
    """The kind and its target, or a refusal naming what is unknown."""
    try:
        kind = get_kind(kind_name)
    except UnknownKind as exc:
        raise OperationRefused(str(exc)) from None
    try:
        target = kind.resolve_target(target_id)
    except TargetNotFound as exc:
        raise OperationRefused(str(exc) or f"No target {target_id!r} for {kind.label}.") from None
    return kind, target


def validate_params(kind: OperationKind, target: Target, data: dict[str, Any]) -> dict[str, Any]:
    """The cleaned parameters as JSON-ready values, or InvalidParameters."""
    form = kind.form_class(data=data, target=target)
    if not form.is_valid():
        raise InvalidParameters(
            {name: [str(error) for error in errors] for name, errors in form.errors.items()}
        )
    return {name: value for name, value in form.cleaned_data.items() if name in form.fields}


def do_record_invalid_request(
    actor: User, kind: OperationKind, target: Target, errors: dict[str, list[str]], data: Any
) -> None:
    """A request with bad parameters is turned away before anything is sent; the attempt is
    audited (outcome failed) with what was typed, secrets masked by name."""
    submitted = {name: data.get(name) for name in data} if hasattr(data, "get") else {}
    submitted.pop("csrfmiddlewaretoken", None)
    record(
        "operation.invalid",
        actor=actor,
        outcome=Outcome.FAILED,
        target=AuditTarget(target.type, target.id, target.label),
        reason="; ".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items()),
        data={"kind": kind.name, "errors": errors, "submitted": submitted},
    )


def validate_reason(kind: OperationKind, target: Target, reason: str) -> str:
    reason = reason.strip()
    if not reason and (target.is_production or kind.destructive):
        where = "on production" if target.is_production else "for a destructive operation"
        raise OperationRefused(f"A reason is required {where}: say why you are doing this.")
    if len(reason) > MAX_REASON_LENGTH:
        raise OperationRefused(f"The reason is too long (at most {MAX_REASON_LENGTH} characters).")
    return reason


def _active_on(target_key: str) -> Operation | None:
    return Operation.objects.active().filter(target_key=target_key).first()


def describe_conflict(existing: Operation | None) -> str:
    if existing is None:
        return "Another operation was just started on this target; try again in a moment."
    return (
        f"Operation #{existing.pk} ({existing.kind}, {existing.get_state_display().lower()}, "
        f"requested by {existing.requested_by.get_username()}) is already active on "
        f"{existing.target_label}. Wait for it to finish or cancel it first."
    )


def do_start_operation(
    actor: User,
    kind_name: str,
    target_id: str,
    params: dict[str, Any],
    reason: str,
    *,
    idempotency_key: str | None = None,
    override_gate: bool = False,
    origin: str = "",
) -> Operation:
    """Validate, check permission and the kind's gate, and create the operation: queued (sent
    to a worker on commit) or awaiting approval (approvers notified). The same idempotency key
    posted again returns the operation it created the first time. ``override_gate`` lets an
    admin through a closed gate, with a reason; the override is audited. ``origin`` names the
    incident or window it is started from (see origins.py)."""
    if idempotency_key:
        earlier = Operation.objects.filter(idempotency_key=idempotency_key).first()
        if earlier is not None:
            if earlier.requested_by_id != actor.pk:
                raise OperationRefused("This form was already submitted by someone else.")
            return earlier
    kind, target = resolve(kind_name, target_id)
    if not actor.has_perm(kind.permission):
        raise _refuse(
            actor,
            f"Your role does not allow {kind.label} ({kind.permission}).",
            kind_name=kind.name,
            target=AuditTarget(target.type, target.id, target.label),
        )
    try:
        cleaned = validate_params(kind, target, params)
    except InvalidParameters as exc:
        do_record_invalid_request(actor, kind, target, exc.errors, params)
        raise
    reason = validate_reason(kind, target, reason)
    if origin and origins.describe(origin) is None:
        raise OperationRefused(f"It cannot be started from {origin!r}: there is no such thing.")
    blockers = kind.blockers(target, origin)
    if blockers and not override_gate:
        raise _refuse(
            actor,
            f"{kind.label} cannot start on {target.label}: {' '.join(blockers)}",
            kind_name=kind.name,
            target=AuditTarget(target.type, target.id, target.label),
        )
    if blockers and not actor.has_perm("operations.override_gate"):
        raise _refuse(
            actor,
            "Only an admin can override the deploy gate.",
            kind_name=kind.name,
            target=AuditTarget(target.type, target.id, target.label),
        )
    if blockers and not reason:
        raise OperationRefused("Say why you override the deploy gate: the reason is required.")
    needs_approval = kind.needs_approval(target)
    now = timezone.now()
    operation = Operation(
        kind=kind.name,
        target_type=target.type,
        target_id=target.id,
        target_label=target.label,
        # A read-only kind does not hold its target: its key is its own.
        target_key=target.key if kind.exclusive else f"{target.key}/{uuid.uuid4().hex}",
        environment=target.environment,
        is_production=target.is_production,
        params=cleaned,
        params_hash=hash_params(cleaned),
        reason=reason,
        requested_by=actor,
        idempotency_key=idempotency_key or None,
        state=State.AWAITING_APPROVAL if needs_approval else State.QUEUED,
        status_text="Waiting for approval" if needs_approval else "Waiting for a worker",
        created_at=now,
        queued_at=None if needs_approval else now,
        send_count=0 if needs_approval else 1,
        gate_overridden=bool(blockers),
        origin=origin,
    )
    try:
        with transaction.atomic():
            operation.save(force_insert=True)
            record(
                "operation.requested" if needs_approval else "operation.queued",
                actor=actor,
                target=_audit_target(operation),
                reason=reason,
                data={"kind": kind.name, "params": cleaned, "origin": origin},
                operation_id=operation.pk,
            )
            signals.announce(signals.operation_requested, operation)
            if blockers:
                record(
                    "operation.gate_overridden",
                    actor=actor,
                    target=_audit_target(operation),
                    reason=reason,
                    data={"kind": kind.name, "blockers": blockers},
                    operation_id=operation.pk,
                )
            if needs_approval:
                transaction.on_commit(lambda: notify_approvers(operation))
            else:
                transaction.on_commit(lambda: dispatch.send(operation.pk))
    except IntegrityError:
        if idempotency_key:
            earlier = Operation.objects.filter(idempotency_key=idempotency_key).first()
            if earlier is not None and earlier.requested_by_id == actor.pk:
                return earlier
        existing = _active_on(target.key)
        raise _refuse(
            actor,
            describe_conflict(existing),
            kind_name=kind.name,
            target=AuditTarget(target.type, target.id, target.label),
            existing=existing,
        ) from None
    return operation


def _locked(operation: Operation) -> Operation:
    return Operation.objects.select_for_update().get(pk=operation.pk)


def do_approve_operation(actor: User, operation: Operation, comment: str) -> Operation:
    """A second admin approves the operation exactly as its parameters stand now; the
    approval expires after OPERATIONS_APPROVAL_TTL."""
    if not actor.has_perm("operations.approve_operation"):
        raise _refuse_on(actor, operation, "Your role cannot approve operations.")
    if operation.requested_by_id == actor.pk:
        raise _refuse_on(actor, operation, "You cannot approve your own operation.")
    with transaction.atomic():
        operation = _locked(operation)
        if operation.state != State.AWAITING_APPROVAL:
            raise OperationRefused(
                f"Operation #{operation.pk} is {operation.get_state_display().lower()}, "
                "not awaiting approval."
            )
        now = timezone.now()
        operation.state = State.APPROVED
        operation.approved_by = actor  # type: ignore[assignment]
        operation.approved_at = now
        operation.approval_expires_at = now + settings.OPERATIONS_APPROVAL_TTL
        operation.approval_params_hash = operation.params_hash
        operation.approval_comment = comment.strip()
        operation.status_text = "Approved: ready to run"
        operation.save(
            update_fields=[
                "state",
                "approved_by",
                "approved_at",
                "approval_expires_at",
                "approval_params_hash",
                "approval_comment",
                "status_text",
            ]
        )
        record(
            "operation.approved",
            actor=actor,
            target=_audit_target(operation),
            reason=operation.approval_comment,
            data={"params_hash": operation.params_hash},
            operation_id=operation.pk,
        )
    return operation


def do_reject_operation(actor: User, operation: Operation, comment: str) -> Operation:
    """A second admin turns the request down; the operation ends without running."""
    if not actor.has_perm("operations.approve_operation"):
        raise _refuse_on(actor, operation, "Your role cannot reject operations.")
    if operation.requested_by_id == actor.pk:
        raise _refuse_on(actor, operation, "You cannot decide on your own operation.")
    if not comment.strip():
        raise OperationRefused("Say why you reject it: the requester will read this.")
    with transaction.atomic():
        operation = _locked(operation)
        if operation.state not in (State.AWAITING_APPROVAL, State.APPROVED):
            raise OperationRefused(f"Operation #{operation.pk} is not waiting for a decision.")
        operation.state = State.REJECTED
        operation.approval_comment = comment.strip()
        operation.finished_at = timezone.now()
        operation.status_text = f"Rejected by {actor.get_username()}"
        operation.save(update_fields=["state", "approval_comment", "finished_at", "status_text"])
        record(
            "operation.rejected",
            actor=actor,
            target=_audit_target(operation),
            reason=operation.approval_comment,
            operation_id=operation.pk,
        )
    return operation


def do_run_approved_operation(actor: User, operation: Operation) -> Operation:
    """Queue an approved operation, if its approval still holds for its current parameters;
    otherwise the approval is void and the operation waits for a new one."""
    kind = get_kind(operation.kind)
    if not actor.has_perm(kind.permission):
        raise _refuse_on(actor, operation, f"Your role does not allow {kind.label}.")
    with transaction.atomic():
        operation = _locked(operation)
        if operation.state != State.APPROVED:
            raise OperationRefused(f"Operation #{operation.pk} is not approved.")
        now = timezone.now()
        if operation.approval_is_valid(now):
            operation.state = State.QUEUED
            operation.queued_at = now
            operation.send_count = 1
            operation.status_text = "Waiting for a worker"
            operation.save(update_fields=["state", "queued_at", "send_count", "status_text"])
            record(
                "operation.queued",
                actor=actor,
                target=_audit_target(operation),
                reason=operation.reason,
                data={"kind": operation.kind, "approved_by": operation.approved_by_id},
                operation_id=operation.pk,
            )
            transaction.on_commit(lambda: dispatch.send(operation.pk))
            return operation
        expired = operation.approval_expires_at is not None and now >= operation.approval_expires_at
        why = "The approval has expired" if expired else "The parameters changed after approval"
        _void_approval(operation, f"{why}: it needs a new approval.")
        record(
            "operation.approval_void",
            actor=actor,
            outcome=Outcome.DENIED,
            target=_audit_target(operation),
            reason=why,
            operation_id=operation.pk,
        )
        transaction.on_commit(lambda: notify_approvers(operation))
    # Raised after the commit, so that the voided approval is kept.
    raise OperationRefused(f"{why}; another admin must approve it again.")


def _void_approval(operation: Operation, status: str) -> None:
    operation.state = State.AWAITING_APPROVAL
    operation.approved_by = None
    operation.approved_at = None
    operation.approval_expires_at = None
    operation.approval_params_hash = ""
    operation.status_text = status[:200]
    operation.save(
        update_fields=[
            "state",
            "approved_by",
            "approved_at",
            "approval_expires_at",
            "approval_params_hash",
            "status_text",
        ]
    )


def do_change_operation_params(
    actor: User, operation: Operation, params: dict[str, Any]
) -> Operation:
    """The requester edits the parameters before it runs; any approval given is void."""
    if operation.requested_by_id != actor.pk:
        raise _refuse_on(actor, operation, "Only the requester can change the parameters.")
    kind = get_kind(operation.kind)
    cleaned = validate_params(kind, operation.target, params)
    with transaction.atomic():
        operation = _locked(operation)
        if operation.state not in (State.AWAITING_APPROVAL, State.APPROVED):
            raise OperationRefused("Parameters can only change before the operation runs.")
        before = operation.params
        operation.params = cleaned
        operation.params_hash = hash_params(cleaned)
        operation.save(update_fields=["params", "params_hash"])
        _void_approval(operation, "Parameters changed: waiting for approval")
        record(
            "operation.params_changed",
            actor=actor,
            target=_audit_target(operation),
            data={"before": before, "after": cleaned},
            operation_id=operation.pk,
        )
        transaction.on_commit(lambda: notify_approvers(operation))
    return operation


def do_cancel_operation(actor: User, operation: Operation, reason: str) -> Operation:
    """Cancel before it runs, or ask a running handler to stop at its next report."""
    may = operation.requested_by_id == actor.pk or actor.has_perm(
        "operations.run_destructive_operation"
    )
    if not may:
        raise _refuse_on(actor, operation, "Only the requester or an admin can cancel this.")
    with transaction.atomic():
        operation = _locked(operation)
        now = timezone.now()
        if operation.state == State.RUNNING:
            if operation.cancel_requested_at is None:
                operation.cancel_requested_at = now
                operation.status_text = f"Cancel requested by {actor.get_username()}"
                operation.save(update_fields=["cancel_requested_at", "status_text"])
            action = "operation.cancel_requested"
        elif operation.is_active:
            operation.state = State.CANCELLED
            operation.finished_at = now
            operation.status_text = f"Cancelled by {actor.get_username()} before it ran"
            operation.save(update_fields=["state", "finished_at", "status_text"])
            action = "operation.cancelled"
        else:
            raise OperationRefused(f"Operation #{operation.pk} has already ended.")
        record(
            action,
            actor=actor,
            target=_audit_target(operation),
            reason=reason.strip(),
            operation_id=operation.pk,
        )
    return operation
