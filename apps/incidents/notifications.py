"""Telling people about incidents: by email and through the escalation policy's
Slack-compatible incoming webhook. Each message is a Notification row, written in the
transaction of the change it reports and sent by a worker after the commit, with retries;
the row keeps the outcome (sent, failed) and the number of attempts."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from apps.common.crypto import UnreadableSecret
from apps.incidents.choices import Channel, EntryKind, IncidentState, NotificationState
from apps.incidents.models import EscalationLevel, Incident, Notification, TimelineEntry

logger = logging.getLogger(__name__)

WEBHOOK_RECIPIENT = "webhook"
WEBHOOK_TIMEOUT_SECONDS = 10

SUBJECTS = {
    EntryKind.DECLARED: "declared",
    EntryKind.ACKNOWLEDGED: "acknowledged",
    EntryKind.ESCALATED: "escalated to you",
    EntryKind.UPDATE: "update",
    EntryKind.REMINDER: "an update is overdue",
}


class DeliveryFailed(Exception):
    pass


def level_emails(incident: Incident, levels: list[int]) -> list[str]:
    """The addresses of the people of these levels of the incident's policy (directly or
    through a group), without duplicates."""
    if incident.policy_id is None or not levels:
        return []
    chosen = EscalationLevel.objects.filter(policy_id=incident.policy_id, level__in=levels)
    people = User.objects.filter(
        Q(pk__in=chosen.values("users")) | Q(groups__in=chosen.values("groups")),
        is_active=True,
    ).exclude(email="")
    return sorted(set(people.values_list("email", flat=True)))


def recipients(incident: Incident, event: EntryKind, level: int | None) -> list[str]:
    """Who hears of ``event``: the new level when declaring or escalating; the commander
    for a reminder; everyone told so far (and the commander) for the rest."""
    if event == EntryKind.REMINDER:
        return [incident.commander.email] if incident.commander.email else []
    if event in (EntryKind.DECLARED, EntryKind.ESCALATED):
        return level_emails(incident, [level or incident.escalation_level])
    told = level_emails(incident, list(range(1, incident.escalation_level + 1)))
    if incident.commander.email and incident.commander.email not in told:
        told.append(incident.commander.email)
    return told


def message(incident: Incident, event: EntryKind, entry: TimelineEntry | None) -> tuple[str, str]:
    from apps.incidents.actions import portal_url

    what = SUBJECTS.get(event, event.label)
    if event == EntryKind.UPDATE and incident.state == IncidentState.RESOLVED:
        # The final update that resolve posts: the one message people wait for.
        what = "resolved"
    elif event == EntryKind.ESCALATED and entry is not None and entry.data.get("level"):
        what = f"escalated to level {entry.data['level']} ({entry.data.get('name', '')})"
    subject = f"[OpsPortal] {incident.severity.key} #{incident.pk} {what}: {incident.title}"[:300]
    lines = [
        f"{incident.severity} — {incident.get_state_display()}",
        f"Commander: {incident.commander.get_username()}",
    ]
    if incident.customer_impact and event == EntryKind.DECLARED:
        lines.append(f"Customer impact: {incident.customer_impact}")
    if event == EntryKind.ACKNOWLEDGED and incident.acknowledged_by is not None:
        lines.append(f"Acknowledged by: {incident.acknowledged_by.get_username()}")
    if entry is not None and entry.kind == EntryKind.UPDATE:
        lines += [
            f"Current status: {entry.current_status}",
            *([f"Findings: {entry.findings}"] if entry.findings else []),
            *([f"Next steps: {entry.next_steps}"] if entry.next_steps else []),
            *([f"ETA: {entry.eta}"] if entry.eta else []),
        ]
    elif entry is not None and entry.text:
        lines.append(entry.text)
    lines.append(portal_url(incident))
    return subject, "\n".join(lines)


# Who else hears of an incident's public updates, with the footer of each one's message (an
# unsubscribe link): the status page's subscribers, which apps.maintenance registers.
PublicAudience = Callable[[Incident], list[tuple[str, str]]]
_public_audiences: list[PublicAudience] = []


def register_public_audience(audience: PublicAudience) -> PublicAudience:
    _public_audiences.append(audience)
    return audience


def public_message(incident: Incident, entry: TimelineEntry) -> tuple[str, str]:
    """A public update as the status page says it: nothing internal (no commander, no
    portal link), for people outside the team."""
    what = "Resolved" if incident.state == IncidentState.RESOLVED else "Update"
    subject = f"[Status] {what}: {incident.title}"[:300]
    lines = [entry.current_status or entry.text]
    if entry.next_steps:
        lines.append(f"Next steps: {entry.next_steps}")
    if entry.eta:
        lines.append(f"ETA: {entry.eta}")
    lines.append(f"{settings.PORTAL_BASE_URL}{reverse('statuspage:page')}")
    return subject, "\n".join(lines)


def notify(
    incident: Incident,
    event: EntryKind,
    *,
    level: int | None = None,
    entry: TimelineEntry | None = None,
) -> list[Notification]:
    """Record the messages about ``event`` and send them once the transaction commits."""
    subject, body = message(incident, event, entry)
    rows = [
        Notification(
            incident=incident,
            event=event,
            channel=Channel.EMAIL,
            recipient=address,
            subject=subject,
            body=body,
        )
        for address in (
            recipients(incident, event, level)
            if incident.policy is None or incident.policy.email_enabled
            else []
        )
    ]
    if entry is not None and entry.is_public:
        told = {row.recipient for row in rows}
        public_subject, public_body = public_message(incident, entry)
        for audience in _public_audiences:
            for address, footer in audience(incident):
                if address not in told:
                    told.add(address)
                    rows.append(
                        Notification(
                            incident=incident,
                            event=event,
                            channel=Channel.EMAIL,
                            recipient=address,
                            subject=public_subject,
                            body=public_body + footer,
                        )
                    )
    if incident.policy is not None and incident.policy.webhook_url_encrypted:
        rows.append(
            Notification(
                incident=incident,
                event=event,
                channel=Channel.WEBHOOK,
                recipient=WEBHOOK_RECIPIENT,
                subject=subject,
                body=body,
            )
        )
    created = Notification.objects.bulk_create(rows)
    if created:
        from apps.incidents.tasks import send_notification

        ids = [row.pk for row in created]
        transaction.on_commit(lambda: [send_notification.delay(pk) for pk in ids])
    return created


def deliver(notification: Notification) -> None:
    """One attempt; raises DeliveryFailed with the reason when it did not go out."""
    if notification.channel == Channel.EMAIL:
        try:
            send_mail(notification.subject, notification.body, None, [notification.recipient])
        except OSError as exc:
            raise DeliveryFailed(f"email: {exc}") from exc
        return
    policy = notification.incident.policy
    try:
        url = policy.webhook_url if policy is not None else ""
    except UnreadableSecret as exc:
        raise DeliveryFailed(f"webhook: {exc} Set the webhook URL again.") from exc
    if not url:
        raise DeliveryFailed("the policy has no webhook any more")
    post_webhook(url, notification.subject, notification.body)


def post_webhook(url: str, subject: str, body: str, **extra: str) -> None:
    """POST one message to a Slack-compatible incoming webhook (``extra`` keys, such as a
    dedupe key, go beside ``text``); raises DeliveryFailed with the reason. The maintenance
    windows send their stages through it too."""
    payload = json.dumps({"text": f"*{subject}*\n{body}", **extra}).encode()
    request = urllib.request.Request(
        url, data=payload, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            if not 200 <= response.status < 300:
                raise DeliveryFailed(f"webhook answered HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"webhook answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryFailed(f"webhook: {exc}") from exc


def attempt(notification_id: int, *, last_try: bool) -> bool:
    """Try to send one pending notification and record the outcome. Returns whether it is
    done (sent, or failed for good), so that the caller knows whether to retry."""
    notification = (
        Notification.objects.select_related("incident__policy")
        .filter(pk=notification_id, state=NotificationState.PENDING)
        .first()
    )
    if notification is None:
        return True
    # Claim this attempt: a message delivered twice by the broker is sent once.
    claimed = Notification.objects.filter(
        pk=notification.pk, state=NotificationState.PENDING, attempts=notification.attempts
    ).update(attempts=F("attempts") + 1)
    if not claimed:
        return True
    notification.attempts += 1
    try:
        deliver(notification)
    except DeliveryFailed as exc:
        notification.last_error = str(exc)[:500]
        if last_try:
            notification.state = NotificationState.FAILED
        notification.save(update_fields=["last_error", "state"])
        logger.warning("notification %s: %s", notification.pk, exc)
        return last_try
    notification.state = NotificationState.SENT
    notification.sent_at = timezone.now()
    notification.save(update_fields=["state", "sent_at", "last_error"])
    return True
