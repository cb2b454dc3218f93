"""Every change to an incident: one transaction, one timeline entry, one audit record, and the
notifications scheduled on commit. Business rules that forms cannot see (a reason to lower
the severity or reopen, the post-mortem before closing) are checked here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.records import AuditTarget, record
from apps.incidents import notifications
from apps.incidents.choices import (
    OPEN_STATES,
    STATE_ORDER,
    EntryKind,
    IncidentState,
    Role,
    Visibility,
)
from apps.incidents.models import (
    INCIDENT_TYPE,
    EscalationPolicy,
    Incident,
    Severity,
    TimelineEntry,
)
from apps.services.models import Environment, Service

# A clock a few seconds ahead in a browser is not "the future".
FUTURE_TOLERANCE = timedelta(minutes=1)
POSTMORTEM_WITHIN = timedelta(hours=48)


class IncidentRefused(Exception):
    """The change cannot be made; ``message`` says why, for people. ``denied`` names the
    audit action of a refusal raised inside a transaction: ``changing`` records it after the
    rollback, which would otherwise take the record with it."""

    def __init__(self, message: str, *, denied: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.denied = denied


def audit_target(incident: Incident) -> AuditTarget:
    return AuditTarget(INCIDENT_TYPE, str(incident.pk), f"#{incident.pk} {incident.title}"[:255])


def refuse(actor: User, incident: Incident | None, action: str, message: str) -> IncidentRefused:
    """Audit a refusal (denied) and return the exception that tells the user why."""
    record(
        f"incident.{action}",
        actor=actor,
        outcome=Outcome.DENIED,
        target=audit_target(incident) if incident is not None else None,
        reason=message,
    )
    return IncidentRefused(message)


@contextmanager
def changing(actor: User, incident: Incident) -> Iterator[None]:
    """One transaction for a change; a refusal raised inside it with ``denied`` is audited
    once the transaction has rolled back."""
    try:
        with transaction.atomic():
            yield
    except IncidentRefused as exc:
        if exc.denied:
            refuse(actor, incident, exc.denied, exc.message)
        raise


def _locked(incident: Incident) -> Incident:
    return Incident.objects.select_for_update().select_related("severity").get(pk=incident.pk)


def add_entry(
    incident: Incident,
    kind: EntryKind,
    author: User | None,
    *,
    occurred_at: datetime | None = None,
    **fields: Any,
) -> TimelineEntry:
    """Append an entry (inside the caller's transaction)."""
    now = timezone.now()
    entry = TimelineEntry(
        incident=incident,
        kind=kind,
        author=author,
        occurred_at=occurred_at or now,
        created_at=now,
        **fields,
    )
    entry.save(force_insert=True)
    return entry


def check_occurred_at(occurred_at: datetime | None, incident: Incident) -> None:
    if occurred_at is None:
        return
    if occurred_at > timezone.now() + FUTURE_TOLERANCE:
        raise IncidentRefused("The time it happened is in the future: give a time before now.")


def _check_correction(corrects: TimelineEntry | None, incident: Incident) -> None:
    if corrects is not None and corrects.incident_id != incident.pk:
        raise IncidentRefused("The entry to correct belongs to another incident.")


def _next_update_due(severity: Severity, start: datetime) -> datetime | None:
    return start + severity.update_every if severity.update_every else None


def _label(users: Iterable[Any]) -> list[str]:
    return sorted(str(item) for item in users)


def do_declare_incident(
    actor: User,
    *,
    title: str,
    severity: Severity,
    services: Iterable[Service] = (),
    environments: Iterable[Environment] = (),
    customer_impact: str = "",
    commander: User | None = None,
    policy: EscalationPolicy | None = None,
) -> Incident:
    """Open an incident: the declarer commands it unless someone else is named; level 1 of
    the escalation policy is told, and the acknowledgement clock starts."""
    title = title.strip()
    if not title:
        raise IncidentRefused("Give the incident a title: what is broken, for whom.")
    services = list(services)
    environments = list(environments)
    now = timezone.now()
    policy = policy or EscalationPolicy.objects.filter(is_default=True).first()
    with transaction.atomic():
        incident = Incident(
            title=title,
            severity=severity,
            customer_impact=customer_impact.strip(),
            commander=commander or actor,
            declared_by=actor,
            declared_at=now,
            policy=policy,
            escalation_level=1,
            acknowledge_by=severity.acknowledge_by(now),
            next_update_due=_next_update_due(severity, now),
        )
        incident.save(force_insert=True)
        incident.services.set(services)
        incident.environments.set(environments)
        add_entry(
            incident,
            EntryKind.DECLARED,
            actor,
            text=incident.customer_impact,
            data={
                "severity": severity.key,
                "services": _label(services),
                "environments": _label(environments),
                "commander": incident.commander.get_username(),
            },
        )
        record(
            "incident.declared",
            actor=actor,
            target=audit_target(incident),
            data={"severity": severity.key, "services": [service.pk for service in services]},
        )
        notifications.notify(incident, EntryKind.DECLARED, level=1)
    return incident


def do_acknowledge_incident(actor: User, incident: Incident) -> Incident:
    """Someone has it: escalation stops. Acknowledging twice changes nothing."""
    with transaction.atomic():
        incident = _locked(incident)
        if incident.acknowledged_at is not None:
            return incident
        now = timezone.now()
        incident.acknowledged_at = now
        incident.acknowledged_by = actor  # type: ignore[assignment]
        incident.save(update_fields=["acknowledged_at", "acknowledged_by"])
        add_entry(
            incident,
            EntryKind.ACKNOWLEDGED,
            actor,
            data={"after_seconds": int((now - incident.declared_at).total_seconds())},
        )
        record("incident.acknowledged", actor=actor, target=audit_target(incident))
        notifications.notify(incident, EntryKind.ACKNOWLEDGED)
    return incident


def do_change_state(
    actor: User, incident: Incident, state: IncidentState | str, reason: str = ""
) -> Incident:
    """Move between the open states (investigating … monitoring), or reopen a resolved or
    closed incident, which needs a reason. Resolving and closing have their own actions."""
    state = IncidentState(state)
    reason = reason.strip()
    if state == IncidentState.RESOLVED:
        raise IncidentRefused("Resolve the incident with its final public update.")
    if state == IncidentState.CLOSED:
        raise IncidentRefused("Close the incident from its post-mortem.")
    with changing(actor, incident):
        incident = _locked(incident)
        before = IncidentState(incident.state)
        if before == state:
            return incident
        reopening = before not in OPEN_STATES
        if reopening and not reason:
            raise IncidentRefused("Say why you reopen it.", denied="reopen_refused")
        incident.state = state
        fields = ["state"]
        if reopening:
            incident.resolved_at = None
            incident.closed_at = None
            incident.next_update_due = _next_update_due(incident.severity, timezone.now())
            incident.reminded_for = None
            fields += ["resolved_at", "closed_at", "next_update_due", "reminded_for"]
        incident.save(update_fields=fields)
        add_entry(
            incident,
            EntryKind.STATE,
            actor,
            text=reason,
            data={"from": before.value, "to": state.value, "reopened": reopening},
        )
        record(
            "incident.reopened" if reopening else "incident.state_changed",
            actor=actor,
            target=audit_target(incident),
            reason=reason,
            data={"from": before.value, "to": state.value},
        )
    return incident


def do_change_severity(
    actor: User, incident: Incident, severity: Severity, reason: str = ""
) -> Incident:
    """Raise or lower the severity; lowering it needs a reason. Deadlines follow the new
    severity: an unacknowledged incident's deadline counts from the declaration again."""
    reason = reason.strip()
    with changing(actor, incident):
        incident = _locked(incident)
        before = incident.severity
        if before.pk == severity.pk:
            return incident
        lowering = severity.rank > before.rank
        if lowering and not reason:
            raise IncidentRefused(
                f"Say why you lower it from {before.key} to {severity.key}.",
                denied="severity_refused",
            )
        now = timezone.now()
        incident.severity = severity
        fields = ["severity"]
        if incident.acknowledged_at is None:
            incident.acknowledge_by = severity.acknowledge_by(incident.declared_at)
            fields.append("acknowledge_by")
        if incident.is_open:
            incident.next_update_due = _next_update_due(severity, now)
            fields.append("next_update_due")
        incident.save(update_fields=fields)
        add_entry(
            incident,
            EntryKind.SEVERITY,
            actor,
            text=reason,
            data={"from": before.key, "to": severity.key},
        )
        record(
            "incident.severity_changed",
            actor=actor,
            target=audit_target(incident),
            reason=reason,
            data={"from": before.key, "to": severity.key},
        )
    return incident


def do_hand_over_role(
    actor: User, incident: Incident, role: Role | str, holder: User | None
) -> Incident:
    """Give a role (commander, communications lead, technical lead) to someone, or leave
    a lead role empty; the commander role is never empty."""
    role = Role(role)
    if role == Role.COMMANDER and holder is None:
        raise IncidentRefused("An incident always has a commander: name who takes over.")
    with transaction.atomic():
        incident = _locked(incident)
        before = getattr(incident, role.value)
        if (before.pk if before else None) == (holder.pk if holder else None):
            return incident
        setattr(incident, role.value, holder)
        incident.save(update_fields=[role.value])
        data = {
            "role": role.value,
            "from": before.get_username() if before else "",
            "to": holder.get_username() if holder else "",
        }
        add_entry(incident, EntryKind.ROLE, actor, data=data)
        record("incident.role_changed", actor=actor, target=audit_target(incident), data=data)
    return incident


def do_change_affected(
    actor: User,
    incident: Incident,
    services: Iterable[Service],
    environments: Iterable[Environment],
) -> Incident:
    """Which services (and environments; none means all) the incident affects."""
    services = list(services)
    environments = list(environments)
    with transaction.atomic():
        incident = _locked(incident)
        before_services = _label(incident.services.all())
        before_environments = _label(incident.environments.all())
        after_services = _label(services)
        after_environments = _label(environments)
        if (before_services, before_environments) == (after_services, after_environments):
            return incident
        incident.services.set(services)
        incident.environments.set(environments)
        data = {
            "services": {"from": before_services, "to": after_services},
            "environments": {"from": before_environments, "to": after_environments},
        }
        add_entry(incident, EntryKind.SERVICES, actor, data=data)
        record("incident.services_changed", actor=actor, target=audit_target(incident), data=data)
    return incident


def do_add_note(
    actor: User,
    incident: Incident,
    text: str,
    *,
    occurred_at: datetime | None = None,
    corrects: TimelineEntry | None = None,
) -> TimelineEntry:
    """An internal note in the timeline, possibly dated earlier or correcting an entry."""
    text = text.strip()
    if not text:
        raise IncidentRefused("The note is empty.")
    check_occurred_at(occurred_at, incident)
    _check_correction(corrects, incident)
    with transaction.atomic():
        entry = add_entry(
            incident, EntryKind.NOTE, actor, occurred_at=occurred_at, text=text, corrects=corrects
        )
        record(
            "incident.note_added",
            actor=actor,
            target=audit_target(incident),
            data={"entry": entry.pk, "corrects": corrects.pk if corrects else None},
        )
    return entry


def do_post_update(
    actor: User,
    incident: Incident,
    *,
    visibility: Visibility | str,
    current_status: str,
    findings: str = "",
    next_steps: str = "",
    eta: str = "",
    occurred_at: datetime | None = None,
    corrects: TimelineEntry | None = None,
) -> TimelineEntry:
    """A status update as the runbooks structure it; a public one shows on the status page.
    Either kind resets the update cadence's clock."""
    current_status = current_status.strip()
    if not current_status:
        raise IncidentRefused("Say what the current status is.")
    check_occurred_at(occurred_at, incident)
    _check_correction(corrects, incident)
    visibility = Visibility(visibility)
    with transaction.atomic():
        incident = _locked(incident)
        entry = add_entry(
            incident,
            EntryKind.UPDATE,
            actor,
            occurred_at=occurred_at,
            visibility=visibility,
            current_status=current_status,
            findings=findings.strip(),
            next_steps=next_steps.strip(),
            eta=eta.strip(),
            corrects=corrects,
        )
        if incident.is_open:
            incident.next_update_due = _next_update_due(incident.severity, timezone.now())
            incident.save(update_fields=["next_update_due"])
        record(
            "incident.update_posted",
            actor=actor,
            target=audit_target(incident),
            data={"entry": entry.pk, "visibility": visibility.value},
        )
        notifications.notify(incident, EntryKind.UPDATE, entry=entry)
    return entry


def do_resolve_incident(
    actor: User,
    incident: Incident,
    *,
    current_status: str,
    findings: str = "",
    next_steps: str = "",
) -> Incident:
    """The all-clear: a final public update, the state resolved, and the post-mortem's
    48 hours start for the severities that require one."""
    current_status = current_status.strip()
    if not current_status:
        raise IncidentRefused("Resolving needs a final public update: say what was fixed.")
    with transaction.atomic():
        incident = _locked(incident)
        if not incident.is_open:
            raise IncidentRefused(f"Incident #{incident.pk} is already {incident.state}.")
        now = timezone.now()
        before = incident.state
        incident.state = IncidentState.RESOLVED
        incident.resolved_at = now
        incident.next_update_due = None
        if incident.acknowledged_at is None:
            # Resolving is the strongest acknowledgement: escalation stops.
            incident.acknowledged_at = now
            incident.acknowledged_by = actor  # type: ignore[assignment]
        if incident.severity.requires_postmortem:
            incident.postmortem_due = now + POSTMORTEM_WITHIN
        incident.save(
            update_fields=[
                "state",
                "resolved_at",
                "next_update_due",
                "acknowledged_at",
                "acknowledged_by",
                "postmortem_due",
            ]
        )
        entry = add_entry(
            incident,
            EntryKind.UPDATE,
            actor,
            visibility=Visibility.PUBLIC,
            current_status=current_status,
            findings=findings.strip(),
            next_steps=next_steps.strip(),
        )
        add_entry(
            incident,
            EntryKind.STATE,
            actor,
            data={"from": before, "to": IncidentState.RESOLVED.value, "reopened": False},
        )
        record("incident.resolved", actor=actor, target=audit_target(incident))
        notifications.notify(incident, EntryKind.UPDATE, entry=entry)
    return incident


def do_close_incident(actor: User, incident: Incident) -> Incident:
    """Closed: resolved and, where the severity requires one, the post-mortem completed."""
    with changing(actor, incident):
        incident = _locked(incident)
        if incident.state != IncidentState.RESOLVED:
            raise IncidentRefused("Only a resolved incident can be closed.")
        postmortem = getattr(incident, "postmortem", None)
        if incident.severity.requires_postmortem and (
            postmortem is None or not postmortem.is_complete
        ):
            raise IncidentRefused(
                f"A {incident.severity.key} incident closes only with a completed post-mortem.",
                denied="close_refused",
            )
        incident.state = IncidentState.CLOSED
        incident.closed_at = timezone.now()
        incident.save(update_fields=["state", "closed_at"])
        add_entry(
            incident,
            EntryKind.STATE,
            actor,
            data={"from": IncidentState.RESOLVED.value, "to": IncidentState.CLOSED.value},
        )
        record("incident.closed", actor=actor, target=audit_target(incident))
    return incident


def state_choices_from(state: str) -> list[str]:
    """The states a person can move an incident to from ``state`` with do_change_state."""
    if state in OPEN_STATES:
        return [name for name in STATE_ORDER if name in OPEN_STATES and name != state]
    return [IncidentState.INVESTIGATING.value]


def portal_url(incident: Incident) -> str:
    return f"{settings.PORTAL_BASE_URL}{incident.get_absolute_url()}"
