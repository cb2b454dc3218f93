"""The incident pages: the list, declaring, the incident's page with its live timeline, and
every form that changes an incident, for each persona. htmx requests get their fragment,
other POSTs redirect, bad input is refused with a clear message and saves nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.incidents import timeline
from apps.incidents.actions import (
    do_acknowledge_incident,
    do_add_note,
    do_change_state,
    do_post_update,
    do_resolve_incident,
)
from apps.incidents.choices import EntryKind, IncidentState, Visibility
from apps.incidents.models import Incident, PostMortem, Severity, TimelineEntry
from apps.operations.choices import State
from apps.services.choices import ClusterAccess
from apps.services.models import Cluster, DeploymentTarget, Environment, Service
from tests.conftest import client_for
from tests.factories import ensure_incident_defaults, make_incident, make_operation

HTMX = {"HX-Request": "true"}
NOW = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
SCRIPT = '<script>alert("owned")</script><b>bold</b>'


@dataclass
class World:
    service: Service
    other_service: Service
    staging: Environment
    production: Environment
    staging_target: DeploymentTarget
    production_target: DeploymentTarget


@pytest.fixture
def world(db: None) -> World:
    """Two services, the first running in staging and production (no cluster is asked: the
    incident page only links to the operations)."""
    ensure_incident_defaults()
    service = Service.objects.create(name="checkout", slug="checkout", team="Payments")
    other = Service.objects.create(name="search", slug="search", team="Discovery")
    staging = Environment.objects.create(name="staging", slug="staging", order=1)
    production = Environment.objects.create(
        name="production", slug="production", order=2, is_production=True
    )
    cluster = Cluster.objects.create(name="main", access=ClusterAccess.IN_CLUSTER)
    targets = [
        DeploymentTarget.objects.create(
            service=service,
            environment=environment,
            cluster=cluster,
            namespace="shop",
            deployment=f"checkout-{environment.slug}",
            container="app",
        )
        for environment in (staging, production)
    ]
    return World(service, other, staging, production, *targets)


def detail_url(incident: Incident) -> str:
    return reverse("incidents:detail", args=[incident.pk])


def url(name: str, incident: Incident) -> str:
    return reverse(f"incidents:{name}", args=[incident.pk])


def reloaded(incident: Incident) -> Incident:
    return Incident.objects.select_related("severity").get(pk=incident.pk)


def entry_count(incident: Incident) -> int:
    return TimelineEntry.objects.filter(incident=incident).count()


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- The list --------------------------------------------------------------------------------


def test_it_lists_open_incidents_first_then_recent_ones(operator: Any, world: World) -> None:
    resolved = make_incident(operator, "SEV-1", title="Old outage")
    do_resolve_incident(operator, resolved, current_status="Fixed")
    minor = make_incident(operator, "SEV-3", title="Slow search", services=[world.other_service])
    major = make_incident(operator, "SEV-1", title="Checkout down", services=[world.service])

    response = client_for(operator).get("/incidents/")
    content = response.content.decode()

    assert response.status_code == 200
    assert "<html" in content
    assert [row.incident for row in response.context["open_rows"]] == [major, minor]
    assert [row.incident for row in response.context["rows"]] == [resolved]
    assert (
        content.index("Checkout down") < content.index("Slow search") < content.index("Old outage")
    )
    assert "Resolved" in content and "Investigating" in content  # words, not colour alone


def test_the_list_filters_by_state_severity_and_service(viewer: Any, world: World) -> None:
    resolved = make_incident(viewer, "SEV-2", title="Resolved one", services=[world.service])
    do_resolve_incident(viewer, resolved, current_status="Fixed")
    sev1 = make_incident(viewer, "SEV-1", title="Sev one", services=[world.service])
    sev3 = make_incident(viewer, "SEV-3", title="Sev three", services=[world.other_service])
    client = client_for(viewer)

    def shown(query: str) -> list[Incident]:
        response = client.get(f"/incidents/?{query}")
        assert response.status_code == 200
        context = response.context
        return [row.incident for row in [*context["open_rows"], *context["rows"]]]

    assert shown("state=resolved") == [resolved]
    assert shown("state=open") == [sev3, sev1]
    assert shown("severity=SEV-1") == [sev1]
    assert shown(f"service={world.service.pk}") == [sev1, resolved]
    assert shown(f"service={world.service.pk}&state=open") == [sev1]
    assert shown("state=closed") == []
    # A value that is not valid is ignored, not a 500.
    assert len(shown("state=nonsense&severity=SEV-9&service=abc&before=x")) == 3


def test_the_list_says_what_to_do_when_empty(viewer: Any, world: World) -> None:
    content = client_for(viewer).get("/incidents/").content.decode()
    assert "No incident has been declared yet" in content
    filtered = client_for(viewer).get("/incidents/?state=closed").content.decode()
    assert "No incident matches these filters" in filtered


def test_the_list_pages_older_incidents_by_id(viewer: Any, world: World) -> None:
    ensure_incident_defaults()
    incidents = [make_incident(viewer, "SEV-4", title=f"Old {number}") for number in range(52)]
    for incident in incidents:
        Incident.objects.filter(pk=incident.pk).update(state=IncidentState.CLOSED)
    client = client_for(viewer)

    first = client.get("/incidents/")
    assert len(first.context["rows"]) == 50
    assert first.context["next_query"] == f"before={incidents[2].pk}"
    second = client.get(f"/incidents/?{first.context['next_query']}", headers=HTMX)
    content = second.content.decode()
    assert ">Old 1</a>" in content and ">Old 0</a>" in content
    assert ">Old 2</a>" not in content
    assert content.lstrip().startswith('<div id="results"')
    assert "<html" not in content


def test_the_list_refuses_a_user_without_a_role_and_other_methods(
    nobody: Any, viewer: Any, world: World
) -> None:
    assert client_for(nobody).get("/incidents/").status_code == 403
    assert client_for(viewer).post("/incidents/").status_code == 405


# --- Declaring -------------------------------------------------------------------------------


def test_it_declares_an_incident_commanded_by_the_declarer(operator: Any, world: World) -> None:
    severity = Severity.objects.get(key="SEV-1")
    client = client_for(operator)
    response = client.post(
        "/incidents/declare/",
        {
            "title": "Checkout fails for everyone",
            "severity": severity.pk,
            "services": [world.service.pk],
            "environments": [world.production.pk],
            "customer_impact": "Nobody can pay.",
            "commander": operator.pk,
        },
    )
    incident = Incident.objects.get()
    assert response.status_code == 302
    assert response["Location"] == detail_url(incident)
    assert incident.commander == operator
    assert incident.declared_by == operator
    assert list(incident.services.all()) == [world.service]
    assert list(incident.environments.all()) == [world.production]
    page = client.get(response["Location"])
    assert f"Incident #{incident.pk} is declared (SEV-1)" in messages_of(page)[0]


def test_the_declare_form_is_prefilled_from_a_service_page(operator: Any, world: World) -> None:
    response = client_for(operator).get(f"/incidents/declare/?service={world.service.pk}")
    form = response.context["form"]
    assert response.status_code == 200
    assert form["services"].value() == [world.service.pk]
    assert form["commander"].value() == operator.pk  # the declarer by default
    content = response.content.decode()
    assert f'<option value="{world.service.pk}" selected>checkout</option>' in content
    unknown = client_for(operator).get("/incidents/declare/?service=987654")
    assert "There is no service 987654" in unknown.content.decode()


def test_the_declare_form_is_prefilled_from_an_alert(operator: Any, world: World) -> None:
    query = urlencode(
        [
            ("service", world.service.pk),
            ("environment", world.production.pk),
            ("title", "checkout: error rate above 5 %\x00" + "x" * 300),
            ("severity", "SEV-2"),
        ]
    )
    form = client_for(operator).get(f"/incidents/declare/?{query}").context["form"]
    assert form["title"].value() == ("checkout: error rate above 5 %" + "x" * 300)[:200]
    assert form["severity"].value() == Severity.objects.get(key="SEV-2").pk
    assert form["environments"].value() == [world.production.pk]
    # Values naming nothing are left for the form to ask.
    odd = client_for(operator).get("/incidents/declare/?severity=SEV-9&environment=x")
    assert odd.status_code == 200
    assert odd.context["form"]["severity"].value() is None
    assert not odd.context["form"]["environments"].value()


@pytest.mark.parametrize(
    "change, words",
    [
        ({"title": "   "}, "Give the incident a title"),
        ({"services": ["987654"]}, "There is no service 987654"),
        ({"services": ["not-a-number"]}, "is not a service"),
        ({"severity": ""}, "Choose a severity"),
    ],
)
def test_bad_declarations_are_refused_and_save_nothing(
    operator: Any, world: World, change: dict[str, Any], words: str
) -> None:
    data = {
        "title": "Checkout down",
        "severity": Severity.objects.get(key="SEV-2").pk,
        "services": [world.service.pk],
        "commander": operator.pk,
        **change,
    }
    response = client_for(operator).post("/incidents/declare/", data)
    assert response.status_code == 400
    assert words in response.content.decode()
    assert not Incident.objects.exists()


def test_declaring_by_htmx_answers_with_the_form_or_a_client_redirect(
    operator: Any, world: World
) -> None:
    client = client_for(operator)
    page = client.get("/incidents/declare/", headers=HTMX)
    assert page.content.decode().lstrip().startswith('<div id="declare-form"')
    bad = client.post("/incidents/declare/", {"title": ""}, headers=HTMX)
    assert bad.status_code == 200
    assert "<html" not in bad.content.decode()
    good = client.post(
        "/incidents/declare/",
        {
            "title": "Down",
            "severity": Severity.objects.get(key="SEV-3").pk,
            "commander": operator.pk,
        },
        headers=HTMX,
    )
    assert good["HX-Redirect"] == detail_url(Incident.objects.get())


def test_declaring_needs_the_permission_and_get_or_post(viewer: Any, operator: Any) -> None:
    assert client_for(viewer).get("/incidents/declare/").status_code == 403
    assert client_for(viewer).post("/incidents/declare/", {"title": "x"}).status_code == 403
    assert client_for(operator).put("/incidents/declare/").status_code == 405
    assert not Incident.objects.exists()


# --- The incident's page ------------------------------------------------------------------


def test_the_page_shows_header_timeline_and_forms(operator: Any, world: World) -> None:
    incident = make_incident(
        operator, "SEV-1", services=[world.service], title="Checkout down", customer_impact="All"
    )
    do_add_note(operator, incident, "Looking at the pods")
    response = client_for(operator).get(detail_url(incident))
    content = response.content.decode()
    assert response.status_code == 200
    assert f"#{incident.pk} Checkout down" in content
    assert "SEV-1" in content and "Investigating" in content
    assert 'data-testid="ack-countdown"' in content  # not acknowledged yet
    assert f'action="{url("acknowledge", incident)}"' in content
    assert 'data-testid="update-countdown"' in content  # SEV-1: updates every 15 minutes
    assert "Looking at the pods" in content
    assert f'hx-get="{detail_url(incident)}?after=' in content
    assert 'hx-trigger="every 2s' in content
    for name in ("note", "update", "state", "severity", "role", "affected", "resolve"):
        assert f'action="{url(name, incident)}"' in content
    assert 'src="/static/js/incidents.js"' in content or "js/incidents" in content


def test_the_countdown_turns_to_overdue_when_the_deadline_passes(
    operator: Any, world: World
) -> None:
    with time_machine.travel(NOW, tick=False) as traveller:
        incident = make_incident(operator, "SEV-1")
        client = client_for(operator)
        before = client.get(detail_url(incident))
        assert not before.context["ack_overdue"]
        assert "Acknowledge by" in before.content.decode()
        traveller.shift(timedelta(minutes=6))
        after = client.get(detail_url(incident))
        assert after.context["ack_overdue"]
        assert "Unacknowledged, overdue since" in after.content.decode()
        assert 'data-deadline="2026-03-10T03:05:00+00:00"' in after.content.decode()


def test_a_viewer_reads_the_page_without_forms(viewer: Any, operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-2", services=[world.service])
    response = client_for(viewer).get(detail_url(incident))
    content = response.content.decode()
    assert response.status_code == 200
    assert url("note", incident) not in content
    assert url("acknowledge", incident) not in content
    assert "/operations/start/" not in content


def test_the_page_refuses_nobody_and_other_methods(
    nobody: Any, viewer: Any, operator: Any, world: World
) -> None:
    incident = make_incident(operator)
    assert client_for(nobody).get(detail_url(incident)).status_code == 403
    assert client_for(viewer).post(detail_url(incident)).status_code == 405
    assert client_for(viewer).get("/incidents/987654/").status_code == 404


def test_act_from_the_incident_links_the_operations_with_its_origin(
    operator: Any, world: World
) -> None:
    incident = make_incident(operator, "SEV-1", services=[world.service])
    content = client_for(operator).get(detail_url(incident)).content.decode()
    origin = f"origin=incident:{incident.pk}"
    for target in (world.staging_target, world.production_target):
        for kind in ("rollback", "restart", "scale", "set_flags"):
            assert f"/operations/start/services.{kind}/?target={target.pk}&amp;{origin}" in content
    assert "services.rollout" not in content  # an ordinary rollout is not a mitigation


def test_act_from_the_incident_keeps_to_the_affected_environments(
    operator: Any, world: World
) -> None:
    incident = make_incident(
        operator, "SEV-2", services=[world.service], environments=[world.production]
    )
    response = client_for(operator).get(detail_url(incident))
    assert [target for target, _ in response.context["act_targets"]] == [world.production_target]


def test_the_timeline_shows_operations_corrections_and_public_updates(
    operator: Any, world: World
) -> None:
    incident = make_incident(operator, "SEV-2")
    wrong = do_add_note(operator, incident, "The primary database is down")
    do_add_note(operator, incident, "It was the replica", corrects=wrong)
    do_post_update(operator, incident, visibility=Visibility.PUBLIC, current_status="Degraded")
    operation = make_operation(operator, state=State.SUCCEEDED)
    TimelineEntry.objects.create(
        incident=incident,
        kind=EntryKind.OPERATION,
        operation=operation,
        text="Rolled back",
        data={"phase": "finished", "kind": "diagnostics.ping", "state": "succeeded"},
    )
    content = client_for(operator).get(detail_url(incident)).content.decode()
    assert f'href="{reverse("operations:detail", args=[operation.pk])}"' in content
    assert "Succeeded" in content and "finished" in content
    assert f'Corrects <a href="#entry-{wrong.pk}">#{wrong.pk}</a>' in content
    assert "Corrected by" in content
    assert "Public</span>" in content


def test_kept_entry_html_follows_what_changes_around_the_entry(
    operator: Any, admin: Any, viewer: Any, world: World
) -> None:
    # Entries are rendered once and kept (timeline.py); what can change around one must
    # show at once: a correction, its author's new name, who looks, a closed incident.
    incident = make_incident(operator, "SEV-3")
    wrong = do_add_note(operator, incident, "The primary database is down")
    correct_link = f'href="?corrects={wrong.pk}#card-note"'

    def entry(user: Any) -> str:
        content = client_for(user).get(detail_url(incident)).content.decode()
        return content.split(f'id="entry-{wrong.pk}"')[1].split("</li>")[0]

    first = entry(operator)
    assert "Corrected by" not in first and correct_link in first and "olga-operator" in first
    assert correct_link not in entry(viewer)  # viewers cannot correct

    fix = do_add_note(operator, incident, "It was the replica", corrects=wrong)
    assert f'Corrected by <a href="#entry-{fix.pk}">#{fix.pk}</a>' in entry(operator)

    operator.username = "olga-renamed"
    operator.save(update_fields=["username"])
    assert "olga-renamed" in entry(operator)

    Incident.objects.filter(pk=incident.pk).update(state=IncidentState.CLOSED)
    assert correct_link not in entry(admin)


def test_an_entry_logged_afterwards_shows_both_times(operator: Any, world: World) -> None:
    with time_machine.travel(NOW, tick=False):
        incident = make_incident(operator, "SEV-3")
        do_add_note(operator, incident, "Alert fired", occurred_at=NOW - timedelta(minutes=30))
        content = client_for(operator).get(detail_url(incident)).content.decode()
    assert "happened <time" in content
    assert "Mar 10, 02:30:00" in content and "Mar 10, 03:00:00" in content
    # In the order things happened: the alert comes before the declaration.
    assert content.index("Alert fired") < content.index("Declared <strong>")


def test_user_text_is_escaped_on_the_page(operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-2", title=SCRIPT)
    response = client_for(operator).post(
        url("update", incident),
        {"visibility": "public", "current_status": SCRIPT, "findings": SCRIPT, "eta": SCRIPT},
    )
    assert response.status_code == 302
    content = client_for(operator).get(detail_url(incident)).content.decode()
    assert "<script>alert" not in content
    assert "<b>bold</b>" not in content
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in content


def test_the_query_count_does_not_grow_with_the_timeline(operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-1", services=[world.service])
    client = client_for(operator)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(detail_url(incident)).status_code == 200
        return len(captured)

    queries()
    few = queries()
    operation = make_operation(operator)
    first = do_add_note(operator, incident, "first")
    for number in range(30):
        do_add_note(operator, incident, f"note {number}", corrects=first if number % 5 else None)
        do_post_update(operator, incident, visibility="public", current_status=f"u {number}")
    TimelineEntry.objects.create(
        incident=incident, kind=EntryKind.OPERATION, operation=operation, data={"phase": "x"}
    )
    assert queries() == few


def test_a_long_timeline_shows_its_latest_entries_and_loads_earlier_ones(
    operator: Any, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timeline, "TIMELINE_WINDOW", 3)
    incident = make_incident(operator)  # entry 1: declared
    notes = [do_add_note(operator, incident, f"note number {n}") for n in range(5)]
    client = client_for(operator)

    page = client.get(detail_url(incident)).content.decode()
    assert "note number 0" not in page and "note number 1" not in page
    assert all(f"note number {n}" in page for n in (2, 3, 4))
    assert "Show 3 earlier entries" in page
    assert f'href="{detail_url(incident)}?all=1#timeline"' in page  # without JavaScript
    assert f'hx-get="{detail_url(incident)}?earlier={notes[2].pk}"' in page
    assert f"?after={notes[4].pk}" in page

    earlier = client.get(f"{detail_url(incident)}?earlier={notes[2].pk}", headers=HTMX)
    content = earlier.content.decode()
    assert "<html" not in content
    assert content.index("Declared") < content.index("note number 0")
    assert "note number 1" in content and "note number 2" not in content
    assert "earlier entr" not in content  # nothing before the declaration

    everything = client.get(f"{detail_url(incident)}?all=1").content.decode()
    assert all(f"note number {n}" in everything for n in range(5))
    assert "earlier entr" not in everything


def test_an_htmx_request_gets_only_the_timeline(operator: Any, world: World) -> None:
    incident = make_incident(operator)
    response = client_for(operator).get(detail_url(incident), headers=HTMX)
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<section id="timeline"')
    assert "<html" not in content


# --- The live timeline -------------------------------------------------------------------


def last_entry(incident: Incident) -> TimelineEntry:
    return TimelineEntry.objects.filter(incident=incident).latest("pk")


def test_a_poll_with_nothing_new_is_an_empty_204(operator: Any, world: World) -> None:
    incident = make_incident(operator)
    cursor = last_entry(incident).pk
    response = client_for(operator).get(f"{detail_url(incident)}?after={cursor}", headers=HTMX)
    assert response.status_code == 204
    assert response.content == b""
    assert len(response.serialize_headers()) < 1024


def test_a_poll_returns_only_the_new_entries_and_the_new_cursor(
    operator: Any, world: World
) -> None:
    incident = make_incident(operator)
    do_add_note(operator, incident, "old news")
    cursor = last_entry(incident).pk
    new = do_add_note(operator, incident, "fresh news")

    response = client_for(operator).get(f"{detail_url(incident)}?after={cursor}", headers=HTMX)
    content = response.content.decode()
    assert response.status_code == 200
    assert "fresh news" in content
    assert "old news" not in content
    assert f'?after={new.pk}"' in content  # the poller carries the new cursor
    assert 'hx-swap-oob="beforeend:#timeline-list"' in content
    assert 'id="incident-header"' not in content  # a note changes nothing up there
    assert "<html" not in content


def test_a_poll_refreshes_the_header_when_the_state_changed(operator: Any, world: World) -> None:
    incident = make_incident(operator)
    cursor = last_entry(incident).pk
    do_change_state(operator, incident, IncidentState.IDENTIFIED)

    content = (
        client_for(operator)
        .get(f"{detail_url(incident)}?after={cursor}", headers=HTMX)
        .content.decode()
    )
    assert '<div id="incident-header" class="mb-3" hx-swap-oob="true">' in content
    assert "Identified" in content


def test_a_poll_sends_the_whole_timeline_when_an_entry_was_dated_earlier(
    operator: Any, world: World
) -> None:
    incident = make_incident(operator)
    do_add_note(operator, incident, "second thing")
    cursor = last_entry(incident).pk
    do_add_note(operator, incident, "first thing", occurred_at=timezone.now() - timedelta(hours=1))
    content = (
        client_for(operator)
        .get(f"{detail_url(incident)}?after={cursor}", headers=HTMX)
        .content.decode()
    )
    assert '<ol id="timeline-list"' in content and 'hx-swap-oob="true"' in content
    assert content.index("first thing") < content.index("second thing")


def test_a_closed_incident_does_not_poll(operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-3")
    do_resolve_incident(operator, incident, current_status="Fixed")
    cursor = last_entry(incident).pk
    client = client_for(operator)
    client.post(url("close", incident))
    assert reloaded(incident).state == IncidentState.CLOSED
    poll = client.get(f"{detail_url(incident)}?after={cursor}", headers=HTMX).content.decode()
    assert "hx-trigger" not in poll  # the last poll stops the polling
    page = client.get(detail_url(incident)).content.decode()
    assert 'hx-trigger="every 2s' not in page
    assert "no longer changes" in page


# --- Changing an incident ----------------------------------------------------------------


def test_acknowledging_redirects_with_a_message(operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-1")
    client = client_for(operator)
    response = client.post(url("acknowledge", incident))
    assert response.status_code == 302
    assert response["Location"] == detail_url(incident)
    assert reloaded(incident).acknowledged_by == operator
    page = client.get(detail_url(incident))
    assert "escalation stops" in messages_of(page)[0]
    assert 'data-testid="ack-countdown"' not in page.content.decode()


def test_acknowledging_by_htmx_answers_with_the_header(operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-1")
    response = client_for(operator).post(url("acknowledge", incident), headers=HTMX)
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<div id="incident-header"')
    assert "ack-countdown" not in content
    assert response["HX-Trigger"] == "incident-changed"  # the timeline fetches the entry


def test_a_note_by_htmx_answers_with_its_card_and_the_header(operator: Any, world: World) -> None:
    incident = make_incident(operator)
    response = client_for(operator).post(url("note", incident), {"text": "hi"}, headers=HTMX)
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<details class="card mb-2" id="card-note"')
    assert "Note added" in content
    assert 'id="incident-header" class="mb-3" hx-swap-oob="true"' in content
    assert "<html" not in content
    assert last_entry(incident).text == "hi"


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("note", {"text": "  "}, "The note is empty."),
        ("update", {"visibility": "public", "current_status": ""}, "Say what the current status"),
        ("update", {"visibility": "everyone", "current_status": "x"}, "Select a valid choice"),
        ("note", {"text": "x", "corrects": "987654"}, "Entry #987654 is not in this incident"),
        ("state", {"state": "resolved"}, "Select a valid choice"),
        ("severity", {"severity": "987654"}, "Select a valid choice"),
        ("role", {"role": "commander", "holder": ""}, "An incident always has a commander"),
        ("affected", {"services": ["987654"]}, "There is no service 987654"),
        ("resolve", {"current_status": ""}, "Resolving needs a final public update"),
    ],
)
def test_bad_input_is_shown_beside_the_form_and_saves_nothing(
    operator: Any, world: World, name: str, data: dict[str, Any], words: str
) -> None:
    incident = make_incident(operator, "SEV-2", services=[world.service])
    before = entry_count(incident)
    client = client_for(operator)

    page = client.post(url(name, incident), data)
    assert page.status_code == 400
    assert words in page.content.decode()
    assert "<html" in page.content.decode()  # the whole page, with the typed text kept
    fragment = client.post(url(name, incident), data, headers=HTMX)
    assert fragment.status_code == 200  # htmx swaps only 2xx answers
    assert words in fragment.content.decode()
    assert "<html" not in fragment.content.decode()
    assert "HX-Trigger" not in fragment
    assert entry_count(incident) == before
    assert reloaded(incident).state == IncidentState.INVESTIGATING


def test_a_future_dated_entry_is_refused(operator: Any, world: World) -> None:
    with time_machine.travel(NOW, tick=False):
        incident = make_incident(operator)
        before = entry_count(incident)
        response = client_for(operator).post(
            url("note", incident), {"text": "From the future", "occurred_at": "2026-03-10T04:00"}
        )
    assert response.status_code == 400
    assert "The time it happened is in the future" in response.content.decode()
    assert entry_count(incident) == before


def test_a_note_can_be_dated_earlier_and_correct_an_entry(operator: Any, world: World) -> None:
    with time_machine.travel(NOW, tick=False):
        incident = make_incident(operator)
        wrong = do_add_note(operator, incident, "wrong")
        response = client_for(operator).post(
            url("note", incident),
            {"text": "right", "occurred_at": "2026-03-10T02:45", "corrects": str(wrong.pk)},
        )
    assert response.status_code == 302
    entry = last_entry(incident)
    assert entry.corrects == wrong
    assert entry.occurred_at == datetime(2026, 3, 10, 2, 45, tzinfo=UTC)
    assert entry.created_at == NOW


def test_the_correct_link_prefills_the_note_form(operator: Any, world: World) -> None:
    incident = make_incident(operator)
    entry = last_entry(incident)
    response = client_for(operator).get(f"{detail_url(incident)}?corrects={entry.pk}")
    note = next(card for card in response.context["write_cards"] if card.name == "note")
    assert note.open
    assert note.form["corrects"].value() == entry.pk


def test_another_incidents_entry_cannot_be_corrected(operator: Any, world: World) -> None:
    incident = make_incident(operator)
    other = make_incident(operator)
    response = client_for(operator).post(
        url("note", incident), {"text": "x", "corrects": last_entry(other).pk}
    )
    assert response.status_code == 400
    assert "is not in this incident&#x27;s timeline" in response.content.decode()


def test_a_status_update_resets_the_update_clock(operator: Any, world: World) -> None:
    with time_machine.travel(NOW, tick=False) as traveller:
        incident = make_incident(operator, "SEV-1")
        traveller.shift(timedelta(minutes=10))
        response = client_for(operator).post(
            url("update", incident),
            {
                "visibility": "internal",
                "current_status": "Errors at 40 %",
                "findings": "Pool exhausted",
                "next_steps": "Roll back",
                "eta": "20 min",
            },
        )
    assert response.status_code == 302
    entry = last_entry(incident)
    assert (entry.kind, entry.visibility, entry.eta) == ("update", "internal", "20 min")
    assert reloaded(incident).next_update_due == NOW + timedelta(minutes=25)


def test_changing_the_state_and_reopening_with_a_reason(operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-3")
    client = client_for(operator)
    assert client.post(url("state", incident), {"state": "identified"}).status_code == 302
    assert reloaded(incident).state == IncidentState.IDENTIFIED
    do_resolve_incident(operator, incident, current_status="Fixed")

    refused = client.post(url("state", incident), {"state": "investigating", "reason": ""})
    assert refused.status_code == 400
    assert "Say why you reopen it." in refused.content.decode()
    assert reloaded(incident).state == IncidentState.RESOLVED

    reopened = client.post(
        url("state", incident), {"state": "investigating", "reason": "It is back"}
    )
    assert reopened.status_code == 302
    assert reloaded(incident).state == IncidentState.INVESTIGATING


def test_lowering_the_severity_needs_a_reason(operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-1")
    sev3 = Severity.objects.get(key="SEV-3")
    client = client_for(operator)
    refused = client.post(url("severity", incident), {"severity": sev3.pk, "reason": ""})
    assert refused.status_code == 400
    assert "Say why you lower it from SEV-1 to SEV-3." in refused.content.decode()
    assert reloaded(incident).severity.key == "SEV-1"

    lowered = client.post(url("severity", incident), {"severity": sev3.pk, "reason": "Contained"})
    assert lowered.status_code == 302
    assert reloaded(incident).severity.key == "SEV-3"
    assert last_entry(incident).text == "Contained"


def test_the_state_form_by_htmx_answers_with_the_manage_panel(operator: Any, world: World) -> None:
    incident = make_incident(operator)
    response = client_for(operator).post(
        url("state", incident), {"state": "mitigating"}, headers=HTMX
    )
    content = response.content.decode()
    assert content.lstrip().startswith('<section id="incident-manage"')
    assert f"Incident #{incident.pk} is mitigating." in content
    assert 'id="incident-header" class="mb-3" hx-swap-oob="true"' in content
    assert "Mitigating" in content.split('id="incident-header"')[1]


def test_handing_over_a_role(operator: Any, admin: Any, world: World) -> None:
    incident = make_incident(operator)
    response = client_for(operator).post(
        url("role", incident), {"role": "technical_lead", "holder": admin.pk}
    )
    assert response.status_code == 302
    assert reloaded(incident).technical_lead == admin
    entry = last_entry(incident)
    assert entry.data == {"role": "technical_lead", "from": "", "to": admin.get_username()}


def test_changing_the_affected_services(operator: Any, world: World) -> None:
    incident = make_incident(operator, services=[world.service])
    response = client_for(operator).post(
        url("affected", incident),
        {"services": [world.service.pk, world.other_service.pk], "environments": []},
    )
    assert response.status_code == 302
    assert set(reloaded(incident).services.all()) == {world.service, world.other_service}


def test_resolving_posts_a_final_public_update(operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-1")
    client = client_for(operator)
    response = client.post(url("resolve", incident), {"current_status": "Rolled back; all good"})
    assert response.status_code == 302
    resolved = reloaded(incident)
    assert resolved.state == IncidentState.RESOLVED
    assert resolved.postmortem_due is not None
    update = TimelineEntry.objects.filter(incident=incident, kind=EntryKind.UPDATE).get()
    assert update.is_public
    page = client.get(detail_url(incident))
    assert "post-mortem is due by" in messages_of(page)[0]
    assert f'action="{url("close", incident)}"' in page.content.decode()


def postmortem_url(incident: Incident) -> str:
    try:
        return reverse("incidents:postmortem", args=[incident.pk])
    except NoReverseMatch:
        return ""


def test_closing_a_sev1_without_a_postmortem_is_refused(operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-1")
    do_acknowledge_incident(operator, incident)
    do_resolve_incident(operator, incident, current_status="Fixed")
    before = entry_count(incident)
    client = client_for(operator)

    response = client.post(url("close", incident))
    content = response.content.decode()
    assert response.status_code == 400
    assert "A SEV-1 incident closes only with a completed post-mortem." in content
    if postmortem_url(incident):
        assert f'href="{postmortem_url(incident)}">Write the post-mortem' in content
    assert reloaded(incident).state == IncidentState.RESOLVED
    assert entry_count(incident) == before

    fragment = client.post(url("close", incident), headers=HTMX)
    assert fragment.status_code == 200
    assert "closes only with a completed post-mortem" in fragment.content.decode()
    assert reloaded(incident).state == IncidentState.RESOLVED


def test_closing_after_the_postmortem(operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-2")
    do_resolve_incident(operator, incident, current_status="Fixed")
    PostMortem.objects.create(incident=incident, author=operator, completed_at=timezone.now())
    response = client_for(operator).post(url("close", incident))
    assert response.status_code == 302
    assert reloaded(incident).state == IncidentState.CLOSED


def test_closing_an_open_incident_is_refused(operator: Any, world: World) -> None:
    incident = make_incident(operator, "SEV-3")
    response = client_for(operator).post(url("close", incident))
    assert response.status_code == 400
    assert "Only a resolved incident can be closed." in response.content.decode()


CHANGES = ["acknowledge", "note", "update", "state", "severity", "role", "affected", "resolve"]


@pytest.mark.parametrize("name", [*CHANGES, "close"])
def test_a_viewer_cannot_change_an_incident_and_get_is_refused(
    viewer: Any, operator: Any, world: World, name: str
) -> None:
    incident = make_incident(operator)
    before = entry_count(incident)
    assert client_for(viewer).post(url(name, incident), {"text": "x"}).status_code == 403
    assert client_for(operator).get(url(name, incident)).status_code == 405
    assert entry_count(incident) == before


def test_the_action_links_open_the_operation_form_started_from_the_incident(
    operator: Any, world: World
) -> None:
    incident = make_incident(operator, "SEV-1", services=[world.service], title="Checkout down")
    response = client_for(operator).get(
        f"/operations/start/services.restart/?target={world.production_target.pk}"
        f"&origin=incident:{incident.pk}"
    )
    assert response.status_code == 200
    assert f"Incident #{incident.pk}: Checkout down" in response.content.decode()


# --- The service page --------------------------------------------------------------------


def test_the_service_page_offers_to_declare_and_lists_open_incidents(
    operator: Any, viewer: Any, world: World
) -> None:
    open_one = make_incident(operator, "SEV-2", services=[world.service], title="Slow checkout")
    resolved = make_incident(operator, "SEV-3", services=[world.service], title="Old trouble")
    do_resolve_incident(operator, resolved, current_status="Fixed")

    content = client_for(operator).get("/services/checkout/").content.decode()
    assert f'href="/incidents/declare/?service={world.service.pk}"' in content
    assert f'href="{detail_url(open_one)}">#{open_one.pk} Slow checkout</a>' in content
    assert "Old trouble" not in content
    as_viewer = client_for(viewer).get("/services/checkout/").content.decode()
    assert "/incidents/declare/?service=" not in as_viewer
    assert "Slow checkout" in as_viewer
