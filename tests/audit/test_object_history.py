"""The History of an incident (on its page) and of a user (an admin's page): the events
about the object, newest first, paged by seq, refusals included."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit import history
from apps.audit.links import object_url
from apps.audit.models import AuditEvent
from apps.audit.records import AuditTarget, record
from apps.incidents.actions import IncidentRefused, do_change_state, do_resolve_incident
from tests.conftest import client_for
from tests.factories import make_incident, make_user

pytestmark = pytest.mark.core


def test_the_incident_page_shows_its_history_with_refusals(operator: Any, viewer: Any) -> None:
    incident = make_incident(operator, "SEV-3", title="Checkout slow")
    other = make_incident(operator, "SEV-3", title="Other incident")
    incident = do_resolve_incident(operator, incident, current_status="Fixed.")
    with pytest.raises(IncidentRefused):
        do_change_state(operator, incident, "investigating")  # reopening needs a reason
    response = client_for(viewer).get(incident.get_absolute_url())
    assert response.status_code == 200
    shown = [(event.action, event.outcome) for event, _ in response.context["history"]]
    assert shown == [
        ("incident.reopen_refused", "denied"),
        ("incident.resolved", "succeeded"),
        ("incident.declared", "succeeded"),
    ]
    content = response.content.decode()
    assert 'data-testid="history"' in content and "Denied" in content
    assert f"target_id={incident.pk}" in content  # the link to all of it in the audit list
    assert other.pk != incident.pk


def test_audit_events_link_to_the_incident_page(operator: Any) -> None:
    incident = make_incident(operator, "SEV-3")
    event = AuditEvent.objects.get(action="incident.declared", target_id=str(incident.pk))
    assert object_url(event) == incident.get_absolute_url()


def test_the_incident_history_is_paged_by_seq(
    operator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "HISTORY_LENGTH", 2)
    incident = make_incident(operator, "SEV-3")
    target = AuditTarget("incidents.incident", str(incident.pk), "x")
    for number in range(4):
        record(f"test.step{number}", actor=operator, target=target)
    client = client_for(operator)
    first = client.get(incident.get_absolute_url())
    assert [e.action for e, _ in first.context["history"]] == ["test.step3", "test.step2"]
    next_query = first.context["history_next"]
    assert next_query.startswith("before=")
    # htmx asks for the History section alone.
    page = incident.get_absolute_url()
    older = client.get(f"{page}?{next_query}", headers={"HX-Request": "true"})
    assert older.status_code == 200
    assert [e.action for e, _ in older.context["history"]] == ["test.step1", "test.step0"]
    assert b"Timeline" not in older.content and b'id="history"' in older.content
    last = client.get(f"{incident.get_absolute_url()}?{older.context['history_next']}")
    assert [e.action for e, _ in last.context["history"]] == ["incident.declared"]
    assert last.context["history_next"] == ""
    # A tampered cursor shows the newest events.
    for cursor in ("abc", "9" * 30, "-1", "<b>"):
        bad = client.get(f"{incident.get_absolute_url()}?before={cursor}")
        assert bad.status_code == 200
        assert [e.action for e, _ in bad.context["history"]][0] == "test.step3"


def test_the_incident_page_query_count_does_not_grow_with_its_history(operator: Any) -> None:
    incident = make_incident(operator, "SEV-3")
    client = client_for(operator)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(incident.get_absolute_url()).status_code == 200
        return len(captured)

    queries()
    few = queries()
    target = AuditTarget("incidents.incident", str(incident.pk), "x")
    for number in range(25):
        record("test.step", actor=operator, target=target, data={"changes": {"n": [number, 1]}})
    assert queries() == few


def test_the_user_history_shows_what_they_did_and_what_was_done_to_them(
    admin: Any, operator: Any
) -> None:
    record("services.rollout", actor=operator, reason="v2")
    record(
        "accounts.role_changed",
        actor=admin,
        target=AuditTarget("auth.user", str(operator.pk), operator.username),
        data={"changes": {"role": ["viewer", "operator"]}},
    )
    record("unrelated", actor=admin)
    response = client_for(admin).get(f"/audit/users/{operator.pk}/")
    assert response.status_code == 200
    rows = [
        (event.action, as_actor, as_target)
        for event, _, as_actor, as_target, _ in response.context["rows"]
    ]
    assert rows == [
        ("accounts.role_changed", False, True),
        ("services.rollout", True, False),
    ]
    content = response.content.decode()
    assert "<del>viewer</del> → <ins>operator</ins>" in content


def test_the_user_history_is_admin_only_and_paged(
    admin: Any, viewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client_for(viewer).get(f"/audit/users/{admin.pk}/").status_code == 403
    assert client_for(admin).get("/audit/users/999999/").status_code == 404
    monkeypatch.setattr("apps.audit.views.HISTORY_LENGTH", 1)  # pages of 2
    person = make_user("paula")
    for number in range(3):
        record(f"step{number}", actor=person)
    client = client_for(admin)
    first = client.get(f"/audit/users/{person.pk}/")
    assert [row[0].action for row in first.context["rows"]] == ["step2", "step1"]
    older = client.get(
        f"/audit/users/{person.pk}/?{first.context['next_query']}", headers={"HX-Request": "true"}
    )
    # The partial alone (its context is not captured by the test client).
    assert b"step0" in older.content and b"step1" not in older.content
    assert b'<nav class="navbar' not in older.content
    assert client.get(f"/audit/users/{person.pk}/?before=x%27").status_code == 200
    # The audit list links actors to this page for admins only.
    assert f'href="/audit/users/{person.pk}/"'.encode() in client.get("/audit/").content
    assert (
        f'href="/audit/users/{person.pk}/"'.encode()
        not in client_for(viewer).get("/audit/").content
    )
