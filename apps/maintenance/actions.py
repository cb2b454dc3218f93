"""Every change to maintenance windows: one transaction and one audit record each; the
beat's transitions go through the same functions (with no person as actor)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.records import AuditTarget, record
from apps.maintenance import alert_suppression, communication, recurrence
from apps.maintenance.choices import OccurrenceState, StageKind, StepKind, WindowState
from apps.maintenance.models import ChecklistStep, Occurrence, Stage, StageOutcome, Window
from apps.operations.actions import OperationRefused, do_start_operation
from apps.services.operation_forms import MAX_FLAG_VALUE_LENGTH
from apps.services.probes import probe_url

logger = logging.getLogger(__name__)

FLAG_KIND = "services.set_flags"


class MaintenanceRefused(Exception):
    """The change cannot be made; ``message`` says why in words for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _target(window: Window) -> AuditTarget:
    return AuditTarget("maintenance.window", str(window.pk), window.title)


def _refuse(actor: User | None, window: Window | None, message: str) -> MaintenanceRefused:
    record(
        "maintenance.refused",
        actor=actor,
        actor_label=communication.BEAT_ACTOR,
        outcome=Outcome.DENIED,
        target=_target(window) if window is not None else None,
        reason=message,
    )
    return MaintenanceRefused(message)


def materialise(window: Window, now: datetime) -> list[Occurrence]:
    """Create the next MAINTENANCE_OCCURRENCES_AHEAD occurrences not created yet, each with
    its stages and checklist."""
    existing = Occurrence.objects.filter(window=window)
    last = existing.order_by("-original_start").values_list("original_start", flat=True).first()
    ahead = existing.filter(start_at__gt=now).exclude(
        state__in=[OccurrenceState.SKIPPED, OccurrenceState.CANCELLED]
    )
    missing = settings.MAINTENANCE_OCCURRENCES_AHEAD - ahead.count()
    if missing <= 0:
        return []
    after = max(now, last) if last is not None else now - timedelta(microseconds=1)
    slots = recurrence.slots_after(
        start_at=window.start_at,
        end_at=window.end_at,
        zone=window.zone,
        recurrence=window.recurrence,
        after=after,
        count=missing,
    )
    created = []
    for slot in slots:
        occurrence = Occurrence.objects.create(
            window=window,
            original_start=slot.original_start,
            start_at=slot.start,
            end_at=slot.end,
            short_notice=slot.start - now < settings.MAINTENANCE_NOTICE,
        )
        communication.plan(occurrence, now)
        ChecklistStep.objects.bulk_create(
            ChecklistStep(occurrence=occurrence, position=position, kind=kind)
            for position, kind in enumerate(StepKind.values)
        )
        created.append(occurrence)
    return created


@dataclass
class WindowData:
    """What the form validated (see forms.WindowForm)."""

    title: str
    services: list[Any]
    environments: list[Any]
    time_zone: str
    start_at: datetime
    end_at: datetime
    recurrence: str
    impact: str
    message: str
    maintenance_mode: bool
    short_notice_reason: str


def validate(data: WindowData, now: datetime) -> list[str]:
    """Every reason the data cannot be saved (the form shows them; the action checks again)."""
    errors = []
    try:
        zone = recurrence.zone_named(data.time_zone)
    except ValueError as exc:
        return [str(exc)]
    if data.end_at <= data.start_at:
        errors.append("The end must be after the start.")
    if data.start_at <= now:
        errors.append("The start is in the past: a window is planned ahead.")
    if not data.services:
        errors.append("Choose at least one affected service.")
    if errors:
        return errors
    if data.recurrence:
        try:
            recurrence.parse_rule(data.recurrence, data.start_at, zone)
        except recurrence.BadRecurrence as exc:
            return [str(exc)]
        if not recurrence.occurs_after(
            start_at=data.start_at,
            end_at=data.end_at,
            zone=zone,
            recurrence=data.recurrence,
            after=now,
        ):
            return ["The recurrence never occurs after now: check its UNTIL, COUNT and days."]
    if data.start_at - now < settings.MAINTENANCE_NOTICE and not data.short_notice_reason.strip():
        errors.append(
            f"This is less than the {settings.MAINTENANCE_NOTICE.days} days' notice the policy "
            "asks: say why (the announcement will say so)."
        )
    return errors


def overlapping(data: WindowData, exclude: Window | None = None) -> list[Occurrence]:
    """Occurrences of other live windows on the same services whose time crosses the new
    window's first occurrence (the warning people confirm)."""
    rows = Occurrence.objects.filter(
        window__services__in=data.services,
        start_at__lt=data.end_at,
        end_at__gt=data.start_at,
        state__in=[OccurrenceState.SCHEDULED, OccurrenceState.IN_PROGRESS],
    )
    if exclude is not None:
        rows = rows.exclude(window=exclude)
    return list(rows.select_related("window").distinct().order_by("start_at")[:10])


def _fields(window: Window, data: WindowData) -> None:
    window.title = data.title.strip()
    window.time_zone = data.time_zone.strip()
    window.start_at = data.start_at
    window.end_at = data.end_at
    window.recurrence = data.recurrence.strip()
    window.impact = data.impact
    window.message = data.message
    window.maintenance_mode = data.maintenance_mode
    window.short_notice_reason = data.short_notice_reason.strip()


def do_create_window(actor: User, data: WindowData) -> Window:
    """Schedule a window: its occurrences, their stages (announced at once when the notice
    is short) and checklists."""
    now = timezone.now()
    if not actor.has_perm("maintenance.add_window"):
        raise _refuse(actor, None, "Your role cannot schedule maintenance windows.")
    if errors := validate(data, now):
        raise MaintenanceRefused(" ".join(errors))
    with transaction.atomic():
        window = Window(owner=actor, created_at=now, updated_at=now)
        _fields(window, data)
        window.save()
        window.services.set(data.services)
        window.environments.set(data.environments)
        occurrences = materialise(window, now)
        record(
            "maintenance.window_scheduled",
            actor=actor,
            target=_target(window),
            reason=window.short_notice_reason,
            data={
                "start_at": window.start_at.isoformat(),
                "end_at": window.end_at.isoformat(),
                "time_zone": window.time_zone,
                "recurrence": window.recurrence,
                "services": [service.pk for service in data.services],
                "occurrences": len(occurrences),
            },
        )
    return window


TIMING = ("time_zone", "start_at", "end_at", "recurrence")


def do_update_window(actor: User, window: Window, data: WindowData) -> Window:
    """Change a window. Its timing may change only while none of its upcoming occurrences
    was announced (move those one by one instead); then they are planned again."""
    now = timezone.now()
    if not actor.has_perm("maintenance.change_window"):
        raise _refuse(actor, window, "Your role cannot change maintenance windows.")
    if window.state in (WindowState.COMPLETED, WindowState.CANCELLED):
        raise _refuse(actor, window, f"The window is {window.get_state_display().lower()}.")
    before = Window.objects.get(pk=window.pk)
    _fields(window, data)
    timing_changed = any(getattr(before, name) != getattr(window, name) for name in TIMING)
    if timing_changed and (errors := validate(data, now)):
        raise MaintenanceRefused(" ".join(errors))
    upcoming = window.occurrences.filter(state=OccurrenceState.SCHEDULED)
    if (
        timing_changed
        and Stage.objects.filter(
            occurrence__in=upcoming, kind=StageKind.ANNOUNCE, claimed_at__isnull=False
        ).exists()
    ):
        raise _refuse(
            actor,
            window,
            "An upcoming occurrence was already announced: move or skip occurrences one by "
            "one instead of changing the window's timing.",
        )
    with transaction.atomic():
        window.updated_at = now
        window.save()
        window.services.set(data.services)
        window.environments.set(data.environments)
        if timing_changed:
            upcoming.delete()
            materialise(window, now)
        record(
            "maintenance.window_changed",
            actor=actor,
            target=_target(window),
            data={
                "changes": {
                    name: [str(getattr(before, name)), str(getattr(window, name))]
                    for name in [*TIMING, "title", "impact", "message", "maintenance_mode"]
                    if getattr(before, name) != getattr(window, name)
                }
            },
        )
    return window


def do_cancel_window(actor: User, window: Window, reason: str) -> Window:
    """Cancel every occurrence not started yet; their unsent stages are skipped."""
    if not actor.has_perm("maintenance.change_window"):
        raise _refuse(actor, window, "Your role cannot cancel maintenance windows.")
    if window.occurrences.filter(state=OccurrenceState.IN_PROGRESS).exists():
        raise _refuse(actor, window, "An occurrence is in progress: end it first.")
    now = timezone.now()
    with transaction.atomic():
        upcoming = window.occurrences.filter(state=OccurrenceState.SCHEDULED)
        _skip_stages(
            Stage.objects.filter(occurrence__in=upcoming), now, "The window was cancelled."
        )
        upcoming.update(state=OccurrenceState.CANCELLED)
        window.state = WindowState.CANCELLED
        window.updated_at = now
        window.save(update_fields=["state", "updated_at"])
        record("maintenance.window_cancelled", actor=actor, target=_target(window), reason=reason)
    return window


def _skip_stages(stages: Any, now: datetime, note: str) -> None:
    stages.filter(claimed_at__isnull=True).update(
        claimed_at=now, finished_at=now, outcome=StageOutcome.SKIPPED, note=note
    )


def _locked(occurrence: Occurrence) -> Occurrence:
    return Occurrence.objects.select_for_update().select_related("window").get(pk=occurrence.pk)


def do_skip_occurrence(actor: User, occurrence: Occurrence, reason: str) -> Occurrence:
    """Skip one upcoming occurrence of a recurring window; the next one is planned."""
    if not actor.has_perm("maintenance.change_window"):
        raise _refuse(actor, occurrence.window, "Your role cannot skip occurrences.")
    now = timezone.now()
    with transaction.atomic():
        occurrence = _locked(occurrence)
        if occurrence.state != OccurrenceState.SCHEDULED:
            raise MaintenanceRefused(
                f"This occurrence is {occurrence.get_state_display().lower()}."
            )
        occurrence.state = OccurrenceState.SKIPPED
        occurrence.save(update_fields=["state"])
        _skip_stages(occurrence.stages.all(), now, "The occurrence was skipped.")
        materialise(occurrence.window, now)
        record(
            "maintenance.occurrence_skipped",
            actor=actor,
            target=_target(occurrence.window),
            reason=reason,
            data={"occurrence": occurrence.pk, "start_at": occurrence.start_at.isoformat()},
        )
    return occurrence


def do_move_occurrence(
    actor: User, occurrence: Occurrence, start_at: datetime, end_at: datetime, reason: str
) -> Occurrence:
    """Move one upcoming occurrence; its stages not sent yet follow it."""
    if not actor.has_perm("maintenance.change_window"):
        raise _refuse(actor, occurrence.window, "Your role cannot move occurrences.")
    now = timezone.now()
    if end_at <= start_at:
        raise MaintenanceRefused("The end must be after the start.")
    if start_at <= now:
        raise MaintenanceRefused("The new start is in the past.")
    with transaction.atomic():
        occurrence = _locked(occurrence)
        if occurrence.state != OccurrenceState.SCHEDULED:
            raise MaintenanceRefused(
                f"This occurrence is {occurrence.get_state_display().lower()}."
            )
        before = (occurrence.start_at, occurrence.end_at)
        occurrence.start_at, occurrence.end_at = start_at, end_at
        occurrence.save(update_fields=["start_at", "end_at"])
        pending = occurrence.stages.filter(claimed_at__isnull=True)
        due = {
            StageKind.ANNOUNCE: max(start_at - settings.MAINTENANCE_NOTICE, now),
            StageKind.REMIND: max(start_at - settings.MAINTENANCE_REMIND_BEFORE, now),
            StageKind.IN_PROGRESS: start_at,
            StageKind.COMPLETED: end_at,
        }
        for stage in pending:
            stage.due_at = due[StageKind(stage.kind)]
            stage.save(update_fields=["due_at"])
        record(
            "maintenance.occurrence_moved",
            actor=actor,
            target=_target(occurrence.window),
            reason=reason,
            data={
                "occurrence": occurrence.pk,
                "from": [moment.isoformat() for moment in before],
                "to": [start_at.isoformat(), end_at.isoformat()],
            },
        )
    return occurrence


def _flag_message(window: Window) -> str:
    # A flag value is one line, within the services' length limit.
    return " ".join(window.message.split())[:MAX_FLAG_VALUE_LENGTH]


def _switch_maintenance_mode(occurrence: Occurrence, actor: User, on: bool) -> None:
    """Start one services.set_flags operation per affected target, from the window's origin.
    A refusal (allow-list, another operation running, an incident's gate) is kept on the
    occurrence for people to see; it never stops the window."""
    window = occurrence.window
    if on:
        params = {
            "set_flags": f"MAINTENANCE_MODE=true\nMAINTENANCE_MESSAGE={_flag_message(window)}",
            "unset_flags": "",
        }
    else:
        params = {"set_flags": "", "unset_flags": "MAINTENANCE_MODE MAINTENANCE_MESSAGE"}
    word = "on" if on else "off"
    for target in window.affected_targets():
        try:
            # A savepoint: a refused operation must not undo the window's own change.
            with transaction.atomic():
                do_start_operation(
                    actor,
                    FLAG_KIND,
                    str(target.pk),
                    params,
                    f"Maintenance window #{window.pk} \u201c{window.title}\u201d: maintenance "
                    f"mode {word}.",
                    origin=window.origin,
                )
        except OperationRefused as exc:
            occurrence.problems.append(f"Maintenance mode {word} on {target}: {exc.message}"[:1000])
    occurrence.save(update_fields=["problems"])


def do_start_occurrence(actor: User | None, occurrence: Occurrence) -> Occurrence:
    """Start an occurrence, on time (the beat, ``actor`` None) or now ("start now"): in
    progress, the "in progress" stage due now, maintenance mode switched on if asked (the
    operations run as the window's owner when the beat starts it)."""
    window = occurrence.window
    if actor is not None and not actor.has_perm("maintenance.change_window"):
        raise _refuse(actor, window, "Your role cannot start maintenance windows.")
    now = timezone.now()
    with transaction.atomic():
        occurrence = _locked(occurrence)
        window = occurrence.window
        if occurrence.state != OccurrenceState.SCHEDULED:
            raise MaintenanceRefused(
                f"This occurrence is {occurrence.get_state_display().lower()}."
            )
        if Occurrence.objects.filter(window=window, state=OccurrenceState.IN_PROGRESS).exists():
            raise MaintenanceRefused("Another occurrence of this window is in progress.")
        early = occurrence.start_at > now
        occurrence.state = OccurrenceState.IN_PROGRESS
        occurrence.started_at = now
        if early:
            occurrence.start_at = now
            # Started early: the announcement and reminder still pending are moot.
            _skip_stages(
                occurrence.stages.filter(kind__in=[StageKind.ANNOUNCE, StageKind.REMIND]),
                now,
                "The window was started early, before this message was due.",
            )
            occurrence.stages.filter(kind=StageKind.IN_PROGRESS, claimed_at__isnull=True).update(
                due_at=now
            )
        occurrence.save(update_fields=["state", "started_at", "start_at"])
        window.state = WindowState.IN_PROGRESS
        window.save(update_fields=["state"])
        if window.maintenance_mode:
            _switch_maintenance_mode(occurrence, actor or window.owner, on=True)
        record(
            "maintenance.started",
            actor=actor,
            actor_label=communication.BEAT_ACTOR,
            target=_target(window),
            data={"occurrence": occurrence.pk, "early": early},
        )
    return occurrence


def do_end_occurrence(actor: User | None, occurrence: Occurrence) -> Occurrence:
    """End an occurrence, on time (the beat) or early: completed, the "completed" stage due
    now, the alerts it suppressed let go, maintenance mode switched off, the next
    occurrences planned."""
    window = occurrence.window
    if actor is not None and not actor.has_perm("maintenance.change_window"):
        raise _refuse(actor, window, "Your role cannot end maintenance windows.")
    now = timezone.now()
    with transaction.atomic():
        alert_suppression.lock_overlapping(occurrence)
        occurrence = _locked(occurrence)
        window = occurrence.window
        if occurrence.state != OccurrenceState.IN_PROGRESS:
            raise MaintenanceRefused(
                f"This occurrence is {occurrence.get_state_display().lower()}."
            )
        early = occurrence.end_at > now
        occurrence.state = OccurrenceState.COMPLETED
        occurrence.ended_at = now
        if early:
            occurrence.end_at = now
            occurrence.stages.filter(kind=StageKind.COMPLETED, claimed_at__isnull=True).update(
                due_at=now
            )
        occurrence.save(update_fields=["state", "ended_at", "end_at"])
        released = alert_suppression.release_alerts(occurrence)
        if window.maintenance_mode:
            _switch_maintenance_mode(occurrence, actor or window.owner, on=False)
        materialise(window, now)
        more = window.occurrences.filter(state=OccurrenceState.SCHEDULED).exists()
        window.state = WindowState.SCHEDULED if more else WindowState.COMPLETED
        window.save(update_fields=["state"])
        record(
            "maintenance.ended",
            actor=actor,
            actor_label=communication.BEAT_ACTOR,
            target=_target(window),
            data={"occurrence": occurrence.pk, "early": early, "alerts_released": released},
        )
    return occurrence


MAX_EXTENSION = timedelta(hours=24)


def do_extend_occurrence(actor: User, occurrence: Occurrence, by: timedelta) -> Occurrence:
    """Push the end of a running occurrence; the "completed" message follows it."""
    if not actor.has_perm("maintenance.change_window"):
        raise _refuse(actor, occurrence.window, "Your role cannot extend maintenance windows.")
    if not timedelta(0) < by <= MAX_EXTENSION:
        raise MaintenanceRefused("Extend by between 1 minute and 24 hours.")
    with transaction.atomic():
        occurrence = _locked(occurrence)
        if occurrence.state != OccurrenceState.IN_PROGRESS:
            raise MaintenanceRefused("Only a window in progress can be extended.")
        before = occurrence.end_at
        occurrence.end_at = before + by
        occurrence.save(update_fields=["end_at"])
        occurrence.stages.filter(kind=StageKind.COMPLETED, claimed_at__isnull=True).update(
            due_at=occurrence.end_at
        )
        record(
            "maintenance.extended",
            actor=actor,
            target=_target(occurrence.window),
            data={
                "occurrence": occurrence.pk,
                "from": before.isoformat(),
                "to": occurrence.end_at.isoformat(),
            },
        )
    return occurrence


def do_tick_step(actor: User, step: ChecklistStep, note: str) -> ChecklistStep:
    """Tick one checklist step with a note ("verify health" first runs the probes)."""
    window = step.occurrence.window
    if not actor.has_perm("maintenance.change_window"):
        raise _refuse(actor, window, "Your role cannot tick the checklist.")
    note = note.strip()
    if len(note) > 2000:
        raise MaintenanceRefused("The note is too long (at most 2,000 characters).")
    result: dict[str, Any] = {}
    if step.kind == StepKind.VERIFY:
        result = verify_health(window)
    with transaction.atomic():
        step = ChecklistStep.objects.select_for_update().get(pk=step.pk)
        if step.done_at is not None and step.kind != StepKind.VERIFY:
            raise MaintenanceRefused("This step is already ticked.")
        step.done_at = timezone.now()
        step.done_by = actor
        step.note = note
        if result:
            step.result = result
        step.save(update_fields=["done_at", "done_by", "note", "result"])
        record(
            "maintenance.step_ticked",
            actor=actor,
            target=_target(window),
            reason=note,
            data={"occurrence": step.occurrence_id, "step": step.kind, "result": result},
        )
    return step


def verify_health(window: Window) -> dict[str, Any]:
    """One probe of each affected target's readiness (else health) URL, as the probe cycle
    does it: {"ok": all healthy, "targets": [{target, ok, status, detail}]}."""
    rows = []
    for target in window.affected_targets():
        url = target.readiness_url or target.health_url or target.liveness_url
        if not url:
            rows.append(
                {
                    "target": str(target),
                    "ok": False,
                    "status": "no_data",
                    "detail": "No health URL configured.",
                }
            )
            continue
        answer = probe_url(url)
        rows.append(
            {
                "target": str(target),
                "ok": answer.ok,
                "status": str(answer.status),
                "detail": answer.detail,
            }
        )
    return {"ok": bool(rows) and all(row["ok"] for row in rows), "targets": rows}


def do_send_test_message(actor: User, window: Window) -> list[str]:
    """Send a test of the window's announcement to the actor's email and the webhook, to
    check the channels before the real messages go; returns where it went."""
    if not actor.has_perm("maintenance.change_window"):
        raise _refuse(actor, window, "Your role cannot send test messages.")
    if not actor.email and not settings.MAINTENANCE_WEBHOOK_URL:
        raise MaintenanceRefused(
            "Nowhere to send a test: your account has no email address and no webhook is "
            "configured (MAINTENANCE_WEBHOOK_URL)."
        )
    reached, failures = communication.send_test(window, actor.email)
    record(
        "maintenance.test_message_sent",
        actor=actor,
        outcome=Outcome.FAILED if failures else Outcome.SUCCEEDED,
        target=_target(window),
        data={"reached": reached, "failures": failures},
    )
    if failures:
        raise MaintenanceRefused("The test message failed: " + "; ".join(failures))
    return reached
