"""The incident actions' own rules: what needs a reason, what is refused (and audited as
denied, after the rollback of the change it refused), and entries that cannot be changed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.incidents import actions
from apps.incidents.choices import EntryKind, IncidentState
from apps.incidents.models import Incident, Severity, TimelineEntry
from tests.factories import make_incident

pytestmark = pytest.mark.core


def denied(action: str) -> AuditEvent:
    event = AuditEvent.objects.filter(action=action).latest("seq")
    assert event.outcome == "denied"
    return event


def test_it_needs_a_title_and_saves_nothing_without_one(operator: Any) -> None:
    with pytest.raises(actions.IncidentRefused, match="title"):
        make_incident(operator, title="   ")
    assert not Incident.objects.exists()
    assert not TimelineEntry.objects.exists()


def test_lowering_the_severity_needs_a_reason_and_the_refusal_is_audited(operator: Any) -> None:
    incident = make_incident(operator, "SEV-1")
    sev3 = Severity.objects.get(key="SEV-3")

    with pytest.raises(actions.IncidentRefused, match="why you lower it from SEV-1 to SEV-3"):
        actions.do_change_severity(operator, incident, sev3)

    assert "SEV-1" in denied("incident.severity_refused").reason
    incident.refresh_from_db()
    assert incident.severity.key == "SEV-1"
    actions.do_change_severity(operator, incident, sev3, "Only one customer affected")
    incident.refresh_from_db()
    assert incident.severity.key == "SEV-3"
    assert incident.next_update_due is None  # SEV-3 has no update cadence


def test_raising_the_severity_needs_no_reason_and_tightens_the_deadline(operator: Any) -> None:
    incident = make_incident(operator, "SEV-3")
    actions.do_change_severity(operator, incident, Severity.objects.get(key="SEV-1"))
    incident.refresh_from_db()
    assert incident.acknowledge_by == incident.declared_at + timedelta(minutes=5)
    assert incident.next_update_due is not None


def test_reopening_needs_a_reason(operator: Any) -> None:
    incident = make_incident(operator, "SEV-3")
    actions.do_resolve_incident(operator, incident, current_status="Fixed by a restart")

    with pytest.raises(actions.IncidentRefused, match="why you reopen"):
        actions.do_change_state(operator, incident, IncidentState.INVESTIGATING)
    denied("incident.reopen_refused")

    actions.do_change_state(operator, incident, IncidentState.INVESTIGATING, "It is back")
    incident.refresh_from_db()
    assert incident.state == IncidentState.INVESTIGATING
    assert incident.resolved_at is None


def test_a_sev1_closes_only_with_a_completed_postmortem(operator: Any) -> None:
    incident = make_incident(operator, "SEV-1")
    actions.do_resolve_incident(operator, incident, current_status="Rolled back")

    with pytest.raises(actions.IncidentRefused, match="completed post-mortem"):
        actions.do_close_incident(operator, incident)

    denied("incident.close_refused")
    incident.refresh_from_db()
    assert incident.state == IncidentState.RESOLVED
    assert incident.postmortem_due == incident.resolved_at + timedelta(hours=48)


def test_a_minor_incident_closes_without_a_postmortem(operator: Any) -> None:
    incident = make_incident(operator, "SEV-4")
    actions.do_resolve_incident(operator, incident, current_status="Fixed")
    actions.do_close_incident(operator, incident)
    incident.refresh_from_db()
    assert incident.state == IncidentState.CLOSED


def test_resolving_needs_the_final_public_update(operator: Any) -> None:
    incident = make_incident(operator, "SEV-2")
    with pytest.raises(actions.IncidentRefused, match="final public update"):
        actions.do_resolve_incident(operator, incident, current_status=" ")
    incident.refresh_from_db()
    assert incident.is_open


def test_an_entry_dated_in_the_future_is_refused(operator: Any) -> None:
    incident = make_incident(operator)
    later = timezone.now() + timedelta(hours=1)
    with pytest.raises(actions.IncidentRefused, match="future"):
        actions.do_add_note(operator, incident, "Saw it coming", occurred_at=later)
    assert not TimelineEntry.objects.filter(kind=EntryKind.NOTE).exists()


def test_a_correction_points_to_an_entry_of_the_same_incident(operator: Any) -> None:
    incident = make_incident(operator)
    other = make_incident(operator)
    wrong = actions.do_add_note(operator, incident, "The primary failed over")
    foreign = actions.do_add_note(operator, other, "Elsewhere")

    with pytest.raises(actions.IncidentRefused, match="another incident"):
        actions.do_add_note(operator, incident, "No: the replica", corrects=foreign)
    fixed = actions.do_add_note(operator, incident, "No: the replica", corrects=wrong)

    assert fixed.corrects == wrong
    assert list(wrong.corrections.all()) == [fixed]


def test_entries_are_immutable_in_the_code_and_in_the_database(operator: Any) -> None:
    incident = make_incident(operator)
    entry = actions.do_add_note(operator, incident, "Original words")

    entry.text = "Rewritten history"
    with pytest.raises(ValueError, match="immutable"):
        entry.save()
    with (
        pytest.raises(DatabaseError, match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE incidents_timelineentry SET text = %s WHERE id = %s",
            ["Rewritten history", entry.pk],
        )
    entry.refresh_from_db()
    assert entry.text == "Original words"


def test_handing_over_a_role_is_an_entry_and_the_commander_is_never_empty(
    operator: Any, admin: Any
) -> None:
    incident = make_incident(operator)
    actions.do_hand_over_role(operator, incident, "commander", admin)
    with pytest.raises(actions.IncidentRefused, match="always has a commander"):
        actions.do_hand_over_role(operator, incident, "commander", None)

    incident.refresh_from_db()
    assert incident.commander == admin
    handover = TimelineEntry.objects.get(incident=incident, kind=EntryKind.ROLE)
    assert handover.data == {
        "role": "commander",
        "from": operator.get_username(),
        "to": admin.get_username(),
    }
