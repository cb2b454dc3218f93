"""How guided runs plug into the operation engine, registered when the app is ready: an
operation started from a run's step (origin ``runbook-step:<id>``, the step's "Run in portal"
button) is linked to the step, and its outcome ticks the step (or marks it failed). Both are
audited and, for a run started from an incident, written into the incident's timeline."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.audit.records import record
from apps.incidents.choices import EntryKind
from apps.incidents.hooks import ORIGIN_TYPE as INCIDENT_ORIGIN
from apps.operations import origins, signals
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.runbooks.models import RunbookRun, RunStep, StepState
from apps.runbooks.runs import audit_target, complete_if_done, run_label, timeline

ORIGIN_TYPE = "runbook-step"


def origin_of(step: RunStep) -> str:
    return f"{ORIGIN_TYPE}:{step.pk}"


def _describe(object_id: str) -> origins.Origin | None:
    step = RunStep.objects.select_related("run").filter(pk=int(object_id)).first()
    if step is None:
        return None
    incident_id = step.run.incident_id
    return origins.Origin(
        origin_of(step),
        f"Run #{step.run_id} \u201c{step.run.title}\u201d, step {step.number}",
        f"{step.run.get_absolute_url()}#step-{step.number}",
        within=f"{INCIDENT_ORIGIN}:{incident_id}" if incident_id is not None else "",
    )


origins.register_origin(ORIGIN_TYPE, _describe)


def _locked_step(operation: Operation) -> tuple[RunbookRun, RunStep] | None:
    step_id = origins.origin_id(operation.origin, ORIGIN_TYPE)
    if step_id is None:
        return None
    step = RunStep.objects.filter(pk=step_id).first()
    if step is None:
        return None
    run = RunbookRun.objects.select_for_update().select_related("runbook").get(pk=step.run_id)
    return run, RunStep.objects.select_for_update().get(pk=step_id)


def _on_requested(sender: Any, operation: Operation, **kwargs: Any) -> None:
    # A savepoint: a failure here must not undo the operation's own record.
    with transaction.atomic():
        found = _locked_step(operation)
        if found is None:
            return
        run, step = found
        if not step.is_finished:
            step.operation = operation
            step.state = StepState.RUNNING
            step.save(update_fields=["operation", "state"])
        record(
            "runbooks.run_step_operation",
            actor=operation.requested_by,
            target=audit_target(run),
            operation_id=operation.pk,
            data={"step": step.number, "kind": operation.kind, "operation": operation.pk},
        )
        timeline(
            run,
            operation.requested_by,
            f"Step {step.number} of {run_label(run)}: {step.text}",
            entry_kind=EntryKind.OPERATION,
            operation=operation,
            phase="requested",
            step=step.number,
            kind=operation.kind,
            target=operation.target_label,
            state=operation.state,
            reason=operation.reason,
        )


def _on_finished(sender: Any, operation: Operation, **kwargs: Any) -> None:
    with transaction.atomic():
        found = _locked_step(operation)
        if found is None:
            return
        run, step = found
        succeeded = operation.state == State.SUCCEEDED
        if step.operation_id == operation.pk and not step.is_finished and run.is_open:
            step.state = StepState.DONE if succeeded else StepState.FAILED
            if succeeded:
                step.note = f"Done by operation #{operation.pk}."
                step.done_by = operation.requested_by
                step.done_at = timezone.now()
            step.save(update_fields=["state", "note", "done_by", "done_at"])
        record(
            "runbooks.run_step_done" if succeeded else "runbooks.run_step_failed",
            actor=None,
            actor_label="operations",
            target=audit_target(run),
            operation_id=operation.pk,
            data={"step": step.number, "operation": operation.pk, "state": operation.state},
        )
        timeline(
            run,
            None,
            f"Step {step.number} of {run_label(run)}: {step.text}",
            entry_kind=EntryKind.OPERATION,
            operation=operation,
            phase="finished",
            step=step.number,
            kind=operation.kind,
            target=operation.target_label,
            state=operation.state,
            error=operation.error,
        )
        if succeeded:
            complete_if_done(run, None)


signals.operation_requested.connect(_on_requested, dispatch_uid="runbooks-step-requested")
signals.operation_finished.connect(_on_finished, dispatch_uid="runbooks-step-finished")
