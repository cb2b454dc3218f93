"""State changes of the audit app itself: a manager marking a queued event reviewed."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.models import ReviewItem
from apps.audit.records import AuditTarget, record

EVENT_TYPE = "audit.event"
COMMENT_MAX_LENGTH = 2000


class ReviewRefused(Exception):
    """The review cannot be recorded; the message says why, for the page."""


def _target(item: ReviewItem) -> AuditTarget:
    event = item.event
    return AuditTarget(EVENT_TYPE, str(event.seq), f"#{event.seq} {event.action}"[:255])


def _refuse(actor: AbstractBaseUser, item: ReviewItem, why: str) -> ReviewRefused:
    record(
        "audit.review_refused",
        actor=actor,
        outcome=Outcome.DENIED,
        target=_target(item),
        reason=why,
        data={"rule": item.rule, "event_seq": item.event.seq},
    )
    return ReviewRefused(why)


def do_review_event(actor: AbstractBaseUser, item: ReviewItem, comment: str) -> ReviewItem:
    """Mark a queued event reviewed with the manager's comment, recorded as "audit.reviewed"
    in the same transaction. Nobody reviews their own action, and an item is reviewed once:
    both refusals are audited too."""
    comment = comment.strip()
    if not comment:
        raise ReviewRefused("Say what you checked: the comment is required.")
    if len(comment) > COMMENT_MAX_LENGTH:
        raise ReviewRefused(f"The comment is longer than {COMMENT_MAX_LENGTH} characters.")
    if item.event.actor_id is not None and item.event.actor_id == actor.pk:
        raise _refuse(actor, item, "You cannot review your own action: another manager must.")
    refusal = ""
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().select_related("event").get(pk=item.pk)
        if locked.reviewed_at is not None:
            refusal = f"Event #{locked.event.seq} was already reviewed."
        else:
            event = record(
                "audit.reviewed",
                actor=actor,
                target=_target(locked),
                reason=comment,
                data={"rule": locked.rule, "event_seq": locked.event.seq},
            )
            locked.reviewed_at = timezone.now()
            locked.reviewed_by = actor  # type: ignore[assignment]
            locked.comment = comment
            locked.review_seq = event.seq
            locked.save(update_fields=["reviewed_at", "reviewed_by", "comment", "review_seq"])
    if refusal:
        raise _refuse(actor, locked, refusal)
    return locked
