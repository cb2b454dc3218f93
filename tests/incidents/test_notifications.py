"""Notifications end to end: the rows each incident event writes, their delivery by email
(Django's locmem backend) and by a Slack-compatible webhook (a local HTTP receiver), the
retries and their outcome, and a real worker sending them after the commit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail

from apps.incidents.actions import (
    do_acknowledge_incident,
    do_post_update,
    do_resolve_incident,
)
from apps.incidents.choices import Channel, EntryKind, NotificationState, Visibility
from apps.incidents.escalation import escalate_overdue, remind_overdue_updates
from apps.incidents.models import EscalationLevel, EscalationPolicy, Incident, Notification
from apps.incidents.tasks import NOTIFICATION_RETRIES, send_notification
from tests.factories import ensure_incident_defaults, make_incident
from tests.support.waiting import wait_for
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.worker import Worker

T = datetime(2025, 3, 4, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    yield started
    started.stop()


@pytest.fixture
def webhook(receiver: WebhookReceiver) -> WebhookReceiver:
    receiver.reset()
    return receiver


@pytest.fixture
def policy(db: None, webhook: WebhookReceiver) -> EscalationPolicy:
    """The default policy with the webhook and one person per level (no password to hash:
    they never sign in here)."""
    ensure_incident_defaults()
    default = EscalationPolicy.objects.get(is_default=True)
    default.webhook_url = webhook.url
    default.save(update_fields=["webhook_url_encrypted"])
    for level in EscalationLevel.objects.filter(policy=default):
        person = User.objects.create(
            username=f"level{level.level}", email=f"level{level.level}@example.com"
        )
        level.users.set([person])
    return default


def rows(incident: Incident, event: EntryKind) -> list[tuple[str, str]]:
    return sorted(
        Notification.objects.filter(incident=incident, event=event).values_list(
            "channel", "recipient"
        )
    )


def send(notification: Notification) -> Notification:
    """The task as a worker runs it, retries included (eagerly: no waiting for backoff)."""
    send_notification.apply(args=(notification.pk,))
    notification.refresh_from_db()
    return notification


def test_each_event_writes_its_messages_to_the_right_people(
    operator: Any, policy: EscalationPolicy
) -> None:
    with time_machine.travel(T, tick=False) as clock:
        incident = make_incident(operator, "SEV-1", title="Checkout down")
        assert rows(incident, EntryKind.DECLARED) == [
            ("email", "level1@example.com"),
            ("webhook", "webhook"),
        ]

        clock.move_to(T + timedelta(minutes=5))
        escalate_overdue(T + timedelta(minutes=5))
        assert rows(incident, EntryKind.ESCALATED) == [
            ("email", "level2@example.com"),
            ("webhook", "webhook"),
        ]
        escalated = Notification.objects.filter(incident=incident, event=EntryKind.ESCALATED)
        assert {row.subject for row in escalated} == {
            f"[OpsPortal] SEV-1 #{incident.pk} escalated to level 2 (Engineering lead): "
            "Checkout down"
        }
        assert "Told: level2." in escalated[0].body

        clock.move_to(T + timedelta(minutes=15))
        remind_overdue_updates(T + timedelta(minutes=15))
        assert rows(incident, EntryKind.REMINDER) == [
            ("email", operator.email),
            ("webhook", "webhook"),
        ]

        acknowledger = User.objects.get(username="level2")
        do_acknowledge_incident(acknowledger, incident)
        told_so_far = [
            ("email", "level1@example.com"),
            ("email", "level2@example.com"),
            ("email", operator.email),
            ("webhook", "webhook"),
        ]
        assert rows(incident, EntryKind.ACKNOWLEDGED) == told_so_far
        acknowledged = Notification.objects.get(
            incident=incident, event=EntryKind.ACKNOWLEDGED, channel=Channel.WEBHOOK
        )
        assert "Acknowledged by: level2" in acknowledged.body

        do_post_update(
            operator,
            incident,
            visibility=Visibility.PUBLIC,
            current_status="Rolled back to 41.",
            next_steps="Watch the error rate.",
        )
        do_resolve_incident(operator, incident, current_status="Checkout works again.")
    updates = Notification.objects.filter(
        incident=incident, event=EntryKind.UPDATE, channel=Channel.WEBHOOK
    ).order_by("pk")
    assert [row.subject for row in updates] == [
        f"[OpsPortal] SEV-1 #{incident.pk} update: Checkout down",
        f"[OpsPortal] SEV-1 #{incident.pk} resolved: Checkout down",
    ]
    assert "Current status: Rolled back to 41." in updates[0].body
    assert "Next steps: Watch the error rate." in updates[0].body
    assert "Checkout works again." in updates[1].body
    assert f"/incidents/{incident.pk}/" in updates[1].body
    assert all(row.state == NotificationState.PENDING for row in Notification.objects.all())


def test_email_off_leaves_only_the_webhook(operator: Any, policy: EscalationPolicy) -> None:
    policy.email_enabled = False
    policy.save(update_fields=["email_enabled"])
    incident = make_incident(operator, "SEV-2")
    assert rows(incident, EntryKind.DECLARED) == [("webhook", "webhook")]


def test_it_sends_an_email_once(operator: Any, policy: EscalationPolicy) -> None:
    incident = make_incident(operator, "SEV-2", title="Search slow")
    email = Notification.objects.get(incident=incident, channel=Channel.EMAIL)
    sent = send(email)
    assert sent.state == NotificationState.SENT
    assert sent.attempts == 1
    assert sent.sent_at is not None
    [message] = mail.outbox
    assert message.to == ["level1@example.com"]
    assert message.subject == f"[OpsPortal] SEV-2 #{incident.pk} declared: Search slow"
    send(email)  # delivered again by the broker: not sent again
    assert len(mail.outbox) == 1


def test_a_webhook_that_fails_then_succeeds_is_sent_on_the_second_attempt(
    operator: Any, policy: EscalationPolicy, webhook: WebhookReceiver
) -> None:
    incident = make_incident(operator, "SEV-1", title="Checkout down")
    row = Notification.objects.get(incident=incident, channel=Channel.WEBHOOK)
    webhook.fail_next(1)

    sent = send(row)

    assert sent.state == NotificationState.SENT
    assert sent.attempts == 2
    assert sent.last_error == "webhook answered HTTP 500"  # kept: it did fail once
    assert webhook.requests == 2
    [text] = webhook.texts()
    assert text.startswith(f"*[OpsPortal] SEV-1 #{incident.pk} declared: Checkout down*\n")


def test_a_webhook_that_keeps_failing_ends_failed_with_its_last_error(
    operator: Any, policy: EscalationPolicy, webhook: WebhookReceiver
) -> None:
    incident = make_incident(operator, "SEV-1")
    row = Notification.objects.get(incident=incident, channel=Channel.WEBHOOK)
    webhook.fail_next(100)

    failed = send(row)

    assert failed.state == NotificationState.FAILED
    assert failed.attempts == NOTIFICATION_RETRIES + 1
    assert failed.last_error == "webhook answered HTTP 500"
    assert failed.sent_at is None
    assert webhook.requests == NOTIFICATION_RETRIES + 1
    assert webhook.bodies == []


def test_a_webhook_nobody_listens_on_fails_with_the_reason(
    operator: Any, policy: EscalationPolicy
) -> None:
    policy.webhook_url = "http://127.0.0.1:9/hooks/nowhere"  # the discard port: refused
    policy.save(update_fields=["webhook_url_encrypted"])
    incident = make_incident(operator, "SEV-3")
    failed = send(Notification.objects.get(incident=incident, channel=Channel.WEBHOOK))
    assert failed.state == NotificationState.FAILED
    assert failed.last_error.startswith("webhook: ")


def test_a_webhook_removed_before_sending_fails_saying_so(
    operator: Any, policy: EscalationPolicy
) -> None:
    incident = make_incident(operator, "SEV-3")
    policy.webhook_url = ""
    policy.save(update_fields=["webhook_url_encrypted"])
    failed = send(Notification.objects.get(incident=incident, channel=Channel.WEBHOOK))
    assert failed.state == NotificationState.FAILED
    assert failed.last_error == "the policy has no webhook any more"


def test_a_real_worker_sends_the_messages_after_the_commit(
    celery_worker: Worker, operator: Any, policy: EscalationPolicy, webhook: WebhookReceiver
) -> None:
    incident = make_incident(operator, "SEV-1", title="Payments failing")

    wait_for(lambda: webhook.texts(), timeout=30, what="the webhook to receive the message")
    [text] = webhook.texts()
    assert f"SEV-1 #{incident.pk} declared: Payments failing" in text

    def all_sent() -> bool:
        states = set(Notification.objects.filter(incident=incident).values_list("state", flat=True))
        return states == {NotificationState.SENT}

    wait_for(all_sent, timeout=30, what="both messages to be recorded as sent")
    assert sorted(
        Notification.objects.filter(incident=incident).values_list("channel", "attempts")
    ) == [("email", 1), ("webhook", 1)]
