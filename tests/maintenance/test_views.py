"""The pages: scheduling with bad input (clear messages, nothing saved), the overlap warning,
the window page with its message escaped, the htmx fragment, the buttons, the calendar, the
iCalendar feed, and the status page while a window runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.maintenance import actions
from apps.maintenance.models import ChecklistStep, Occurrence, Window
from apps.maintenance.views import feed_token
from apps.services.models import Service
from apps.statuspage.models import StatusComponent
from tests.conftest import client_for
from tests.maintenance.helpers import schedule

HTML = '<script>alert("x")</script>, now; later\nline two'


@pytest.fixture
def service(db: None) -> Service:
    return Service.objects.create(name="shop-api", slug="shop-api", team="Shop")


def form_data(service: Service, **fields: Any) -> dict[str, Any]:
    start = timezone.localtime(timezone.now() + timedelta(days=10))
    data = {
        "title": "Upgrade",
        "services": [service.pk],
        "time_zone": "Europe/London",
        "start": start.strftime("%Y-%m-%dT02:00"),
        "end": start.strftime("%Y-%m-%dT04:00"),
        "recurrence": "",
        "impact": "degraded",
        "message": HTML,
    }
    data.update(fields)
    return data


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"end": "2020-01-01T01:00"}, "The end must be after the start."),
        ({"start": "2020-01-01T02:00", "end": "2020-01-01T04:00"}, "The start is in the past"),
        ({"recurrence": "FREQ=FORTNIGHTLY"}, "not an RFC 5545"),
        ({"recurrence": "FREQ=WEEKLY;UNTIL=20200101T000000"}, "never occurs"),
        ({"recurrence": "FREQ=MINUTELY"}, "at most daily"),
        ({"time_zone": "Mars/Olympus"}, "not a known IANA time zone"),
    ],
)
def test_it_refuses_bad_input_with_a_clear_message_and_saves_nothing(
    operator: Any, service: Service, fields: dict[str, Any], expected: str
) -> None:
    response = client_for(operator).post("/maintenance/new/", form_data(service, **fields))
    assert response.status_code == 400
    assert expected in response.content.decode().replace("&#x27;", "'")
    assert not Window.objects.exists() and not Occurrence.objects.exists()


def test_short_notice_needs_a_reason(operator: Any, service: Service) -> None:
    soon = timezone.localtime(timezone.now() + timedelta(days=2))
    data = form_data(
        service, start=soon.strftime("%Y-%m-%dT02:00"), end=soon.strftime("%Y-%m-%dT04:00")
    )
    response = client_for(operator).post("/maintenance/new/", data)
    assert response.status_code == 400
    assert "less than the 7 days" in response.content.decode()
    data["short_notice_reason"] = "Urgent security fix"
    assert client_for(operator).post("/maintenance/new/", data).status_code == 302


def test_it_schedules_then_shows_the_message_escaped_everywhere(
    operator: Any, service: Service
) -> None:
    client = client_for(operator)
    response = client.post("/maintenance/new/", form_data(service))
    assert response.status_code == 302
    window = Window.objects.get()
    assert window.message == HTML  # stored as typed
    page = client.get(window.get_absolute_url()).content.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert "02:00–04:00" in page and "(Europe/London)" in page and "UTC" in page
    fragment = client.get(window.get_absolute_url(), headers={"HX-Request": "true"})
    assert 'id="operations"' in fragment.content.decode()
    assert "<html" not in fragment.content.decode()
    ics = client.get(f"/maintenance/feed/{feed_token(operator.pk)}.ics")
    assert ics["Content-Type"].startswith("text/calendar")
    body = ics.content.decode()
    assert "\\, now\\; later\\nline two" in body.replace("\r\n ", "")
    assert "BEGIN:VEVENT" in body and body.endswith("END:VCALENDAR\r\n")
    assert client.get("/maintenance/feed/1.bad.ics").status_code == 404
    # The list and the calendar show it.
    assert "Upgrade" in client.get("/maintenance/").content.decode()
    month = window.start_at.strftime("%Y-%m")
    assert "Upgrade" in client.get(f"/maintenance/calendar/?month={month}").content.decode()


def test_an_overlap_on_the_same_service_is_a_warning_to_confirm(
    operator: Any, service: Service
) -> None:
    client = client_for(operator)
    assert client.post("/maintenance/new/", form_data(service)).status_code == 302
    response = client.post("/maintenance/new/", form_data(service, title="Second"))
    assert response.status_code == 400
    assert "overlap" in response.content.decode()
    assert Window.objects.count() == 1
    confirmed = form_data(service, title="Second", confirm_overlap="on")
    assert client.post("/maintenance/new/", confirmed).status_code == 302
    assert Window.objects.count() == 2


def test_start_tick_verify_extend_end_through_the_buttons(
    operator: Any, service: Service, viewer: Any
) -> None:
    start = timezone.now() + timedelta(days=10)
    window = schedule(operator, [service], start, start + timedelta(hours=2))
    StatusComponent.objects.create(service=service, name="Shop")
    occurrence = window.occurrences.get()
    client = client_for(operator)
    assert client.post(f"/maintenance/occurrences/{occurrence.pk}/start/").status_code == 302
    status_page = client_for(viewer).get("/status/").content.decode()
    assert "Under maintenance" in status_page
    step = ChecklistStep.objects.get(occurrence=occurrence, kind="enable")
    client.post(f"/maintenance/steps/{step.pk}/tick/", {"note": "flags on <b>now</b>"})
    step.refresh_from_db()
    assert (step.done_by, step.note) == (operator, "flags on <b>now</b>")
    verify = ChecklistStep.objects.get(occurrence=occurrence, kind="verify")
    client.post(f"/maintenance/steps/{verify.pk}/tick/", {"note": ""})
    verify.refresh_from_db()
    # No target of shop-api in the catalog: nothing healthy to show, and it says so.
    assert verify.result == {"ok": False, "targets": []}
    client.post(f"/maintenance/occurrences/{occurrence.pk}/extend/", {"minutes": "30"})
    occurrence.refresh_from_db()
    assert occurrence.end_at == start + timedelta(hours=2, minutes=30)
    response = client.post(f"/maintenance/occurrences/{occurrence.pk}/end/")
    assert response.status_code == 302
    occurrence.refresh_from_db()
    assert occurrence.state == "completed"
    # Viewers read but cannot press.
    assert (
        client_for(viewer).post(f"/maintenance/occurrences/{occurrence.pk}/end/").status_code == 403
    )


def test_skip_and_move_one_occurrence_of_a_recurring_window(
    operator: Any, service: Service
) -> None:
    start = timezone.now() + timedelta(days=10)
    window = schedule(
        operator, [service], start, start + timedelta(hours=2), recurrence="FREQ=WEEKLY"
    )
    first, second = window.occurrences.order_by("start_at")[:2]
    actions.do_skip_occurrence(operator, first, "Release freeze")
    assert window.occurrences.filter(state="scheduled").count() == 8  # one more planned
    new_start = second.start_at + timedelta(days=1)
    actions.do_move_occurrence(operator, second, new_start, new_start + timedelta(hours=1), "")
    second.refresh_from_db()
    assert second.start_at == new_start
    assert second.stages.get(kind="in_progress").due_at == new_start
    assert first.stages.filter(outcome="skipped").count() == 4
