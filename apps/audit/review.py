"""The manager review queue: which events are sensitive enough for a manager to review, and
putting them in the queue as they are written.

The rules read only the event and, for a request of a restore or a scale, whether its
operation is in production: they run for every event ``record`` writes, so they cost nothing
for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet

from apps.audit.choices import Outcome, ReviewRule
from apps.audit.models import AuditEvent, ReviewItem

# The events that request an operation: first asked for ("requested" when it needs approval,
# "queued" when not). The "queued" after an approval carries "approved_by" and is the same
# request again, so it does not enter a second time.
REQUEST_ACTIONS = {"operation.requested", "operation.queued"}
RESTORE_KINDS = {"backups.restore"}
SCALE_KINDS = {"services.scale"}
# A change of someone's roles: the form-saving helper writes "user.changed" with the fields
# changed (a "groups" change is a change of roles); "auth.roles_changed" is the explicit name.
ROLE_ACTIONS = {"auth.roles_changed"}
USER_FORM_ACTIONS = {"user.created", "user.changed"}
ROLE_FIELDS = {"groups", "role", "roles", "is_superuser", "is_staff"}
# An admin's standing consent to deleting backups without asking each time (apps.backups).
AUTO_PRUNE_ON = ["False", "True"]


def _is_request(event: AuditEvent) -> bool:
    data = event.data if isinstance(event.data, dict) else {}
    return event.action in REQUEST_ACTIONS and "kind" in data and "approved_by" not in data


def _in_production(event: AuditEvent) -> bool:
    from apps.operations.models import Operation  # the operations app records through us

    return (
        event.operation_id is not None
        and Operation.objects.filter(pk=event.operation_id, is_production=True).exists()
    )


def _replicas(event: AuditEvent) -> Any:
    params = event.data.get("params") if isinstance(event.data, dict) else None
    return params.get("replicas") if isinstance(params, dict) else None


def rule_for(event: AuditEvent) -> str | None:
    """The review rule ``event`` falls under, or None when it needs no review. Refused and
    failed events are in the history already and change nothing: only what happened enters."""
    if event.outcome != Outcome.SUCCEEDED:
        return None
    action = event.action
    data = event.data if isinstance(event.data, dict) else {}
    if action == "operation.approved":
        return ReviewRule.APPROVAL
    if action == "operation.gate_overridden":
        return ReviewRule.GATE_OVERRIDE
    if action == "audit.exported":
        return ReviewRule.AUDIT_EXPORT
    if action in ROLE_ACTIONS:
        return ReviewRule.ROLE_CHANGE
    changes = data.get("changes")
    changes = changes if isinstance(changes, dict) else {}
    if action in USER_FORM_ACTIONS and ROLE_FIELDS & set(changes):
        return ReviewRule.ROLE_CHANGE
    if action == "databasetarget.changed" and changes.get("auto_prune") == AUTO_PRUNE_ON:
        return ReviewRule.AUTO_PRUNE
    if _is_request(event):
        kind = data.get("kind")
        if kind in RESTORE_KINDS and _in_production(event):
            return ReviewRule.PRODUCTION_RESTORE
        if kind in SCALE_KINDS and str(_replicas(event)) == "0" and _in_production(event):
            return ReviewRule.SCALE_TO_ZERO
    return None


def enter_review_queue(events: Sequence[AuditEvent]) -> list[ReviewItem]:
    """Put the sensitive ones of ``events`` (just written) in the queue; one INSERT for all."""
    items = [
        ReviewItem(event=event, rule=rule, entered_at=event.created_at)
        for event in events
        if (rule := rule_for(event)) is not None
    ]
    if items:
        ReviewItem.objects.bulk_create(items)
    return items


UNREVIEWED = "unreviewed"
REVIEWED = "reviewed"
STATES = {UNREVIEWED: "Still to review", REVIEWED: "Reviewed"}


def queue(state: str) -> QuerySet[ReviewItem]:
    """The items of one list of the queue, newest first (each list has its partial index)."""
    items = ReviewItem.objects.filter(reviewed_at__isnull=state == UNREVIEWED)
    return items.select_related("event", "reviewed_by").order_by("-id")


def oldest_unreviewed() -> ReviewItem | None:
    """The item waiting longest: the queue's headline says for how long."""
    return (
        ReviewItem.objects.filter(reviewed_at__isnull=True)
        .select_related("event")
        .order_by("id")
        .first()
    )
