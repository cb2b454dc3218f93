"""The public status page and /status.json: anyone reads them; a component's status follows
the open incidents of its service; the public sees only public updates, escaped; the
history covers 90 days in a fixed number of queries; admins choose the components."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.incidents import actions as incident_actions
from apps.incidents.choices import Visibility
from apps.services.models import Environment, Service
from apps.statuspage import sources
from apps.statuspage.choices import ComponentStatus
from apps.statuspage.models import StatusComponent
from apps.statuspage.sources import Span
from tests.conftest import client_for
from tests.factories import make_incident, make_user

pytestmark = pytest.mark.core

HTMX = {"HX-Request": "true"}


@pytest.fixture
def api(db: None) -> Service:
    return Service.objects.create(name="shop-api-internal", slug="shop-api", team="Shop")


@pytest.fixture
def component(api: Service) -> StatusComponent:
    return StatusComponent.objects.create(
        service=api, name="Checkout API", description="Orders and payments", position=0
    )


@pytest.fixture
def anonymous() -> Client:
    return Client()


def page(client: Client) -> str:
    response = client.get("/status/")
    assert response.status_code == 200
    return response.content.decode()


def summary(client: Client) -> dict[str, Any]:
    response = client.get("/status.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()  # type: ignore[no-any-return]


def component_row(content: str, name: str) -> str:
    """The list item of one component on the page."""
    start = content.index(f'<h3 class="h6 m-0">{name}</h3>')
    return content[start : content.index("</li>\n", content.index('class="days-scale', start))]


# --- Anyone may read it ------------------------------------------------------------------


def test_it_shows_the_page_to_anyone(anonymous: Client, component: StatusComponent) -> None:
    response = anonymous.get("/status/")
    content = response.content.decode()
    assert response.status_code == 200
    assert response["Cache-Control"] in ("public, max-age=30", "max-age=30, public")
    assert "All systems operational" in content
    assert "Checkout API" in content and "Orders and payments" in content
    assert "Operational" in content and "bi-check-circle-fill" in content  # word and icon
    # No portal around it: no navigation, no sign-in state, no CSRF token, no session.
    assert 'aria-label="Main"' not in content
    assert "csrfmiddlewaretoken" not in content and "X-CSRFToken" not in content
    assert "shop-api-internal" not in content  # the service's internal name stays inside
    assert not response.cookies
    # Local assets only, and no inline script (the CSP forbids them).
    assert "vendor/bootstrap/bootstrap.min" in content
    assert "vendor/bootstrap-icons/bootstrap-icons.min" in content
    assert not re.findall(r"<script(?![^>]*\bsrc=)", content)
    assert "https://" not in content


def test_a_signed_in_admin_gets_the_same_public_page(
    admin: Any, component: StatusComponent
) -> None:
    content = page(client_for(admin))
    assert "alice-admin" not in content
    assert "Declare incident" not in content


def test_it_serves_the_summary_as_json_to_anyone(
    anonymous: Client, component: StatusComponent
) -> None:
    response = anonymous.get("/status.json")
    assert response["Cache-Control"] in ("public, max-age=30", "max-age=30, public")
    assert response["Access-Control-Allow-Origin"] == "*"
    data = summary(anonymous)
    assert data["status"] == {"indicator": "none", "description": "All systems operational"}
    assert data["components"] == [
        {
            "name": "Checkout API",
            "description": "Orders and payments",
            "status": "operational",
            "position": 0,
            "updated_at": data["components"][0]["updated_at"],
        }
    ]
    assert data["incidents"] == []
    assert data["generated_at"]


def test_it_refuses_other_methods(anonymous: Client, db: None) -> None:
    assert anonymous.post("/status/").status_code == 405
    assert anonymous.post("/status.json").status_code == 405
    assert anonymous.head("/status/").status_code == 200


def test_it_says_when_nothing_is_published(anonymous: Client, db: None) -> None:
    content = page(anonymous)
    assert "All systems operational" in content
    assert "No service is published on this page yet." in content
    assert summary(anonymous)["components"] == []


# --- Status from incidents ---------------------------------------------------------------


def test_a_sev1_is_a_major_outage_until_it_is_resolved(
    anonymous: Client, admin: Any, component: StatusComponent, api: Service
) -> None:
    incident = make_incident(admin, "SEV-1", services=[api], title="Checkout fails")
    content = page(anonymous)
    assert 'data-indicator="critical"' in content
    assert "Major outage" in component_row(content, "Checkout API")
    assert "Checkout fails" in content.split('id="current-title"')[1]
    data = summary(anonymous)
    assert data["status"] == {"indicator": "critical", "description": "Major outage"}
    assert data["components"][0]["status"] == "major_outage"
    assert data["incidents"][0]["severity"] == "SEV-1"
    assert data["incidents"][0]["state"] == "investigating"
    assert data["incidents"][0]["resolved_at"] is None

    incident_actions.do_resolve_incident(admin, incident, current_status="Payments work again.")
    content = page(anonymous)
    assert "All systems operational" in content
    assert "Operational" in component_row(content, "Checkout API")
    assert 'id="current-title"' not in content
    past = content.split('id="past-title"')[1]
    assert "Checkout fails" in past and "Payments work again." in past
    data = summary(anonymous)
    assert data["status"]["indicator"] == "none"
    assert data["components"][0]["status"] == "operational"
    assert data["incidents"][0]["state"] == "resolved"
    assert data["incidents"][0]["resolved_at"] is not None


@pytest.mark.parametrize(
    ("severity", "status", "indicator"),
    [
        ("SEV-2", "partial_outage", "major"),
        ("SEV-3", "degraded_performance", "minor"),
        ("SEV-4", "degraded_performance", "minor"),
    ],
)
def test_lesser_severities_are_lesser_statuses(
    anonymous: Client,
    admin: Any,
    component: StatusComponent,
    api: Service,
    severity: str,
    status: str,
    indicator: str,
) -> None:
    make_incident(admin, severity, services=[api])
    data = summary(anonymous)
    assert data["components"][0]["status"] == status
    assert data["status"]["indicator"] == indicator
    assert ComponentStatus(status).label in component_row(page(anonymous), "Checkout API")


def test_the_worst_open_incident_wins(
    anonymous: Client, admin: Any, component: StatusComponent, api: Service
) -> None:
    make_incident(admin, "SEV-3", services=[api])
    make_incident(admin, "SEV-2", services=[api])
    assert summary(anonymous)["components"][0]["status"] == "partial_outage"


def test_incidents_of_unpublished_services_or_of_staging_only_do_not_show(
    anonymous: Client, admin: Any, component: StatusComponent, api: Service
) -> None:
    internal = Service.objects.create(name="batch", slug="batch", team="Data")
    staging = Environment.objects.create(name="staging", slug="staging")
    production = Environment.objects.create(name="production", slug="prod", is_production=True)
    make_incident(admin, "SEV-1", services=[internal], title="Batch jobs late")
    make_incident(
        admin, "SEV-1", services=[api], environments=[staging], title="Staging checkout down"
    )
    content = page(anonymous)
    assert "All systems operational" in content
    assert "Batch jobs late" not in content and "Staging checkout down" not in content
    make_incident(
        admin, "SEV-2", services=[api, internal], environments=[staging, production], title="Prod"
    )
    data = summary(anonymous)
    assert data["components"][0]["status"] == "partial_outage"
    assert [incident["title"] for incident in data["incidents"]] == ["Prod"]
    assert data["incidents"][0]["components"] == ["Checkout API"]  # "batch" stays unnamed
    assert "batch" not in page(anonymous).lower().split('id="current-title"')[1]


# --- Only what the public may read -------------------------------------------------------


def test_internal_notes_updates_and_people_never_show(
    anonymous: Client, admin: Any, component: StatusComponent, api: Service
) -> None:
    commander = make_user("carl-commander")
    incident = make_incident(
        admin,
        "SEV-1",
        services=[api],
        title="Checkout slow",
        commander=commander,
        customer_impact="Internal: the big customer ACME is hit",
    )
    incident_actions.do_add_note(admin, incident, "Internal note: the DB password rotated")
    incident_actions.do_post_update(
        admin,
        incident,
        visibility=Visibility.INTERNAL,
        current_status="Internal update: blame the cache",
        findings="internal findings",
    )
    incident_actions.do_post_update(
        admin,
        incident,
        visibility=Visibility.PUBLIC,
        current_status="We are looking into slow checkouts.",
        findings="Payments take long.",
        next_steps="Adding capacity.",
        eta="Within the hour",
    )
    for text in (page(anonymous), anonymous.get("/status.json").content.decode()):
        assert "We are looking into slow checkouts." in text
        assert "Payments take long." in text and "Adding capacity." in text
        assert "Within the hour" in text
        for secret in (
            "carl-commander",
            "alice-admin",
            "ACME",
            "Internal note",
            "Internal update",
            "internal findings",
        ):
            assert secret not in text, secret
    update = summary(anonymous)["incidents"][0]["updates"][0]
    assert set(update) == {"status", "findings", "next_steps", "eta", "at"}


def test_updates_show_newest_first_and_corrections_replace_what_they_correct(
    anonymous: Client, admin: Any, component: StatusComponent, api: Service
) -> None:
    incident = make_incident(admin, "SEV-2", services=[api])
    with time_machine.travel(timezone.now() + timedelta(minutes=5)):
        first = incident_actions.do_post_update(
            admin, incident, visibility="public", current_status="First: cause unknown."
        )
    with time_machine.travel(timezone.now() + timedelta(minutes=10)):
        incident_actions.do_post_update(
            admin, incident, visibility="public", current_status="Second: cause found."
        )
    with time_machine.travel(timezone.now() + timedelta(minutes=15)):
        incident_actions.do_post_update(
            admin,
            incident,
            visibility="public",
            current_status="First, corrected: cause known.",
            occurred_at=first.occurred_at,
            corrects=first,
        )
    updates = summary(anonymous)["incidents"][0]["updates"]
    assert [update["status"] for update in updates] == [
        "Second: cause found.",
        "First, corrected: cause known.",
    ]
    content = page(anonymous)
    assert content.index("Second: cause found.") < content.index("First, corrected")
    assert "First: cause unknown." not in content


def test_a_public_update_with_a_script_is_escaped(
    anonymous: Client, admin: Any, component: StatusComponent, api: Service
) -> None:
    incident = make_incident(admin, "SEV-1", services=[api], title="<b>bold</b> title")
    incident_actions.do_post_update(
        admin,
        incident,
        visibility="public",
        current_status="<script>alert(1)</script>",
        findings='<img src=x onerror="alert(2)">',
        eta="<i>soon</i>",
    )
    component.name = "<em>API</em>"
    component.save(update_fields=["name"])
    content = page(anonymous)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<script>alert(1)" not in content
    assert "<img src=x" not in content and "&lt;img src=x" in content
    assert "<i>soon</i>" not in content and "<b>bold</b>" not in content
    assert "<em>API</em>" not in content and "&lt;em&gt;API&lt;/em&gt;" in content
    # JSON carries the text as text: escaping is its readers' business, and it is JSON.
    assert summary(anonymous)["incidents"][0]["updates"][0]["status"] == (
        "<script>alert(1)</script>"
    )


# --- History -----------------------------------------------------------------------------


def test_the_history_shows_the_day_of_a_past_incident(
    anonymous: Client, admin: Any, component: StatusComponent, api: Service
) -> None:
    now = timezone.now()
    # At noon, so that the hour-long outage stays within one day whenever the test runs.
    twenty_days_ago = timezone.localtime(now - timedelta(days=20)).replace(
        hour=12, minute=0, second=0, microsecond=0
    )
    with time_machine.travel(twenty_days_ago, tick=False):
        incident = make_incident(admin, "SEV-1", services=[api], title="Old outage")
    with time_machine.travel(twenty_days_ago + timedelta(hours=1), tick=False):
        incident_actions.do_resolve_incident(admin, incident, current_status="Fixed for good.")
    with time_machine.travel(now - timedelta(days=120), tick=False):
        ancient = make_incident(admin, "SEV-1", services=[api], title="Ancient outage")
        incident_actions.do_resolve_incident(admin, ancient, current_status="Long ago.")

    content = page(anonymous)
    row = component_row(content, "Checkout API")
    cells = re.findall(r'<li class="day day-([a-z_]+)" title="([^"]+)"', row)
    assert len(cells) == 90
    day = timezone.localtime(twenty_days_ago).date()
    label = f"{day.day} {day:%b %Y}: Major outage — Old outage"
    assert cells[-21] == ("major_outage", label)
    assert [status for status, _ in cells].count("major_outage") == 1
    assert f'<span class="visually-hidden">{label}</span>' in row  # for screen readers
    assert "98.89 % of 90 days operational" in row
    past = content.split('id="past-title"')[1]
    assert "Old outage" in past and "Fixed for good." in past and "1 h" in past
    assert "Ancient outage" not in content
    assert [each["title"] for each in summary(anonymous)["incidents"]] == ["Old outage"]


def test_an_incident_across_midnight_marks_both_days(
    anonymous: Client, admin: Any, component: StatusComponent, api: Service
) -> None:
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=3, hours=1)
    with time_machine.travel(start, tick=False):
        incident = make_incident(admin, "SEV-3", services=[api])
    with time_machine.travel(start + timedelta(hours=2), tick=False):
        incident_actions.do_resolve_incident(admin, incident, current_status="Done.")
    cells = re.findall(r'class="day day-([a-z_]+)"', component_row(page(anonymous), "Checkout API"))
    assert cells[-5:] == [
        "degraded_performance",
        "degraded_performance",
        "operational",
        "operational",
        "operational",
    ]


def test_the_page_costs_the_same_queries_with_1_or_30_incidents(
    anonymous: Client, admin: Any, component: StatusComponent, api: Service
) -> None:
    other = StatusComponent.objects.create(
        service=Service.objects.create(name="web", slug="web", team="Web"), name="Website"
    )

    def declare(number: int) -> None:
        with time_machine.travel(timezone.now() - timedelta(days=number * 2), tick=False):
            incident = make_incident(
                admin, "SEV-2", services=[api, other.service], title=f"Incident {number}"
            )
            incident_actions.do_post_update(
                admin, incident, visibility="public", current_status=f"Looking {number}"
            )
            if number % 3:
                incident_actions.do_resolve_incident(admin, incident, current_status="Fixed")

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert anonymous.get(url).status_code == 200
        return len(captured)

    declare(1)
    few = {url: queries(url) for url in ("/status/", "/status.json")}
    for number in range(2, 31):
        declare(number)
    content = page(anonymous)
    assert "Incident 30" in content and "Incident 2" in content
    assert {url: queries(url) for url in ("/status/", "/status.json")} == few
    # Six for the components, the sources and the incidents, and one for the maintenance
    # section (tests/statuspage/test_maintenance_section.py), which /status.json has not.
    assert few["/status/"] <= 7
    assert few["/status/"] == few["/status.json"] + 1


# --- Other sources: maintenance ----------------------------------------------------------


@pytest.fixture
def maintenance_source(component: StatusComponent) -> Iterator[list[Span]]:
    spans: list[Span] = []
    sources.register_status_source("test-maintenance", lambda components, since, now: spans)
    yield spans
    sources._SOURCES.pop("test-maintenance")


def test_a_registered_source_adds_its_statuses(
    anonymous: Client,
    admin: Any,
    component: StatusComponent,
    api: Service,
    maintenance_source: list[Span],
) -> None:
    now = timezone.now()
    maintenance_source.append(
        Span(component.pk, ComponentStatus.UNDER_MAINTENANCE, now - timedelta(minutes=5), None)
    )
    content = page(anonymous)
    assert "Service under maintenance" in content
    assert "Under maintenance" in component_row(content, "Checkout API")
    assert summary(anonymous)["status"]["indicator"] == "maintenance"
    make_incident(admin, "SEV-1", services=[api])  # worse than maintenance: it wins
    assert summary(anonymous)["components"][0]["status"] == "major_outage"


def test_a_finished_or_future_span_does_not_set_the_status_now(
    anonymous: Client, component: StatusComponent, maintenance_source: list[Span]
) -> None:
    now = timezone.now()
    maintenance_source.append(
        Span(component.pk, ComponentStatus.UNDER_MAINTENANCE, now - timedelta(days=2), now)
    )
    maintenance_source.append(
        Span(component.pk, ComponentStatus.UNDER_MAINTENANCE, now + timedelta(days=1))
    )
    data = summary(anonymous)
    assert data["components"][0]["status"] == "operational"
    cells = re.findall(r'class="day day-([a-z_]+)"', page(anonymous))
    assert cells.count("under_maintenance") >= 2


# --- Components (admins) -----------------------------------------------------------------


def test_an_admin_publishes_renames_reorders_and_removes_components(
    admin: Any, api: Service
) -> None:
    client = client_for(admin)
    web = Service.objects.create(name="web", slug="web", team="Web")
    response = client.get("/status/components/")
    assert response.status_code == 200
    assert "The public page shows no service yet." in response.content.decode()

    response = client.post("/status/components/new/", {"service": api.pk, "name": ""})
    assert response.status_code == 302
    first = StatusComponent.objects.get(service=api)
    assert first.name == "shop-api-internal"  # the service's name unless one is given
    response = client.post(
        "/status/components/new/", {"service": web.pk, "name": "Website", "description": "www"}
    )
    assert response.status_code == 302
    second = StatusComponent.objects.get(service=web)
    assert second.position == first.position + 1

    response = client.post(f"/status/components/{first.pk}/edit/", {"name": "Checkout API"})
    assert response.status_code == 302
    first.refresh_from_db()
    assert first.name == "Checkout API" and first.service == api

    response = client.post(f"/status/components/{second.pk}/move/", {"direction": "up"})
    assert response.status_code == 302
    assert list(StatusComponent.objects.values_list("name", flat=True)) == [
        "Website",
        "Checkout API",
    ]
    content = page(Client())
    assert content.index("Website") < content.index("Checkout API")

    response = client.post(f"/status/components/{second.pk}/remove/")
    assert response.status_code == 302
    assert not StatusComponent.objects.filter(pk=second.pk).exists()
    assert Service.objects.filter(pk=web.pk).exists()
    assert "Website" not in page(Client())

    actions = list(
        AuditEvent.objects.filter(action__startswith="statuscomponent.")
        .order_by("seq")
        .values_list("action", "target_label")
    )
    assert actions == [
        ("statuscomponent.created", "shop-api-internal"),
        ("statuscomponent.created", "Website"),
        ("statuscomponent.changed", "Checkout API"),
        ("statuscomponent.moved", "Website"),
        ("statuscomponent.removed", "Website"),
    ]


def test_bad_component_input_says_why_and_saves_nothing(
    admin: Any, component: StatusComponent, api: Service
) -> None:
    client = client_for(admin)
    web = Service.objects.create(name="web", slug="web", team="Web")
    response = client.post("/status/components/new/", {"service": web.pk, "name": "Checkout API"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    response = client.post("/status/components/new/", {"service": api.pk, "name": "Again"})
    assert response.status_code == 400  # already public: not offered
    response = client.post("/status/components/new/", {"service": 999999})
    assert response.status_code == 400
    response = client.post(f"/status/components/{component.pk}/move/", {"direction": "sideways"})
    assert response.status_code == 302
    assert StatusComponent.objects.count() == 1
    assert not AuditEvent.objects.filter(action__startswith="statuscomponent").exists()
    assert client.get("/status/components/999999/edit/").status_code == 404


def test_moving_with_htmx_returns_only_the_table(admin: Any, component: StatusComponent) -> None:
    web = StatusComponent.objects.create(
        service=Service.objects.create(name="web", slug="web", team="Web"),
        name="Website",
        position=1,
    )
    client = client_for(admin)
    response = client.post(f"/status/components/{web.pk}/move/", {"direction": "up"}, headers=HTMX)
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<div id="components"')
    assert "<html" not in content
    assert content.index("Website") < content.index("Checkout API")
    response = client.post(f"/status/components/{web.pk}/move/", {"direction": "up"}, headers=HTMX)
    assert "Website is already first." in response.content.decode()


@pytest.mark.parametrize("persona", ["nobody", "viewer", "operator"])
def test_only_admins_manage_components(
    persona: str, request: pytest.FixtureRequest, component: StatusComponent
) -> None:
    client = client_for(request.getfixturevalue(persona))
    assert client.get("/status/components/").status_code == 403
    assert client.get("/status/components/new/").status_code == 403
    assert client.post(f"/status/components/{component.pk}/remove/").status_code == 403
    assert StatusComponent.objects.filter(pk=component.pk).exists()
    assert AuditEvent.objects.filter(action="access.denied").count() == 3


def test_anonymous_users_are_sent_to_sign_in_for_the_components(
    anonymous: Client, component: StatusComponent
) -> None:
    response = anonymous.get("/status/components/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
