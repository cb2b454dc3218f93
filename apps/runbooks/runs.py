"""Guided runs: starting one on a section, ticking or skipping its steps, stopping it. Each
change is one transaction with its audit record and, for a run started from an incident,
its line in the incident's timeline. Refusals are audited too."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.records import AuditTarget, record
from apps.incidents.actions import add_entry
from apps.incidents.choices import OPEN_STATES, EntryKind, IncidentState
from apps.incidents.models import Incident
from apps.operations.models import Operation
from apps.runbooks.models import (
    Runbook,
    RunbookRun,
    RunbookVersion,
    RunState,
    RunStep,
    StepState,
)
from apps.runbooks.procedures import Procedure, procedure
from apps.runbooks.rendering import parse

Actor = User | AnonymousUser
MAX_NOTE = 2000


class RunRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def audit_target(run: RunbookRun) -> AuditTarget:
    return AuditTarget("runbooks.run", str(run.pk), str(run))


def _user(actor: Actor | None) -> User | None:
    return actor if isinstance(actor, User) else None


@contextmanager
def _refusals_audited(action: str, actor: Actor, run: RunbookRun | None = None) -> Iterator[None]:
    """Record a refusal raised inside (after its transaction was undone), and re-raise it."""
    try:
        yield
    except RunRefused as exc:
        record(
            action,
            actor=actor,
            outcome=Outcome.DENIED,
            target=audit_target(run) if run is not None else None,
            reason=exc.message,
        )
        raise


def timeline(
    run: RunbookRun,
    author: User | None,
    text: str,
    *,
    entry_kind: str = EntryKind.NOTE,
    operation: Operation | None = None,
    **data: Any,
) -> None:
    """The run's line in its incident's timeline (none without an incident, or once the
    incident is closed: its timeline no longer changes)."""
    if run.incident_id is None:
        return
    incident = Incident.objects.only("pk", "state").get(pk=run.incident_id)
    if incident.state == IncidentState.CLOSED:
        return
    add_entry(
        incident,
        EntryKind(entry_kind),
        author,
        text=text,
        operation=operation,
        data={"runbook_run": run.pk, **data},
    )


def run_label(run: RunbookRun) -> str:
    return f"runbook run #{run.pk} \u201c{run.title}\u201d ({run.runbook.title})"


def _checked_start(
    runbook: Runbook, anchor: str, incident: Incident | None
) -> tuple[RunbookVersion, Procedure]:
    version = runbook.current
    found = procedure(parse(version.source), anchor) if version is not None else None
    if version is None or found is None:
        raise RunRefused("This runbook has no such section.")
    if not found.steps:
        raise RunRefused(
            f"The section \u201c{found.title}\u201d has no numbered steps, checklist or "
            "commands to run."
        )
    if incident is not None and incident.state not in OPEN_STATES:
        raise RunRefused(
            f"Incident #{incident.pk} is {incident.get_state_display().lower()}: start the "
            "run from an open incident, or from none."
        )
    return version, found


def do_start_run(
    actor: Actor, runbook: Runbook, anchor: str, incident: Incident | None = None
) -> RunbookRun:
    """A run of the section ``anchor`` of the runbook's current version."""
    with _refusals_audited("runbooks.run_refused", actor):
        version, found = _checked_start(runbook, anchor, incident)
    with transaction.atomic():
        run = RunbookRun.objects.create(
            runbook=runbook,
            version=version,
            anchor=anchor,
            title=found.title[:300],
            incident=incident,
            started_by=_user(actor),
        )
        RunStep.objects.bulk_create(
            RunStep(
                run=run,
                number=number,
                kind=spec.kind,
                text=spec.text,
                details=spec.details,
                commands=spec.commands,
            )
            for number, spec in enumerate(found.steps, start=1)
        )
        record(
            "runbooks.run_started",
            actor=actor,
            target=audit_target(run),
            data={
                "runbook": runbook.pk,
                "version": version.number,
                "section": anchor,
                "steps": len(found.steps),
                "incident": incident.pk if incident else None,
            },
        )
        timeline(
            run,
            _user(actor),
            f"Started {run_label(run)}: {len(found.steps)} steps.",
            phase="started",
        )
    return run


def _locked(step: RunStep) -> tuple[RunbookRun, RunStep]:
    run = RunbookRun.objects.select_for_update().select_related("runbook").get(pk=step.run_id)
    return run, RunStep.objects.select_for_update().get(pk=step.pk)


def complete_if_done(run: RunbookRun, actor: Actor | None) -> None:
    """Close the (locked) run when its last step is done or skipped."""
    if run.state != RunState.OPEN or run.steps.exclude(state__in=["done", "skipped"]).exists():
        return
    run.state = RunState.COMPLETED
    run.finished_at = timezone.now()
    run.save(update_fields=["state", "finished_at"])
    record(
        "runbooks.run_completed",
        actor=actor,
        actor_label="" if actor else "operations",
        target=audit_target(run),
        data={"steps": run.steps.count()},
    )
    timeline(run, _user(actor), f"Completed {run_label(run)}: every step done.", phase="completed")


def do_finish_step(actor: Actor, step: RunStep, *, skipped: bool, note: str) -> RunStep:
    """Tick a step done (a note is welcome) or skip it (a note says why)."""
    note = note.strip()[:MAX_NOTE]
    with _refusals_audited("runbooks.run_step_refused", actor, step.run), transaction.atomic():
        run, step = _locked(step)
        if run.state != RunState.OPEN:
            raise RunRefused(
                f"This run is {run.get_state_display().lower()}: its steps no longer change."
            )
        if step.is_finished:
            raise RunRefused(f"Step {step.number} is already {step.get_state_display().lower()}.")
        if skipped and not note:
            raise RunRefused(f"Say why step {step.number} is skipped.")
        step.state = StepState.SKIPPED if skipped else StepState.DONE
        step.note = note
        step.done_by = _user(actor)
        step.done_at = timezone.now()
        step.save(update_fields=["state", "note", "done_by", "done_at"])
        verb = "skipped" if skipped else "done"
        record(
            f"runbooks.run_step_{verb}",
            actor=actor,
            target=audit_target(run),
            reason=note,
            data={"step": step.number, "text": step.text[:200]},
        )
        timeline(
            run,
            _user(actor),
            f"Step {step.number} of {run_label(run)} {verb}: {step.text}"
            + (f"\nNote: {note}" if note else ""),
            phase=f"step_{verb}",
            step=step.number,
        )
        complete_if_done(run, actor)
    return step


def do_stop_run(actor: Actor, run: RunbookRun, reason: str) -> RunbookRun:
    """Stop a run before its end, with a reason."""
    reason = reason.strip()[:MAX_NOTE]
    with _refusals_audited("runbooks.run_stop_refused", actor, run), transaction.atomic():
        run = RunbookRun.objects.select_for_update().select_related("runbook").get(pk=run.pk)
        if run.state != RunState.OPEN:
            raise RunRefused(f"This run is already {run.get_state_display().lower()}.")
        if not reason:
            raise RunRefused("Say why the run stops here.")
        run.state = RunState.STOPPED
        run.finished_at = timezone.now()
        run.stop_reason = reason
        run.save(update_fields=["state", "finished_at", "stop_reason"])
        left = run.steps.exclude(state__in=["done", "skipped"]).count()
        record(
            "runbooks.run_stopped",
            actor=actor,
            target=audit_target(run),
            reason=reason,
            data={"steps_left": left},
        )
        timeline(
            run,
            _user(actor),
            f"Stopped {run_label(run)} with {left} step{'s' if left != 1 else ''} left.\n"
            f"Reason: {reason}",
            phase="stopped",
        )
    return run
