"""The communication plan: announce at T−7 days, remind at T−1 day, "in progress" at the
start, "completed" at the end (the runbooks' defaults), each a Stage row with its due
instant, sent by the beat by email (the owner and MAINTENANCE_NOTIFY_EMAILS) and to the
Slack-compatible webhook (MAINTENANCE_WEBHOOK_URL); the status page reads the windows
themselves (hooks.py).

Exactly once, and what happens when a worker dies
-------------------------------------------------
The beat runs under an advisory lock (tasks.py), and the due stages are first **claimed**,
up to CHUNK at a time, with one conditional UPDATE (``claimed_at IS NULL → now … RETURNING
id``, committed on its own): two ticks in the same minute, or two beats, cannot both win a
stage. Then the chunk is sent (one mail connection), then the outcomes are recorded in one
transaction (one bulk UPDATE, the audit records in bulk): a tick costs the same dozen
queries for 1 or 25 messages.

A worker that dies after claiming and before recording leaves claimed, unrecorded stages
(at most one chunk: the price of batching is that a death mid-chunk also leaves the
chunk's not-yet-sent stages unconfirmed rather than pending).
The portal cannot know whether the message left, and it chooses **at most once**: such a
stage is never sent again automatically; after MAINTENANCE_CLAIM_TIMEOUT the beat records it
as *unconfirmed*, and the window page shows it so that a person checks. Every message
carries the stage's dedupe key (the email's Message-ID, a ``dedupe_key`` field in the
webhook payload), so a person who re-sends by hand, or a relay that retries, produces a
repeat that receivers can drop. A death between sending and recording therefore means the
stage went out exactly once.

A stage whose time passed while the portal was down (more than MAINTENANCE_LATE_AFTER late)
is sent late with a note saying so, unless its occurrence is already over: then it is
skipped with that reason recorded (the "completed" stage is still sent: people who were told
it started are told it ended).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection, transaction
from django.db.models import F
from django.urls import reverse

from apps.audit.records import AuditTarget, EventDraft, record, record_many
from apps.incidents.notifications import DeliveryFailed, post_webhook
from apps.maintenance import subscriptions
from apps.maintenance.choices import OccurrenceState, StageKind
from apps.maintenance.models import Occurrence, Stage, StageOutcome, Window

logger = logging.getLogger(__name__)

BEAT_ACTOR = "maintenance beat"


def plan(occurrence: Occurrence, now: datetime) -> list[Stage]:
    """The four stages of a new occurrence. A short-notice occurrence is announced at once
    (saying why); its reminder is skipped when the announcement already comes within a day."""
    notice: timedelta = settings.MAINTENANCE_NOTICE
    remind_before: timedelta = settings.MAINTENANCE_REMIND_BEFORE
    announce_at = occurrence.start_at - notice
    remind_at = occurrence.start_at - remind_before
    stages = [
        Stage(occurrence=occurrence, kind=StageKind.ANNOUNCE, due_at=max(announce_at, now)),
        Stage(occurrence=occurrence, kind=StageKind.REMIND, due_at=remind_at),
        Stage(occurrence=occurrence, kind=StageKind.IN_PROGRESS, due_at=occurrence.start_at),
        Stage(occurrence=occurrence, kind=StageKind.COMPLETED, due_at=occurrence.end_at),
    ]
    if remind_at <= now:
        reminder = stages[1]
        reminder.claimed_at = reminder.finished_at = now
        reminder.outcome = StageOutcome.SKIPPED
        reminder.note = "Less than a day's notice: the announcement is the reminder."
    return Stage.objects.bulk_create(stages)


def _when(occurrence: Occurrence) -> str:
    zone = occurrence.window.zone
    start = occurrence.start_at.astimezone(zone)
    end = occurrence.end_at.astimezone(zone)
    return (
        f"{start:%a %d %b %Y %H:%M}–{end:%H:%M %Z} ({occurrence.window.time_zone}); "
        f"{occurrence.start_at:%H:%M}–{occurrence.end_at:%H:%M} UTC"
    )


HEADLINES = {
    StageKind.ANNOUNCE: "Planned maintenance",
    StageKind.REMIND: "Reminder: maintenance tomorrow",
    StageKind.IN_PROGRESS: "Maintenance in progress",
    StageKind.COMPLETED: "Maintenance completed: all systems operational",
}


def message(stage: Stage, late_note: str = "", *, unsubscribe: str = "") -> tuple[str, str]:
    """Subject and plain-text body (the window's message is text: never interpreted as HTML
    here, and an email client shows it as typed). A subscriber's copy (``unsubscribe``, its
    link) points at the public status page instead of the portal."""
    occurrence = stage.occurrence
    window = occurrence.window
    subject = f"[OpsPortal] {HEADLINES[StageKind(stage.kind)]}: {window.title}"[:300]
    services = ", ".join(sorted(service.name for service in window.services.all()))
    lines = [
        f"When: {_when(occurrence)}",
        f"Services: {services}",
        f"Expected impact: {window.get_impact_display()}",
        "",
        window.message,
    ]
    if stage.kind == StageKind.ANNOUNCE and occurrence.short_notice:
        days = settings.MAINTENANCE_NOTICE.days
        lines += ["", f"Short notice (less than {days} days): {window.short_notice_reason}"]
    if late_note:
        lines += ["", late_note]
    if unsubscribe:
        lines += [
            "",
            f"Status page: {settings.PORTAL_BASE_URL}{reverse('statuspage:page')}",
            f"Unsubscribe: {unsubscribe}",
        ]
    else:
        lines += ["", f"{settings.PORTAL_BASE_URL}{window.get_absolute_url()}"]
    return subject, "\n".join(lines)


def recipients(stage: Stage) -> list[str]:
    """The team's addresses: the owner and MAINTENANCE_NOTIFY_EMAILS (subscribers get their
    own copy each, see ``deliver``)."""
    owner = stage.occurrence.window.owner
    addresses = [owner.email] if owner.email else []
    for address in settings.MAINTENANCE_NOTIFY_EMAILS:
        if address not in addresses:
            addresses.append(address)
    return addresses


def _emails(
    stage: Stage, subject: str, body: str, late_note: str, audience: subscriptions.Audience
) -> list[EmailMessage]:
    emails = []
    if addresses := recipients(stage):
        emails.append(
            EmailMessage(
                subject,
                body,
                to=addresses,
                headers={"Message-ID": f"<{stage.dedupe_key}@opsportal>"},
            )
        )
    for person in audience.of(stage.occurrence.window):
        link = subscriptions.unsubscribe_url(person)
        public_subject, public_body = message(stage, late_note, unsubscribe=link)
        emails.append(
            EmailMessage(
                public_subject,
                public_body,
                to=[person.email],
                headers={
                    "Message-ID": f"<{stage.dedupe_key}.{person.pk}@opsportal>",
                    "List-Unsubscribe": f"<{link}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
            )
        )
    return emails


def deliver(
    stage: Stage,
    subject: str,
    body: str,
    *,
    late_note: str = "",
    audience: subscriptions.Audience | None = None,
    mail: BaseEmailBackend | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Send by email (the team, then each subscriber) and to the webhook; returns what
    failed. The stage still counts as sent: a failed email is reported on the window page,
    a failed webhook post is tried again later by the beat (``retry_webhooks``)."""
    failures = []
    emails = _emails(stage, subject, body, late_note, audience or subscriptions.Audience())
    failed_emails = 0
    for email in emails:
        email.connection = mail
        try:
            email.send()
        except OSError as exc:
            failed_emails += 1
            if failed_emails == 1:
                failures.append(f"email to {', '.join(email.to)}: {exc}")
    if failed_emails > 1:
        failures.append(f"{failed_emails - 1} more emails failed")
    if settings.MAINTENANCE_WEBHOOK_URL:
        stage.webhook_attempts = 1
        try:
            post_webhook(
                settings.MAINTENANCE_WEBHOOK_URL, subject, body, dedupe_key=stage.dedupe_key
            )
        except DeliveryFailed as exc:
            failures.append(f"{exc} (tried again in {WEBHOOK_RETRY_DELAYS[0]})")
            if now is not None:
                stage.webhook_retry_at = now + WEBHOOK_RETRY_DELAYS[0]
    return failures


# After the first failed webhook post, try again after these delays (then give up).
WEBHOOK_RETRY_DELAYS = [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15)]
# Stages claimed, sent and recorded together: bounds what a dying worker leaves unconfirmed.
CHUNK = 25


@dataclass
class Sent:
    sent: int = 0
    late: int = 0
    skipped: int = 0
    unconfirmed: int = 0
    webhook_retries: int = 0


def _claim(stage_ids: list[int], now: datetime) -> list[int]:
    """One conditional UPDATE, committed on its own: the stages this tick won."""
    table = connection.ops.quote_name(Stage._meta.db_table)
    marks = ", ".join(["%s"] * len(stage_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET claimed_at = %s "  # noqa: S608  (names, not values)
            f"WHERE claimed_at IS NULL AND id IN ({marks}) RETURNING id",
            [connection.ops.adapt_datetimefield_value(now), *stage_ids],
        )
        return [row[0] for row in cursor.fetchall()]


def _draft(stage: Stage) -> EventDraft:
    return EventDraft(
        f"maintenance.stage_{stage.outcome}",
        actor_label=BEAT_ACTOR,
        target=AuditTarget(
            "maintenance.window", str(stage.occurrence.window_id), stage.occurrence.window.title
        ),
        reason=stage.note,
        data={"stage": stage.pk, "kind": stage.kind, "occurrence": stage.occurrence_id},
    )


RECORDED = ["finished_at", "outcome", "note", "late", "webhook_attempts", "webhook_retry_at"]


def _record(stages: list[Stage]) -> None:
    """The outcomes of a chunk, with their audit records: one transaction, a fixed number of
    queries."""
    if not stages:
        return
    # Stages with the same outcome share one UPDATE (usually all of a chunk: "sent", no
    # note); cheaper to build than bulk_update's CASE per field and row.
    groups: dict[tuple[object, ...], list[int]] = {}
    for stage in stages:
        values = tuple(getattr(stage, name) for name in RECORDED)
        groups.setdefault(values, []).append(stage.pk)
    with transaction.atomic():
        for values, ids in groups.items():
            Stage.objects.filter(pk__in=ids).update(**dict(zip(RECORDED, values, strict=True)))
        record_many([_draft(stage) for stage in stages])


LATE_NOTE = "Sent late: the portal was not running when it was due."


def _late_note(stage: Stage) -> str:
    return (
        f"Sent late: this message was due at {stage.due_at:%Y-%m-%d %H:%M} UTC; the portal "
        "was not running then."
    )


def _settle(stage: Stage, now: datetime, outcome: str, note: str, *, late: bool = False) -> None:
    stage.finished_at = now
    stage.outcome = outcome
    stage.note = note
    stage.late = late


def _send(
    stage: Stage, now: datetime, audience: subscriptions.Audience, mail: BaseEmailBackend
) -> None:
    """Decide, send and settle (in memory) one claimed stage."""
    occurrence = stage.occurrence
    over = occurrence.state == OccurrenceState.COMPLETED or occurrence.end_at <= now
    if occurrence.state in (OccurrenceState.SKIPPED, OccurrenceState.CANCELLED):
        _settle(stage, now, StageOutcome.SKIPPED, f"The occurrence was {occurrence.state}.")
        return
    if over and stage.kind != StageKind.COMPLETED:
        _settle(
            stage,
            now,
            StageOutcome.SKIPPED,
            f"Due {stage.due_at:%Y-%m-%d %H:%M} UTC, but the window was already over when the "
            "portal got to it (it was not running).",
        )
        return
    late = now - stage.due_at > settings.MAINTENANCE_LATE_AFTER
    late_note = _late_note(stage) if late else ""
    subject, body = message(stage, late_note)
    failures = deliver(
        stage, subject, body, late_note=late_note, audience=audience, mail=mail, now=now
    )
    # The note names no instant (the due time is on the row): stages settled alike share
    # one UPDATE in ``_record``.
    late_word = LATE_NOTE if late else ""
    note = "; ".join([late_word, *(f"Failed: {failure}" for failure in failures)]).strip("; ")
    _settle(stage, now, StageOutcome.SENT, note, late=late)


def _send_chunk(stage_ids: list[int], now: datetime, counts: Sent) -> None:
    won = _claim(stage_ids, now)
    if not won:
        return
    stages = list(
        Stage.objects.filter(pk__in=won)
        .select_related("occurrence__window__owner")
        .prefetch_related("occurrence__window__services", "occurrence__window__environments")
        .order_by("due_at", "pk")
    )
    audience = subscriptions.audience({stage.occurrence.window for stage in stages})
    mail = get_connection()
    try:
        mail.open()
    except OSError as exc:
        logger.warning("mail connection failed: %s", exc)
    try:
        for stage in stages:
            _send(stage, now, audience, mail)
    finally:
        mail.close()
    _record(stages)
    for stage in stages:
        if stage.outcome == StageOutcome.SENT:
            counts.sent += 1
            counts.late += stage.late
        else:
            counts.skipped += 1


def retry_webhooks(now: datetime, limit: int) -> int:
    """Post again the stages whose webhook post failed (same text, same dedupe key), each
    attempt claimed by a conditional UPDATE; give up after the last delay. Rare: one stage
    at a time."""
    tried = 0
    for stage in (
        Stage.objects.webhook_retries(now)
        .select_related("occurrence__window__owner")
        .prefetch_related("occurrence__window__services")
        .order_by("webhook_retry_at")[:limit]
    ):
        claimed = Stage.objects.filter(pk=stage.pk, webhook_retry_at=stage.webhook_retry_at).update(
            webhook_retry_at=None, webhook_attempts=F("webhook_attempts") + 1
        )
        if not claimed or not settings.MAINTENANCE_WEBHOOK_URL:
            continue
        tried += 1
        attempt = stage.webhook_attempts + 1
        subject, body = message(stage, _late_note(stage) if stage.late else "")
        retry_at = None
        try:
            post_webhook(
                settings.MAINTENANCE_WEBHOOK_URL, subject, body, dedupe_key=stage.dedupe_key
            )
            note, outcome = f"Webhook sent on attempt {attempt}.", "sent"
        except DeliveryFailed as exc:
            outcome = "failed"
            if attempt <= len(WEBHOOK_RETRY_DELAYS):
                retry_at = now + WEBHOOK_RETRY_DELAYS[attempt - 1]
                note = (
                    f"Webhook attempt {attempt} failed: {exc} "
                    f"(tried again at {retry_at:%H:%M} UTC)."
                )
            else:
                note = f"Webhook attempt {attempt} failed: {exc}; given up."
        with transaction.atomic():
            Stage.objects.filter(pk=stage.pk).update(
                note=f"{stage.note}; {note}".strip("; "), webhook_retry_at=retry_at
            )
            record(
                f"maintenance.stage_webhook_{outcome}",
                actor=None,
                actor_label=BEAT_ACTOR,
                target=AuditTarget(
                    "maintenance.window",
                    str(stage.occurrence.window_id),
                    stage.occurrence.window.title,
                ),
                reason=note,
                data={"stage": stage.pk, "kind": stage.kind, "attempt": attempt},
            )
    return tried


def send_due(now: datetime, limit: int = 200) -> Sent:
    """Every due, unclaimed stage (through the partial index on due_at), oldest first, in
    chunks; then the stale claims, then the webhook posts to try again."""
    counts = Sent()
    due = list(Stage.objects.due(now).order_by("due_at").values_list("pk", flat=True)[:limit])
    for offset in range(0, len(due), CHUNK):
        _send_chunk(due[offset : offset + CHUNK], now, counts)
    stale = list(
        Stage.objects.unconfirmed(now - settings.MAINTENANCE_CLAIM_TIMEOUT)
        .select_related("occurrence__window")
        .order_by("pk")[:limit]
    )
    for stage in stale:
        _settle(
            stage,
            now,
            StageOutcome.UNCONFIRMED,
            f"Claimed at {stage.claimed_at:%H:%M:%S} UTC by a worker that stopped before "
            "recording: it may or may not have gone out, and is not sent again (at most "
            "once). Check the mailbox or the channel.",
        )
    _record(stale)
    counts.unconfirmed = len(stale)
    counts.webhook_retries = retry_webhooks(now, limit)
    return counts


def send_test(window: Window, address: str) -> tuple[list[str], list[str]]:
    """A test of the channels: the announcement of the window's next (or last) occurrence,
    marked as a test, to ``address`` and the webhook. Returns (reached, failures)."""
    occurrence = window.occurrences.order_by("-state", "start_at").first()
    stage = Stage(
        occurrence=occurrence
        or Occurrence(window=window, start_at=window.start_at, end_at=window.end_at),
        kind=StageKind.ANNOUNCE,
        due_at=window.start_at,
    )
    subject, body = message(stage)
    subject = f"[Test] {subject}"
    body = f"This is a test message: nothing is planned or changed by it.\n\n{body}"
    reached, failures = [], []
    if address:
        try:
            EmailMessage(subject, body, to=[address]).send()
            reached.append(address)
        except OSError as exc:
            failures.append(f"email to {address}: {exc}")
    if settings.MAINTENANCE_WEBHOOK_URL:
        try:
            post_webhook(settings.MAINTENANCE_WEBHOOK_URL, subject, body)
            reached.append("the webhook")
        except DeliveryFailed as exc:
            failures.append(str(exc))
    return reached, failures
