"""The communication plan: announce at T−7 days, remind at T−1 day, "in progress" at the
start, "completed" at the end (the runbooks' defaults), each a Stage row with its due
instant, sent by the beat by email (the owner and MAINTENANCE_NOTIFY_EMAILS) and to the
Slack-compatible webhook (MAINTENANCE_WEBHOOK_URL); the status page reads the windows
themselves (hooks.py).

Exactly once, and what happens when a worker dies
-------------------------------------------------
The beat runs under an advisory lock (tasks.py), and each stage is first **claimed** with a
conditional UPDATE (``claimed_at IS NULL → now``, committed on its own): two ticks in the
same minute, or two beats, cannot both win it. Then it is sent, then the outcome recorded.

A worker that dies after claiming and before recording leaves a claimed, unrecorded stage.
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
from django.core.mail import EmailMessage
from django.db import transaction

from apps.audit.records import AuditTarget, record
from apps.incidents.notifications import DeliveryFailed, post_webhook
from apps.maintenance.choices import OccurrenceState, StageKind
from apps.maintenance.models import Occurrence, Stage, StageOutcome

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


def message(stage: Stage, late_note: str = "") -> tuple[str, str]:
    """Subject and plain-text body (the window's message is text: never interpreted as HTML
    here, and an email client shows it as typed)."""
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
    lines += ["", f"{settings.PORTAL_BASE_URL}{window.get_absolute_url()}"]
    return subject, "\n".join(lines)


def recipients(stage: Stage) -> list[str]:
    owner = stage.occurrence.window.owner
    addresses = [owner.email] if owner.email else []
    for address in settings.MAINTENANCE_NOTIFY_EMAILS:
        if address not in addresses:
            addresses.append(address)
    return addresses


def deliver(stage: Stage, subject: str, body: str) -> list[str]:
    """Send by email and to the webhook; returns what failed (the stage still counts as sent:
    a failed channel is reported on the window page, not retried into a duplicate)."""
    failures = []
    addresses = recipients(stage)
    if addresses:
        email = EmailMessage(
            subject,
            body,
            to=addresses,
            headers={"Message-ID": f"<{stage.dedupe_key}@opsportal>"},
        )
        try:
            email.send()
        except OSError as exc:
            failures.append(f"email: {exc}")
    if settings.MAINTENANCE_WEBHOOK_URL:
        try:
            post_webhook(
                settings.MAINTENANCE_WEBHOOK_URL, subject, body, dedupe_key=stage.dedupe_key
            )
        except DeliveryFailed as exc:
            failures.append(str(exc))
    return failures


@dataclass
class Sent:
    sent: int = 0
    late: int = 0
    skipped: int = 0
    unconfirmed: int = 0


def _claim(stage_id: int, now: datetime) -> bool:
    # Its own statement, committed at once: the claim is what makes it exactly once.
    return bool(Stage.objects.filter(pk=stage_id, claimed_at__isnull=True).update(claimed_at=now))


def _record(stage: Stage, now: datetime, outcome: str, note: str, *, late: bool = False) -> None:
    stage.finished_at = now
    stage.outcome = outcome
    stage.note = note
    stage.late = late
    with transaction.atomic():
        stage.save(update_fields=["finished_at", "outcome", "note", "late"])
        record(
            f"maintenance.stage_{outcome}",
            actor=None,
            actor_label=BEAT_ACTOR,
            target=AuditTarget(
                "maintenance.window", str(stage.occurrence.window_id), stage.occurrence.window.title
            ),
            reason=note,
            data={"stage": stage.pk, "kind": stage.kind, "occurrence": stage.occurrence_id},
        )


def send_stage(stage_id: int, now: datetime) -> str:
    """Claim, send, record one due stage. Returns the outcome ("" when another tick had it)."""
    if not _claim(stage_id, now):
        return ""
    stage = Stage.objects.select_related("occurrence__window__owner").get(pk=stage_id)
    occurrence = stage.occurrence
    over = occurrence.state in (OccurrenceState.COMPLETED,) or occurrence.end_at <= now
    if occurrence.state in (OccurrenceState.SKIPPED, OccurrenceState.CANCELLED):
        _record(stage, now, StageOutcome.SKIPPED, f"The occurrence was {occurrence.state}.")
        return StageOutcome.SKIPPED
    if over and stage.kind != StageKind.COMPLETED:
        _record(
            stage,
            now,
            StageOutcome.SKIPPED,
            f"Due {stage.due_at:%Y-%m-%d %H:%M} UTC, but the window was already over when the "
            "portal got to it (it was not running).",
        )
        return StageOutcome.SKIPPED
    late = now - stage.due_at > settings.MAINTENANCE_LATE_AFTER
    late_note = (
        f"Sent late: this message was due at {stage.due_at:%Y-%m-%d %H:%M} UTC; the portal "
        "was not running then."
        if late
        else ""
    )
    subject, body = message(stage, late_note)
    failures = deliver(stage, subject, body)
    note = "; ".join([late_note, *(f"Failed: {failure}" for failure in failures)]).strip("; ")
    _record(stage, now, StageOutcome.SENT, note, late=late)
    return StageOutcome.SENT


def send_due(now: datetime, limit: int = 200) -> Sent:
    """Every due, unclaimed stage (through the partial index on due_at), oldest first."""
    counts = Sent()
    due = list(Stage.objects.due(now).order_by("due_at").values_list("pk", flat=True)[:limit])
    for stage_id in due:
        outcome = send_stage(stage_id, now)
        if outcome == StageOutcome.SENT:
            counts.sent += 1
        elif outcome == StageOutcome.SKIPPED:
            counts.skipped += 1
    stale = list(
        Stage.objects.unconfirmed(now - settings.MAINTENANCE_CLAIM_TIMEOUT)
        .select_related("occurrence__window")
        .order_by("pk")[:limit]
    )
    for stage in stale:
        _record(
            stage,
            now,
            StageOutcome.UNCONFIRMED,
            f"Claimed at {stage.claimed_at:%H:%M:%S} UTC by a worker that stopped before "
            "recording: it may or may not have gone out, and is not sent again (at most "
            "once). Check the mailbox or the channel.",
        )
        counts.unconfirmed += 1
    return counts
