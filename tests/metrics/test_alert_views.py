"""The /alerts/ page and its changes, for each persona: listing and filtering, paging, the
empty state, acknowledging, silencing (expiry and reason), lifting a silence, and the
service's switch; refusals are 403s or messages, audited, with nothing saved."""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.incidents.models import Incident, Severity
from apps.metrics import alerts
from apps.metrics.models import Alert, ServiceAlerting, Silence
from apps.services.models import Service
from tests.conftest import client_for
from tests.metrics.test_alerts import STARTED, World, make_world, switch_on

LIST = "/alerts/"


@pytest.fixture
def world(db: None) -> World:
    return make_world()


def fire(world: World, fingerprint: str = "metric:1:1", **fields: Any) -> Alert:
    values: dict[str, Any] = {
        "service": world.service,
        "target": world.production,
        "source": "metrics",
        "fingerprint": fingerprint,
        "name": f"Error rate {fingerprint}",
        "severity": "critical",
        "summary": "Error rate 7 % > 5 %",
        "labels": {},
        "started_at": STARTED,
    }
    values.update(fields)
    return alerts.fire(**values)


def resolved(world: World, fingerprint: str) -> Alert:
    fire(world, fingerprint, severity="warning")
    alert = alerts.resolve(source="metrics", fingerprint=fingerprint, ended_at=STARTED)
    assert alert is not None
    return alert


# --- The list --------------------------------------------------------------------------------


def test_it_shows_firing_then_recent_alerts(world: World, viewer: Any) -> None:
    firing = fire(world, "metric:1:1")
    old = resolved(world, "metric:2:1")
    response = client_for(viewer).get(LIST)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="firing-alerts"' in page
    assert page.index(f'id="alert-{firing.pk}"') < page.index(f'id="alert-{old.pk}"')
    assert "Firing" in page and "Resolved" in page
    # A viewer reads; the buttons are for operators.
    assert "Acknowledge" not in page and "Silence…" not in page


def test_a_firing_alert_offers_to_declare_an_incident_filled_in_from_it(
    world: World, operator: Any, viewer: Any
) -> None:
    alert = fire(world, "metric:1:1")
    row = client_for(operator).get(LIST).content.decode().split(f'id="alert-{alert.pk}"')[1]
    row = row.split("</tr>")[0]
    assert "Declare incident" in row
    link = html.unescape(row.split('href="/incidents/declare/?')[1].split('"')[0])
    form = client_for(operator).get(f"/incidents/declare/?{link}").context["form"]
    assert form["title"].value() == "Error rate metric:1:1: Error rate 7 % > 5 %"
    assert form["services"].value() == [world.service.pk]
    assert form["environments"].value() == [world.production.environment_id]
    assert form["severity"].value() == Severity.objects.get(key="SEV-2").pk
    # Viewers cannot declare: no link for them.
    assert "Declare incident" not in client_for(viewer).get(LIST).content.decode()


def test_the_empty_state_says_where_alerts_come_from(world: World, viewer: Any) -> None:
    page = client_for(viewer).get(LIST).content.decode()
    assert 'data-testid="no-alerts"' in page
    assert "/api/alertmanager/" in page


def test_it_filters_by_service_in_the_url(world: World, viewer: Any) -> None:
    other = Service.objects.create(name="billing", slug="billing", team="Billing")
    mine = fire(world, "metric:1:1")
    theirs = fire(world, "metric:9:9", service=other, target=None)
    unmatched = fire(world, "am:1", service=None, target=None, source="alertmanager")
    page = client_for(viewer).get(LIST, {"service": "billing"}).content.decode()
    assert f'id="alert-{theirs.pk}"' in page
    assert f'id="alert-{mine.pk}"' not in page
    assert 'data-testid="alerting-switch"' in page
    page = client_for(viewer).get(LIST, {"service": "unmatched"}).content.decode()
    assert f'id="alert-{unmatched.pk}"' in page and f'id="alert-{mine.pk}"' not in page
    # An unknown service is ignored, not an error.
    assert client_for(viewer).get(LIST, {"service": "nope", "state": "bogus"}).status_code == 200


def test_it_pages_recent_alerts_by_id(world: World, viewer: Any) -> None:
    made = [resolved(world, f"metric:{index}:1") for index in range(55)]
    client = client_for(viewer)
    first = client.get(LIST, {"state": "resolved"})
    rows = first.content.decode().count('data-testid="alert-row"')
    assert rows == 50
    assert first.context["next_query"] == f"state=resolved&before={made[5].pk}"
    second = client.get(f"{LIST}?{first.context['next_query']}")
    assert second.content.decode().count('data-testid="alert-row"') == 5
    assert second.context["next_query"] == ""


def test_htmx_gets_only_the_results(world: World, viewer: Any) -> None:
    fire(world)
    response = client_for(viewer).get(LIST, headers={"HX-Request": "true"})
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="results">')
    assert "<html" not in page


def test_someone_without_a_role_may_not_read_alerts(world: World, nobody: Any) -> None:
    assert client_for(nobody).get(LIST).status_code == 403


# --- Acknowledge -----------------------------------------------------------------------------


def test_an_operator_acknowledges_and_returns_to_the_list(world: World, operator: Any) -> None:
    alert = fire(world)
    back = f"{LIST}?service={world.service.slug}"
    response = client_for(operator).post(f"/alerts/{alert.pk}/acknowledge/", {"next": back})
    assert response.status_code == 302
    assert response["Location"] == back
    alert.refresh_from_db()
    assert alert.acknowledged_by == operator
    assert AuditEvent.objects.get(action="alert.acknowledged").actor == operator


def test_an_htmx_acknowledge_gets_the_row(world: World, operator: Any) -> None:
    alert = fire(world)
    response = client_for(operator).post(
        f"/alerts/{alert.pk}/acknowledge/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert page.startswith(f'<tr id="alert-{alert.pk}"')
    assert "Acknowledged" in page


def test_an_offsite_next_is_not_followed(world: World, operator: Any) -> None:
    alert = fire(world)
    response = client_for(operator).post(
        f"/alerts/{alert.pk}/acknowledge/", {"next": "https://evil.example/"}
    )
    assert response["Location"] == LIST


def test_a_viewer_may_not_acknowledge_and_is_audited(world: World, viewer: Any) -> None:
    alert = fire(world)
    response = client_for(viewer).post(f"/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    denied = AuditEvent.objects.get(action="access.denied")
    assert denied.actor == viewer and "metrics.change_alert" in denied.reason


def test_acknowledging_a_resolved_alert_is_refused_and_audited(world: World, operator: Any) -> None:
    alert = resolved(world, "metric:1:1")
    response = client_for(operator).post(f"/alerts/{alert.pk}/acknowledge/", follow=True)
    assert "is resolved" in response.content.decode()
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert AuditEvent.objects.get(action="alert.acknowledge_refused").outcome == "denied"


def test_an_htmx_acknowledge_of_a_resolved_alert_reloads_the_list_with_why(
    world: World, operator: Any
) -> None:
    alert = resolved(world, "metric:1:1")
    client = client_for(operator)
    response = client.post(f"/alerts/{alert.pk}/acknowledge/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"] == LIST
    assert "is resolved" in client.get(LIST).content.decode()


def test_acknowledge_needs_post(world: World, operator: Any) -> None:
    alert = fire(world)
    assert client_for(operator).get(f"/alerts/{alert.pk}/acknowledge/").status_code == 405


# --- Silence and unsilence -------------------------------------------------------------------


def test_the_silence_page_says_what_will_happen(world: World, operator: Any) -> None:
    alert = fire(world, "c6ea", source="alertmanager", labels={"alertname": "HighErrorRate"})
    page = html.unescape(client_for(operator).get(f"/alerts/{alert.pk}/silence/").content.decode())
    assert "opens no incident and tells no one" in page
    assert 'amtool silence add alertname="HighErrorRate"' in page


def test_an_operator_silences_with_an_expiry_and_a_reason(world: World, operator: Any) -> None:
    alert = fire(world, severity="warning")
    before = timezone.now()
    response = client_for(operator).post(
        f"/alerts/{alert.pk}/silence/", {"duration": "4h", "reason": "Known: INC-42 fix rolling"}
    )
    assert response.status_code == 302
    silence = Silence.objects.get()
    assert silence.reason == "Known: INC-42 fix rolling"
    assert silence.created_by == operator
    assert before + timedelta(hours=4) <= silence.expires_at
    assert silence.expires_at <= timezone.now() + timedelta(hours=4)
    event = AuditEvent.objects.get(action="alert.silenced")
    assert event.reason == "Known: INC-42 fix rolling"
    # While silenced the alert still records, critical or not, and opens no incident.
    switch_on(world.service)
    again = fire(world, severity="critical")
    assert again.suppressed and again.times_seen == 2
    assert not Incident.objects.exists()
    page = client_for(operator).get(LIST).content.decode()
    assert "Silenced" in page and 'data-testid="silences"' in page


@pytest.mark.parametrize(
    "data",
    [{"duration": "4h", "reason": "  "}, {"duration": "99y", "reason": "x"}, {}],
)
def test_a_silence_without_a_reason_or_a_valid_expiry_is_refused(
    world: World, operator: Any, data: dict[str, str]
) -> None:
    alert = fire(world)
    response = client_for(operator).post(f"/alerts/{alert.pk}/silence/", data)
    assert response.status_code == 400
    assert not Silence.objects.exists()


def test_a_viewer_may_not_silence_and_is_audited(world: World, viewer: Any) -> None:
    alert = fire(world)
    response = client_for(viewer).post(
        f"/alerts/{alert.pk}/silence/", {"duration": "1h", "reason": "because"}
    )
    assert response.status_code == 403
    assert not Silence.objects.exists()
    assert "metrics.add_silence" in AuditEvent.objects.get(action="access.denied").reason


def test_unsilencing_lets_the_alert_open_its_incident(world: World, operator: Any) -> None:
    switch_on(world.service)
    alert = fire(world, severity="warning")
    silence = alerts.do_silence_alert(operator, alert, duration=timedelta(hours=1), reason="x")
    fire(world, severity="critical")
    assert not Incident.objects.exists()
    response = client_for(operator).post(f"/alerts/silences/{silence.pk}/lift/")
    assert response.status_code == 302
    silence.refresh_from_db()
    assert silence.lifted_by == operator
    assert AuditEvent.objects.filter(action="alert.silence_lifted").count() == 1
    assert Alert.objects.get(pk=alert.pk).incident == Incident.objects.get()
    # Lifting it again is refused, with a reason, and audited.
    again = client_for(operator).post(f"/alerts/silences/{silence.pk}/lift/", follow=True)
    assert "already ended" in again.content.decode()
    assert AuditEvent.objects.get(action="alert.unsilence_refused").outcome == "denied"


def test_a_viewer_may_not_unsilence(world: World, viewer: Any, operator: Any) -> None:
    alert = fire(world)
    silence = alerts.do_silence_alert(operator, alert, duration=timedelta(hours=1), reason="x")
    assert client_for(viewer).post(f"/alerts/silences/{silence.pk}/lift/").status_code == 403
    silence.refresh_from_db()
    assert silence.lifted_at is None


# --- The service's switch --------------------------------------------------------------------


def test_an_admin_switches_automatic_incidents_on(world: World, admin: Any) -> None:
    url = f"/alerts/services/{world.service.pk}/"
    response = client_for(admin).post(url, {"auto_incident": "on", "incident_severity": "SEV-1"})
    assert response.status_code == 302
    alerting = ServiceAlerting.objects.get(service=world.service)
    assert alerting.auto_incident
    assert alerting.incident_severity is not None and alerting.incident_severity.key == "SEV-1"
    event = AuditEvent.objects.get(action="service.alerting_changed")
    assert event.data == {"auto_incident": True, "incident_severity": "SEV-1"}
    assert fire(world).incident is not None
    assert Incident.objects.get().severity.key == "SEV-1"


def test_an_operator_may_not_switch_it(world: World, operator: Any) -> None:
    url = f"/alerts/services/{world.service.pk}/"
    assert client_for(operator).post(url, {"auto_incident": "on"}).status_code == 403
    assert not ServiceAlerting.objects.exists()
