from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models

from apps.audit.choices import Outcome, ReviewRule

GENESIS_HASH = "0" * 64


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def newest_first(self) -> AuditEventQuerySet:
        return self.order_by("-seq")


class AuditEvent(models.Model):
    """One state change or refusal: who did what to which object, when, from where, and why.

    Rows are append-only (database triggers reject UPDATE, DELETE and TRUNCATE) and chained:
    each carries the SHA-256 of its predecessor, so an edited or removed row breaks the chain
    that ``audit_verify`` walks.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    actor_label = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    # Indexed with seq (Meta.indexes): a kind's page reads its operations' seqs from the index.
    operation_id = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["target_type", "target_id", "-seq"]),
            models.Index(fields=["operation_id", "seq"], name="audit_event_operation_seq"),
        ]
        permissions = [
            ("review_auditevent", "Can mark sensitive audit events reviewed"),
            ("verify_auditevent", "Can check the integrity of the audit chain"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.outcome} by {self.actor_label or 'system'}"

    def hashed_fields(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "created_at": self.created_at.isoformat(),
            "actor_id": self.actor_id,
            "actor_label": self.actor_label,
            "action": self.action,
            "outcome": self.outcome,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "target_label": self.target_label,
            "operation_id": self.operation_id,
            "reason": self.reason,
            "data": self.data,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "request_id": self.request_id,
            "prev_hash": self.prev_hash,
        }

    def compute_hash(self) -> str:
        canonical = json.dumps(
            self.hashed_fields(), sort_keys=True, separators=(",", ":"), default=str
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class AuditChainHead(models.Model):
    """The single row that serialises writers of the chain and remembers its last link, so
    that removing the newest events is detected too."""

    seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"audit chain at #{self.seq}"


class AuditCheckpoint(models.Model):
    """A signed statement that the chain reached ``seq`` with ``hash``: ``audit_verify`` can
    start from the newest checkpoint whose signature holds instead of the first event, and
    the copy written to the backup storage (``stored_key``) outlives a rewrite of the tables."""

    created_at = models.DateTimeField()
    seq = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)
    signature = models.CharField(max_length=64)
    stored_key = models.CharField(max_length=500, blank=True)
    store_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-seq", "-pk"]

    def __str__(self) -> str:
        return f"checkpoint at #{self.seq}"


class ReviewItem(models.Model):
    """A sensitive event in the manager review queue: it enters when the event is written
    (``apps.audit.review.enter_review_queue``, in the same transaction) and leaves the
    unreviewed list when a manager marks it reviewed with a comment, which is itself the
    audit event ``review_seq``."""

    event = models.OneToOneField(AuditEvent, on_delete=models.PROTECT, related_name="review")
    rule = models.CharField(max_length=40, choices=ReviewRule.choices)
    entered_at = models.DateTimeField()
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    comment = models.TextField(blank=True)
    review_seq = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        indexes = [
            # The two lists of the queue, each newest first and keyset-paged by id.
            models.Index(
                fields=["-id"],
                name="audit_review_open_idx",
                condition=models.Q(reviewed_at__isnull=True),
            ),
            models.Index(
                fields=["-id"],
                name="audit_review_done_idx",
                condition=models.Q(reviewed_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        state = "reviewed" if self.reviewed_at else "unreviewed"
        return f"review of #{self.event_id} ({self.rule}, {state})"
