"""Post-mortems: the draft generated from the timeline, editing it (the entries stay),
completing it (refused, with nothing saved, while something is missing), closing after it,
action items, the Markdown export (typed HTML neutralised), and the managers' follow-up
list, for each persona."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.incidents.actions import (
    IncidentRefused,
    do_acknowledge_incident,
    do_add_note,
    do_close_incident,
    do_post_update,
    do_resolve_incident,
)
from apps.incidents.choices import EntryKind, IncidentState
from apps.incidents.models import ActionItem, Incident, PostMortem, TimelineEntry
from apps.incidents.postmortems import (
    do_add_action_item,
    do_complete_postmortem,
    do_save_postmortem,
    md_cell,
    md_text,
    timeline_excerpt,
)
from tests.conftest import client_for
from tests.factories import make_incident

pytestmark = pytest.mark.core

HTMX = {"HX-Request": "true"}
DECLARED = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
FILLED = {
    "summary": "Checkout returned 502 for 40 minutes.",
    "impact": "All customers could not pay.",
    "timeline": "09:00 it broke\n09:40 it was fixed",
    "root_cause": "A connection pool of 5 under a 10x load.",
    "contributing_factors": "No alert on pool saturation.",
    "went_well": "Rollback in 3 minutes.",
    "went_badly": "Paging took 10 minutes.",
}


def url(incident: Incident, suffix: str = "") -> str:
    return f"/incidents/{incident.pk}/postmortem/{suffix}"


def resolved_incident(actor: Any, severity: str = "SEV-2", **fields: Any) -> Incident:
    incident = make_incident(actor, severity, **fields)
    return do_resolve_incident(actor, incident, current_status="Fixed by rolling back.")


def a_told_story(operator: Any) -> Incident:
    """Declared 09:00, acknowledged 09:02, a note, a public update corrected later, a note
    logged afterwards, resolved 09:40 (UTC)."""
    with time_machine.travel(DECLARED, tick=False):
        incident = make_incident(operator, "SEV-1", title="Checkout down", customer_impact="502s")
    with time_machine.travel(DECLARED + timedelta(minutes=2), tick=False):
        do_acknowledge_incident(operator, incident)
    with time_machine.travel(DECLARED + timedelta(minutes=5), tick=False):
        do_add_note(operator, incident, "Pool exhausted on the primary")
        update = do_post_update(
            operator, incident, visibility="public", current_status="Payments fail", eta="1 h"
        )
    with time_machine.travel(DECLARED + timedelta(minutes=20), tick=False):
        do_post_update(
            operator,
            incident,
            visibility="public",
            current_status="Payments fail for card users only",
            corrects=update,
        )
        do_add_note(
            operator,
            incident,
            "Rollback started",
            occurred_at=DECLARED + timedelta(minutes=10),
        )
    with time_machine.travel(DECLARED + timedelta(minutes=40), tick=False):
        return do_resolve_incident(operator, incident, current_status="Payments work again.")


def add_item(actor: Any, incident: Incident, title: str = "Alert on pool saturation") -> ActionItem:
    return do_add_action_item(
        actor, incident, title=title, owner=actor, due_date=date.today() + timedelta(days=7)
    )


# --- The draft ----------------------------------------------------------------------------


def test_it_generates_the_draft_from_the_entries(operator: Any) -> None:
    incident = a_told_story(operator)
    with time_machine.travel(DECLARED + timedelta(hours=1), tick=False):
        response = client_for(operator).get(url(incident))
    assert response.status_code == 200
    excerpt = response.context["form"].initial["timeline"]
    lines = excerpt.splitlines()
    assert lines[0].startswith("2026-03-10 09:00 UTC · olga-operator · Declared SEV-1")
    assert "2026-03-10 09:02 UTC · olga-operator · Acknowledged" in lines
    assert "2026-03-10 09:05 UTC · olga-operator · Note: Pool exhausted on the primary" in lines
    assert "Public update: Payments fail — ETA: 1 h" in excerpt
    assert (
        "2026-03-10 09:20 UTC · olga-operator · Public update: Payments fail for card users only "
        "(corrects the entry of 2026-03-10 09:05 UTC)"
    ) in lines
    # Logged at 09:20 about 09:10: in the order things happened, saying when it was written.
    late_note = next(line for line in lines if "Rollback started" in line)
    assert late_note == (
        "2026-03-10 09:10 UTC · olga-operator · Note: Rollback started "
        "(logged 2026-03-10 09:20 UTC)"
    )
    assert lines.index(late_note) < lines.index(next(line for line in lines if "corrects" in line))
    assert "State: investigating → resolved" in excerpt
    assert len(lines) == TimelineEntry.objects.filter(incident=incident).count()
    # A draft on the page only: nothing is saved until someone saves it.
    assert not PostMortem.objects.exists()
    assert "Mark complete" in response.content.decode()


def test_editing_saves_the_sections_and_leaves_the_entries_alone(operator: Any) -> None:
    incident = a_told_story(operator)
    before = list(TimelineEntry.objects.filter(incident=incident).values_list("id", "text"))
    response = client_for(operator).post(url(incident), FILLED)
    assert response.status_code == 302
    assert response["Location"] == url(incident)
    postmortem = PostMortem.objects.get(incident=incident)
    assert postmortem.summary == FILLED["summary"]
    assert postmortem.timeline == FILLED["timeline"]
    assert postmortem.author == operator
    assert not postmortem.is_complete
    assert list(TimelineEntry.objects.filter(incident=incident).values_list("id", "text")) == before
    event = AuditEvent.objects.get(action="incident.postmortem_saved")
    assert event.data["created"] is True

    client_for(operator).post(url(incident), {**FILLED, "summary": "Shorter."})
    postmortem.refresh_from_db()
    assert postmortem.summary == "Shorter."
    page = client_for(operator).get(url(incident)).content.decode()
    assert "Shorter." in page
    assert "Draft" in page


def test_the_first_save_without_an_excerpt_keeps_the_generated_one(operator: Any) -> None:
    incident = a_told_story(operator)
    client_for(operator).post(url(incident), {"summary": "Short", "timeline": "  "})
    postmortem = PostMortem.objects.get(incident=incident)
    assert postmortem.timeline == timeline_excerpt(incident)
    assert "Pool exhausted on the primary" in postmortem.timeline

    # An action item added before anything else starts the draft the same way.
    other = resolved_incident(operator)
    add_item(operator, other)
    assert PostMortem.objects.get(incident=other).timeline == timeline_excerpt(other)


# --- Completing ---------------------------------------------------------------------------


def test_completing_without_root_cause_is_refused_and_saves_nothing(operator: Any) -> None:
    incident = a_told_story(operator)
    do_save_postmortem(operator, incident, {"summary": "Old summary"})
    add_item(operator, incident)
    entries = TimelineEntry.objects.filter(incident=incident).count()

    response = client_for(operator).post(url(incident, "complete/"), {**FILLED, "root_cause": "  "})

    assert response.status_code == 400
    content = response.content.decode()
    assert "add the root cause" in content
    assert "Nothing was saved" in content
    assert FILLED["impact"] in content  # what was typed is still on the page
    postmortem = PostMortem.objects.get(incident=incident)
    assert postmortem.summary == "Old summary"
    assert postmortem.impact == ""
    assert postmortem.completed_at is None
    assert TimelineEntry.objects.filter(incident=incident).count() == entries
    refused = AuditEvent.objects.get(action="incident.postmortem_complete_refused")
    assert refused.outcome == "denied"
    assert not AuditEvent.objects.filter(action="incident.postmortem_completed").exists()
    with pytest.raises(IncidentRefused, match="completed post-mortem"):
        do_close_incident(operator, incident)


def test_completing_without_an_action_item_names_what_is_missing(operator: Any) -> None:
    incident = resolved_incident(operator)
    do_save_postmortem(operator, incident, FILLED)
    client = client_for(operator)
    response = client.post(url(incident, "complete/"))
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "add at least one action item" in page
    assert PostMortem.objects.get(incident=incident).completed_at is None


def test_completing_writes_the_entry_and_allows_closing(operator: Any) -> None:
    incident = a_told_story(operator)
    add_item(operator, incident)
    with time_machine.travel(DECLARED + timedelta(hours=20), tick=False):
        response = client_for(operator).post(url(incident, "complete/"), FILLED)
    assert response.status_code == 302
    postmortem = PostMortem.objects.get(incident=incident)
    assert postmortem.completed_at == DECLARED + timedelta(hours=20)
    assert postmortem.root_cause == FILLED["root_cause"]
    entry = TimelineEntry.objects.get(incident=incident, kind=EntryKind.POSTMORTEM)
    assert entry.author == operator
    assert entry.text == "Post-mortem completed."
    event = AuditEvent.objects.get(action="incident.postmortem_completed")
    assert event.target_id == str(incident.pk)

    page = client_for(operator).get(url(incident)).content.decode()
    assert "Complete" in page
    assert "Mark complete" not in page

    closed = do_close_incident(operator, incident)
    assert closed.state == IncidentState.CLOSED
    # Still readable, and still correctable once closed.
    assert client_for(operator).get(url(incident)).status_code == 200


def test_the_completed_postmortem_offers_to_close_the_incident(operator: Any) -> None:
    incident = resolved_incident(operator)
    add_item(operator, incident)
    client = client_for(operator)
    before = client.get(url(incident)).content.decode()
    assert 'data-testid="close-incident"' not in before  # not before completion
    client.post(url(incident, "complete/"), FILLED)
    page = client.get(url(incident)).content.decode()
    close_url = reverse("incidents:close", args=[incident.pk])
    assert f'action="{close_url}"' in page
    assert 'data-testid="close-incident"' in page
    assert client.post(close_url).status_code == 302
    incident.refresh_from_db()
    assert incident.state == IncidentState.CLOSED
    assert 'data-testid="close-incident"' not in client.get(url(incident)).content.decode()


def test_a_completed_postmortem_cannot_be_emptied(operator: Any) -> None:
    incident = resolved_incident(operator)
    add_item(operator, incident)
    do_complete_postmortem(operator, incident, FILLED)
    response = client_for(operator).post(url(incident), {**FILLED, "summary": ""})
    assert response.status_code == 400
    assert "keeps a summary" in response.content.decode()
    assert PostMortem.objects.get(incident=incident).summary == FILLED["summary"]


def test_a_postmortem_waits_for_the_incident_to_be_resolved(operator: Any) -> None:
    incident = make_incident(operator, "SEV-1")
    page = client_for(operator).get(url(incident))
    assert page.status_code == 200
    assert "a post-mortem is written once it is resolved" in page.content.decode()
    assert page.context["form"] is None

    response = client_for(operator).post(url(incident), FILLED)
    assert response.status_code == 400
    assert "once it is resolved" in response.content.decode()
    added = client_for(operator).post(
        url(incident, "actions/"),
        {"title": "x", "owner": operator.pk, "due_date": date.today().isoformat()},
    )
    assert added.status_code == 400
    assert not PostMortem.objects.exists()
    assert not ActionItem.objects.exists()


# --- Action items -------------------------------------------------------------------------


def test_an_htmx_action_item_gets_the_list_back(operator: Any) -> None:
    incident = resolved_incident(operator)
    due = date.today() + timedelta(days=14)
    response = client_for(operator).post(
        url(incident, "actions/"),
        {"title": "Alert on <pool> saturation", "owner": operator.pk, "due_date": due.isoformat()},
        headers=HTMX,
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<section class="card" id="actions"')
    assert "<html" not in content
    assert "Alert on &lt;pool&gt; saturation" in content
    item = ActionItem.objects.get()
    assert (item.owner, item.due_date, item.done_at) == (operator, due, None)
    assert AuditEvent.objects.filter(action="incident.action_item_added").count() == 1

    done = client_for(operator).post(f"/incidents/action-items/{item.pk}/done/", headers=HTMX)
    assert done.status_code == 200
    assert "Done" in done.content.decode()
    item.refresh_from_db()
    assert item.done_at is not None
    assert AuditEvent.objects.filter(action="incident.action_item_done").count() == 1


def test_a_plain_post_of_an_action_item_redirects(operator: Any) -> None:
    incident = resolved_incident(operator)
    response = client_for(operator).post(
        url(incident, "actions/"),
        {"title": "Runbook step", "owner": operator.pk, "due_date": date.today().isoformat()},
    )
    assert response.status_code == 302
    assert response["Location"] == url(incident) + "#actions"
    item = ActionItem.objects.get()
    done = client_for(operator).post(
        f"/incidents/action-items/{item.pk}/done/", {"next": "/incidents/follow-up/"}
    )
    assert done.status_code == 302
    assert done["Location"] == "/incidents/follow-up/"


def test_a_done_button_never_sends_people_elsewhere(operator: Any) -> None:
    incident = resolved_incident(operator)
    item = add_item(operator, incident)
    done = client_for(operator).post(
        f"/incidents/action-items/{item.pk}/done/", {"next": "https://evil.example.com/"}
    )
    assert done["Location"] == url(incident) + "#actions"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"title": "", "due": 3}, "This field is required"),
        ({"title": "Fix it", "due": -1}, "The due date is in the past"),
        ({"title": "Fix it", "due": 3, "owner": 999999}, "Select a valid choice"),
    ],
)
def test_a_bad_action_item_says_why_and_saves_nothing(
    operator: Any, data: dict[str, Any], message: str
) -> None:
    incident = resolved_incident(operator)
    form = {
        "title": data["title"],
        "owner": data.get("owner", operator.pk),
        "due_date": (date.today() + timedelta(days=data["due"])).isoformat(),
    }
    response = client_for(operator).post(url(incident, "actions/"), form)
    assert response.status_code == 400
    assert message in response.content.decode()
    htmx = client_for(operator).post(url(incident, "actions/"), form, headers=HTMX)
    assert htmx.status_code == 200
    assert message in htmx.content.decode()
    assert not ActionItem.objects.exists()
    assert not PostMortem.objects.exists()


# --- The Markdown export and escaping -----------------------------------------------------


def test_typed_html_is_neutralised_in_the_markdown_export_and_on_the_page(
    operator: Any, viewer: Any
) -> None:
    incident = make_incident(operator, "SEV-1", title="Checkout <b>down</b>")
    do_post_update(
        operator,
        incident,
        visibility="public",
        current_status="<script>alert('update')</script> & more",
    )
    incident = do_resolve_incident(operator, incident, current_status="Fixed")
    draft = timeline_excerpt(incident)
    assert "<script>alert('update')</script>" in draft  # plain text, escaped when shown
    do_save_postmortem(
        operator,
        incident,
        {**FILLED, "summary": "<script>alert('summary')</script>", "timeline": draft},
    )
    add_item(operator, incident, title="Split | the <img src=x onerror=alert(1)> pool")

    response = client_for(viewer).get(f"/incidents/{incident.pk}/postmortem.md")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="incident-{incident.pk}-postmortem.md"'
    )
    markdown = response.content.decode()
    assert "<script>" not in markdown
    assert "<img" not in markdown
    assert "&lt;script&gt;alert('summary')&lt;/script&gt;" in markdown
    assert "&lt;script&gt;alert('update')&lt;/script&gt; &amp; more" in markdown
    assert "# Post-mortem: incident #" in markdown
    assert "Checkout &lt;b&gt;down&lt;/b&gt;" in markdown
    assert "| Split \\| the &lt;img src=x onerror=alert(1)&gt; pool | olga-operator |" in markdown
    assert "**Severity:** SEV-1 Complete outage" in markdown
    assert "## Root cause" in markdown
    assert FILLED["root_cause"] in markdown
    assert "**Status:** Draft" in markdown
    event = AuditEvent.objects.get(action="incident.postmortem_exported")
    assert event.actor == viewer
    assert event.target_id == str(incident.pk)

    page = client_for(viewer).get(url(incident)).content.decode()
    assert "&lt;script&gt;alert(&#x27;summary&#x27;)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(&#x27;update&#x27;)&lt;/script&gt;" in page
    assert "<script>alert" not in page
    assert "<img src=x" not in page


def test_the_markdown_helpers_neutralise_what_renderers_would_act_on() -> None:
    assert md_text("<a href='x'>[link](javascript:x)</a> & co") == (
        "&lt;a href='x'&gt;&#91;link&#93;(javascript:x)&lt;/a&gt; &amp; co"
    )
    assert md_cell("a | b\nc") == "a \\| b c"
    assert md_cell("") == " "


def test_the_export_shows_durations_and_a_complete_status(operator: Any) -> None:
    incident = a_told_story(operator)
    add_item(operator, incident)
    with time_machine.travel(DECLARED + timedelta(hours=3), tick=False):
        do_complete_postmortem(operator, incident, FILLED)
    markdown = client_for(operator).get(f"/incidents/{incident.pk}/postmortem.md").content.decode()
    assert "**Time to acknowledge:** 2 min" in markdown
    assert "**Time to resolve:** 40 min" in markdown
    assert "**Status:** Completed 2026-03-10 12:00 UTC" in markdown
    assert "- 2026-03-10 09:05 UTC · olga-operator · Note: Pool exhausted" not in markdown
    assert "- 09:00 it broke" in markdown  # the edited excerpt, not the entries


def test_exporting_before_anything_is_written_says_so(operator: Any) -> None:
    incident = resolved_incident(operator)
    client = client_for(operator)
    response = client.get(f"/incidents/{incident.pk}/postmortem.md")
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "has no post-mortem to export yet" in page
    assert not AuditEvent.objects.filter(action="incident.postmortem_exported").exists()


# --- Who may do what ----------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_write(operator: Any, viewer: Any) -> None:
    incident = resolved_incident(operator)
    do_save_postmortem(operator, incident, FILLED)
    item = add_item(operator, incident)
    client = client_for(viewer)
    page = client.get(url(incident))
    content = page.content.decode()
    assert page.status_code == 200
    assert FILLED["root_cause"] in content
    assert "Mark complete" not in content
    assert "Mark done" not in content
    assert "<textarea" not in content
    assert client.post(url(incident), FILLED).status_code == 403
    assert client.post(url(incident, "complete/"), FILLED).status_code == 403
    assert client.post(url(incident, "actions/"), {"title": "x"}).status_code == 403
    assert client.post(f"/incidents/action-items/{item.pk}/done/").status_code == 403
    assert PostMortem.objects.get(incident=incident).summary == FILLED["summary"]
    assert AuditEvent.objects.filter(action="access.denied", actor=viewer).count() == 4


def test_a_user_without_a_role_sees_nothing(operator: Any, nobody: Any) -> None:
    incident = resolved_incident(operator)
    client = client_for(nobody)
    assert client.get(url(incident)).status_code == 403
    assert client.get(f"/incidents/{incident.pk}/postmortem.md").status_code == 403
    assert client.get("/incidents/follow-up/").status_code == 403


def test_the_wrong_methods_are_refused(operator: Any) -> None:
    incident = resolved_incident(operator)
    item = add_item(operator, incident)
    client = client_for(operator)
    assert client.get(url(incident, "complete/")).status_code == 405
    assert client.get(url(incident, "actions/")).status_code == 405
    assert client.get(f"/incidents/action-items/{item.pk}/done/").status_code == 405
    assert client.post(f"/incidents/{incident.pk}/postmortem.md").status_code == 405
    assert client.put(url(incident)).status_code == 405
    assert client.post("/incidents/follow-up/").status_code == 405


def test_an_unknown_incident_or_item_is_404(operator: Any) -> None:
    client = client_for(operator)
    assert client.get("/incidents/999999/postmortem/").status_code == 404
    assert client.post("/incidents/action-items/999999/done/").status_code == 404


# --- The follow-up list -------------------------------------------------------------------


def test_follow_up_lists_an_overdue_postmortem_and_not_a_completed_one(
    operator: Any, viewer: Any
) -> None:
    with time_machine.travel(DECLARED, tick=False):
        overdue = resolved_incident(operator, "SEV-1", title="Overdue outage")
        completed = resolved_incident(operator, "SEV-2", title="Completed outage")
        resolved_incident(operator, "SEV-3", title="Minor blip")
        add_item(operator, completed, title="Completed follow-up")
        do_complete_postmortem(operator, completed, FILLED)
        old_item = do_add_action_item(
            operator, overdue, title="Late item", owner=operator, due_date=date(2026, 3, 11)
        )
    with time_machine.travel(DECLARED + timedelta(hours=47), tick=False):
        soon = resolved_incident(operator, "SEV-1", title="Fresh outage")
        later_item = do_add_action_item(
            operator, soon, title="Future item", owner=viewer, due_date=date(2026, 4, 30)
        )
    with time_machine.travel(DECLARED + timedelta(hours=49), tick=False):
        response = client_for(viewer).get("/incidents/follow-up/")
    content = response.content.decode()
    assert response.status_code == 200
    assert [each.pk for each, _ in response.context["overdue"]] == [overdue.pk]
    assert [each.pk for each, _ in response.context["due_soon"]] == [soon.pk]
    overdue_table = content.split('data-testid="overdue-postmortems"')[1].split("</table>")[0]
    assert "Overdue outage" in overdue_table
    postmortem_tables = content.split('id="items-title"')[0]
    assert "Completed outage" not in postmortem_tables
    assert "Minor blip" not in content  # a SEV-3 needs no post-mortem
    # Overdue first, then by due date; a completed post-mortem's open items still count.
    assert [item.pk for item, _ in response.context["items"]] == [
        old_item.pk,
        ActionItem.objects.get(title="Completed follow-up").pk,
        later_item.pk,
    ]
    items_table = content.split('data-testid="open-action-items"')[1]
    assert items_table.index("Late item") < items_table.index("Future item")
    assert "Overdue" in items_table.split("Late item")[1].split("</tr>")[0]
    assert "Mark done" not in content  # a viewer

    with time_machine.travel(DECLARED + timedelta(hours=49), tick=False):
        mine = client_for(viewer).get("/incidents/follow-up/?mine=on")
    assert [item.pk for item, _ in mine.context["items"]] == [later_item.pk]


def test_follow_up_takes_a_fixed_number_of_queries(operator: Any, viewer: Any) -> None:
    client = client_for(viewer)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/incidents/follow-up/").status_code == 200
        return len(captured)

    resolved_incident(operator, "SEV-1")
    queries()  # the first request of a session warms caches up
    few = queries()
    for number in range(6):
        incident = resolved_incident(operator, "SEV-1" if number % 2 else "SEV-2")
        add_item(operator, incident, title=f"Item {number}")
        if number % 3 == 0:
            do_save_postmortem(operator, incident, {"summary": "draft"})
    assert queries() == few
