"""Subscribers (double opt-in, their own copy of each stage of the windows on their
components, one-click unsubscribe), the webhook tried again after a failure, the "send a test
message" button, the status page's scheduled maintenance, the week view, and a beat tick
whose query count does not grow with the number of messages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.template import Context, Template
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.audit.records import verify_chain
from apps.incidents.actions import do_post_update
from apps.incidents.choices import Visibility
from apps.incidents.models import Notification
from apps.maintenance import beat
from apps.maintenance.choices import StageKind
from apps.maintenance.models import Stage, StageOutcome, Subscriber
from apps.services.models import Environment, Service
from apps.statuspage.models import StatusComponent
from tests.conftest import client_for
from tests.factories import make_incident
from tests.maintenance.helpers import schedule
from tests.support.webhook_receiver import WebhookReceiver

NOW = datetime(2025, 6, 1, 9, tzinfo=UTC)
HTML = "<b>read-only</b> & slow"


@pytest.fixture
def shop(db: None) -> StatusComponent:
    service = Service.objects.create(name="shop-api", slug="shop-api", team="Shop")
    return StatusComponent.objects.create(service=service, name="Shop", position=1)


@pytest.fixture
def search(db: None) -> StatusComponent:
    service = Service.objects.create(name="search", slug="search", team="Search")
    return StatusComponent.objects.create(service=service, name="Search", position=2)


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver().start()
    yield running
    running.stop()


@pytest.fixture
def webhook(receiver: WebhookReceiver, settings: Any) -> WebhookReceiver:
    receiver.reset()
    settings.MAINTENANCE_WEBHOOK_URL = receiver.url
    return receiver


Subscribe = Callable[..., Subscriber]


@pytest.fixture
def subscribe(django_capture_on_commit_callbacks: Any) -> Subscribe:
    """Subscribe and confirm through the public pages, as a visitor does."""

    def subscribe(email: str, **fields: Any) -> Subscriber:
        client = Client(enforce_csrf_checks=False)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/maintenance/subscribe/", {"email": email, **fields})
        assert response.status_code == 302
        assert "sent=1" in response["Location"]
        subscriber = Subscriber.objects.filter(email=email).latest("pk")
        assert subscriber.confirmed_at is None
        confirmation = mail.outbox[-1]
        link = f"/maintenance/subscribe/{subscriber.token}/"
        assert link in confirmation.body and confirmation.to == [email]
        # Opening the link (a mail scanner does) confirms nothing: the button does.
        assert "Confirm my subscription" in client.get(link).content.decode()
        subscriber.refresh_from_db()
        assert subscriber.confirmed_at is None
        assert client.post(link).status_code == 302
        subscriber.refresh_from_db()
        assert subscriber.confirmed_at is not None
        return subscriber

    return subscribe


def _window_on(service: Service, start: datetime, **fields: Any) -> Any:
    with time_machine.travel(NOW, tick=False):
        return schedule(fields.pop("owner"), [service], start, start + timedelta(hours=2), **fields)


def _tick(moment: datetime) -> None:
    with time_machine.travel(moment, tick=False):
        beat.tick(moment)


def test_subscribers_get_their_components_stages_and_unsubscribe_in_one_click(
    operator: Any, shop: StatusComponent, search: StatusComponent, subscribe: Subscribe
) -> None:
    everything = subscribe("all@example.org", scope="all")
    shop_only = subscribe("shop@example.org", scope="chosen", components=[shop.pk])
    subscribe("search@example.org", scope="chosen", components=[search.pk])
    mail.outbox.clear()
    window = _window_on(shop.service, NOW + timedelta(days=10), owner=operator, message=HTML)
    announce = Stage.objects.get(occurrence__window=window, kind=StageKind.ANNOUNCE)
    _tick(announce.due_at)
    by_address = {tuple(message.to): message for message in mail.outbox}
    assert set(by_address) == {
        (operator.email,),
        ("all@example.org",),
        ("shop@example.org",),
    }  # not the search subscriber: the window is not on their component
    copy = by_address[("shop@example.org",)]
    assert HTML in copy.body  # plain text, as typed
    assert "/status/" in copy.body and f"/maintenance/{window.pk}/" not in copy.body
    unsubscribe = f"/maintenance/unsubscribe/{shop_only.token}/"
    assert unsubscribe in copy.body
    assert copy.extra_headers["List-Unsubscribe"].endswith(f"{unsubscribe}>")
    assert copy.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    ids = [message.extra_headers["Message-ID"] for message in mail.outbox]
    assert len(ids) == len(set(ids))

    # One click from the mail client: a POST without a CSRF token.
    one_click = Client(enforce_csrf_checks=True)
    response = one_click.post(unsubscribe, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 302
    assert not Subscriber.objects.filter(pk=shop_only.pk).exists()
    assert "You are not subscribed" in one_click.get(unsubscribe).content.decode()
    assert AuditEvent.objects.filter(action="maintenance.unsubscribed").count() == 1

    mail.outbox.clear()
    reminder = Stage.objects.get(occurrence__window=window, kind=StageKind.REMIND)
    _tick(reminder.due_at)
    assert sorted(tuple(message.to) for message in mail.outbox) == [
        ("all@example.org",),
        (operator.email,),
    ]
    assert Subscriber.objects.filter(pk=everything.pk).exists()
    assert verify_chain().ok


def test_a_staging_only_window_is_not_mailed_to_the_public(
    operator: Any, shop: StatusComponent, subscribe: Subscribe
) -> None:
    subscribe("all@example.org", scope="all")
    mail.outbox.clear()
    staging = Environment.objects.create(name="staging", slug="staging")
    window = _window_on(
        shop.service, NOW + timedelta(days=10), owner=operator, environments=[staging]
    )
    _tick(Stage.objects.get(occurrence__window=window, kind=StageKind.ANNOUNCE).due_at)
    assert [message.to for message in mail.outbox] == [[operator.email]]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"email": "not an address", "scope": "all"}, "Enter a valid email address."),
        ({"email": "a@example.org", "scope": "chosen"}, "Choose at least one component"),
    ],
)
def test_a_bad_subscription_is_refused_and_saves_nothing(
    shop: StatusComponent, data: dict[str, str], expected: str
) -> None:
    response = Client().post("/maintenance/subscribe/", data)
    assert response.status_code == 400
    assert expected in response.content.decode()
    assert not Subscriber.objects.exists() and not mail.outbox


def test_confirming_replaces_the_earlier_subscription_and_a_stale_link_expires(
    shop: StatusComponent, search: StatusComponent, subscribe: Subscribe
) -> None:
    first = subscribe("me@example.org", scope="all")
    second = subscribe("me@example.org", scope="chosen", components=[search.pk])
    assert list(Subscriber.objects.values_list("pk", flat=True)) == [second.pk]
    assert first.pk != second.pk
    with time_machine.travel(datetime.now(UTC) - timedelta(days=8), tick=False):
        old = Subscriber.objects.create(email="late@example.org")
    response = Client().post(f"/maintenance/subscribe/{old.token}/")
    assert response.status_code == 410
    old.refresh_from_db()
    assert old.confirmed_at is None
    assert Client().get("/maintenance/subscribe/nope/").status_code == 404


def test_a_failed_webhook_post_is_tried_again_with_the_same_dedupe_key(
    operator: Any, shop: StatusComponent, webhook: WebhookReceiver
) -> None:
    window = _window_on(shop.service, NOW + timedelta(days=10), owner=operator)
    announce = Stage.objects.get(occurrence__window=window, kind=StageKind.ANNOUNCE)
    webhook.fail_next(2)
    _tick(announce.due_at)
    announce.refresh_from_db()
    assert announce.outcome == StageOutcome.SENT  # the email went; the webhook waits
    assert "webhook answered HTTP 500" in announce.note
    assert announce.webhook_retry_at == announce.due_at + timedelta(minutes=1)
    assert webhook.bodies == []
    _tick(announce.due_at + timedelta(minutes=1))  # attempt 2 fails too
    announce.refresh_from_db()
    assert announce.webhook_retry_at == announce.due_at + timedelta(minutes=6)
    _tick(announce.due_at + timedelta(minutes=2))  # not due yet: nothing
    assert webhook.requests == 2
    _tick(announce.due_at + timedelta(minutes=6))
    announce.refresh_from_db()
    assert [body["dedupe_key"] for body in webhook.bodies] == [announce.dedupe_key]
    assert announce.webhook_retry_at is None and announce.webhook_attempts == 3
    assert "Webhook sent on attempt 3." in announce.note
    _tick(announce.due_at + timedelta(hours=1))
    assert len(webhook.bodies) == 1
    actions = list(
        AuditEvent.objects.filter(action__startswith="maintenance.stage_webhook")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["maintenance.stage_webhook_failed", "maintenance.stage_webhook_sent"]


def test_the_webhook_gives_up_after_its_last_retry(
    operator: Any, shop: StatusComponent, webhook: WebhookReceiver
) -> None:
    window = _window_on(shop.service, NOW + timedelta(days=10), owner=operator)
    announce = Stage.objects.get(occurrence__window=window, kind=StageKind.ANNOUNCE)
    webhook.fail_next(10)
    moment = announce.due_at
    for minutes in (0, 1, 5, 15, 60):
        moment += timedelta(minutes=minutes)
        _tick(moment)
    announce.refresh_from_db()
    assert webhook.requests == 4 and announce.webhook_attempts == 4
    assert announce.webhook_retry_at is None
    assert "given up" in announce.note


def test_the_test_message_button_reaches_my_inbox_and_the_webhook(
    operator: Any, viewer: Any, shop: StatusComponent, webhook: WebhookReceiver
) -> None:
    window = _window_on(shop.service, NOW + timedelta(days=10), owner=operator, message=HTML)
    mail.outbox.clear()
    response = client_for(operator).post(f"/maintenance/{window.pk}/test-message/", follow=True)
    assert "Test message sent to olga-operator@example.com and the webhook." in (
        response.content.decode()
    )
    assert [message.subject.split(":")[0] for message in mail.outbox] == [
        "[Test] [OpsPortal] Planned maintenance"
    ]
    assert HTML in mail.outbox[0].body
    assert webhook.texts()[0].startswith("*[Test]")
    event = AuditEvent.objects.get(action="maintenance.test_message_sent")
    assert event.data["reached"] == ["olga-operator@example.com", "the webhook"]
    webhook.fail_next(1)
    refused = client_for(operator).post(f"/maintenance/{window.pk}/test-message/", follow=True)
    assert "The test message failed: webhook answered HTTP 500" in refused.content.decode()
    assert client_for(viewer).post(f"/maintenance/{window.pk}/test-message/").status_code == 403


def test_the_status_page_section_lists_announced_and_running_windows_escaped(
    operator: Any, shop: StatusComponent
) -> None:
    """The status page's section (tests/statuspage/test_maintenance_section.py has it on the
    page itself)."""
    page = Template("{% load maintenance_public %}{% maintenance_notices %}")
    window = _window_on(shop.service, NOW + timedelta(days=10), owner=operator, message=HTML)
    announce = Stage.objects.get(occurrence__window=window, kind=StageKind.ANNOUNCE)
    with time_machine.travel(announce.due_at - timedelta(hours=1), tick=False):
        before = page.render(Context())
    assert "Scheduled maintenance" not in before  # not announced yet
    assert "/maintenance/subscribe/" in before
    _tick(announce.due_at)
    with time_machine.travel(announce.due_at + timedelta(minutes=1), tick=False):
        after = page.render(Context())
    assert "Scheduled maintenance" in after and "Database upgrade" in after
    assert "&lt;b&gt;read-only&lt;/b&gt; &amp; slow" in after and HTML not in after


def test_the_week_view_shows_each_day_a_window_touches(
    operator: Any, viewer: Any, shop: StatusComponent
) -> None:
    start = datetime(2025, 6, 14, 23, tzinfo=UTC)  # Saturday 23:00 UTC until Sunday 01:00
    _window_on(shop.service, start, owner=operator)
    with time_machine.travel(NOW, tick=False):
        page = client_for(viewer).get("/maintenance/calendar/week/?day=2025-06-12")
    body = page.content.decode()
    assert page.status_code == 200
    assert "Week of 9 Jun–15 Jun 2025" in body
    assert body.count("23:00–01:00 Database upgrade") == 2
    with time_machine.travel(NOW, tick=False):
        bad = client_for(viewer).get("/maintenance/calendar/week/?day=yesterday")
    assert bad.status_code == 200 and "Week of" in bad.content.decode()


def test_a_tick_costs_the_same_queries_for_one_message_or_twenty(
    operator: Any, shop: StatusComponent, subscribe: Subscribe
) -> None:
    subscribe("all@example.org", scope="all")

    def tick_with(due: int) -> int:
        Stage.objects.all().delete()  # only the new windows' announcements are due
        windows = [
            _window_on(shop.service, NOW + timedelta(days=10), owner=operator) for _ in range(due)
        ]
        moment = max(
            Stage.objects.get(occurrence__window=w, kind=StageKind.ANNOUNCE).due_at for w in windows
        )
        with (
            time_machine.travel(moment, tick=False),
            CaptureQueriesContext(connection) as queries,
        ):
            counts = beat.tick(moment)
        assert counts.sent == due
        return len(queries)

    one = tick_with(1)
    twenty = tick_with(20)
    assert twenty == one, (one, twenty)


def test_an_incidents_public_updates_reach_its_components_subscribers_only(
    operator: Any, shop: StatusComponent, search: StatusComponent, subscribe: Subscribe
) -> None:
    everything = subscribe("all@example.org", scope="all")
    shop_only = subscribe("shop@example.org", scope="chosen", components=[shop.pk])
    subscribe("search@example.org", scope="chosen", components=[search.pk])
    incident = make_incident(operator, "SEV-2", services=[shop.service], title="Checkout down")

    do_post_update(operator, incident, visibility=Visibility.INTERNAL, current_status="Pool")
    assert not Notification.objects.filter(recipient__endswith="@example.org").exists()

    do_post_update(
        operator,
        incident,
        visibility=Visibility.PUBLIC,
        current_status="Checkout is failing for some customers.",
        eta="30 minutes",
    )
    notices = {
        notice.recipient: notice
        for notice in Notification.objects.filter(recipient__endswith="@example.org")
    }
    assert set(notices) == {"all@example.org", "shop@example.org"}
    for subscriber in (everything, shop_only):
        notice = notices[subscriber.email]
        assert notice.subject == "[Status] Update: Checkout down"
        assert "Checkout is failing for some customers." in notice.body
        assert "ETA: 30 minutes" in notice.body
        assert f"/maintenance/unsubscribe/{subscriber.token}/" in notice.body
        # Nothing internal goes outside: no commander, no link into the portal.
        assert "Commander" not in notice.body and f"/incidents/{incident.pk}/" not in notice.body
