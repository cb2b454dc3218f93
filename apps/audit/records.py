"""Writing to and checking the audit chain: the only way events are created."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.models import GENESIS_HASH, AuditChainHead, AuditCheckpoint, AuditEvent
from apps.audit.review import enter_review_queue
from apps.common import request_context

MASK = "********"
_SECRET_KEY_NAME = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|private|credential|kubeconfig|authorization",
    re.IGNORECASE,
)


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` with every entry whose key names a secret replaced by a mask."""
    if isinstance(value, dict):
        return {
            key: MASK if _SECRET_KEY_NAME.search(str(key)) else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_secrets(item) for item in value]
    return value


@dataclass(frozen=True)
class AuditTarget:
    type: str
    id: str
    label: str


def record(
    action: str,
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    outcome: str = Outcome.SUCCEEDED,
    target: AuditTarget | None = None,
    reason: str = "",
    data: dict[str, Any] | None = None,
    operation_id: int | None = None,
    actor_label: str = "",
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction when there is one.

    The UPDATE of the chain head comes first: it takes the head row's lock (PostgreSQL) or the
    write lock (SQLite), so concurrent writers queue up and each links to the true predecessor.
    """
    context = request_context.current()
    user = actor if actor is not None and actor.is_authenticated else None
    with transaction.atomic():
        AuditChainHead.objects.filter(pk=1).update(seq=F("seq") + 1)
        head = AuditChainHead.objects.get(pk=1)
        event = AuditEvent(
            seq=head.seq,
            created_at=timezone.now(),
            actor=user,  # type: ignore[misc]
            actor_label=(user.get_username() if user else actor_label)[:150],
            action=action,
            outcome=outcome,
            target_type=target.type if target else "",
            target_id=str(target.id) if target else "",
            target_label=(target.label if target else "")[:255],
            operation_id=operation_id,
            reason=reason,
            data=mask_secrets(data or {}),
            ip=context.ip,
            user_agent=context.user_agent,
            request_id=context.request_id,
            prev_hash=head.last_hash,
        )
        event.hash = event.compute_hash()
        event.save(force_insert=True)
        head.last_hash = event.hash
        head.save(update_fields=["last_hash"])
        enter_review_queue([event])
    return event


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    message: str
    first_bad_seq: int | None = None


def _walk(
    events: Iterator[AuditEvent], *, after_seq: int = 0, after_hash: str = GENESIS_HASH
) -> ChainReport:
    """Check ``events`` (in seq order, from ``after_seq`` + 1) link one to the next, starting
    from ``after_hash``, and end where the head says the chain ends."""
    expected_prev = after_hash
    expected_seq = after_seq + 1
    checked = 0
    for event in events:
        if event.seq != expected_seq:
            return ChainReport(
                False,
                checked,
                f"Event #{expected_seq} is missing (the next one found is #{event.seq}).",
                expected_seq,
            )
        if event.prev_hash != expected_prev:
            return ChainReport(
                False,
                checked,
                f"Event #{event.seq} does not link to its predecessor: "
                "the predecessor was altered or removed.",
                event.seq,
            )
        if event.compute_hash() != event.hash:
            return ChainReport(
                False, checked, f"Event #{event.seq} was altered after it was written.", event.seq
            )
        expected_prev = event.hash
        expected_seq += 1
        checked += 1
    head = AuditChainHead.objects.get(pk=1)
    last = expected_seq - 1
    if head.seq != last or head.last_hash != expected_prev:
        return ChainReport(
            False,
            checked,
            f"The chain ends at #{last} but its head says #{head.seq}: "
            "the newest events were removed.",
            last + 1,
        )
    if after_seq:
        return ChainReport(
            True, checked, f"All {checked} events after the checkpoint at #{after_seq} are intact."
        )
    return ChainReport(True, checked, f"All {checked} events are intact.")


def verify_chain(since: AuditCheckpoint | None = None) -> ChainReport:
    """Walk the chain in order and report the first broken link: from the first event, or
    from a checkpoint (whose signature the caller checked), whose event must still carry the
    hash it was signed with."""
    events = AuditEvent.objects.order_by("seq")
    if since is None or since.seq == 0:
        return _walk(events.iterator(chunk_size=2000))
    found = events.filter(seq=since.seq).values_list("hash", flat=True).first()
    if found != since.hash:
        what = "is missing" if found is None else "was altered after the checkpoint"
        return ChainReport(
            False, 0, f"Event #{since.seq}, named by the signed checkpoint, {what}.", since.seq
        )
    return _walk(
        events.filter(seq__gt=since.seq).iterator(chunk_size=2000),
        after_seq=since.seq,
        after_hash=since.hash,
    )


def field_changes(form: Any) -> dict[str, list[Any]]:
    """What a bound, valid form changed: {field: [before, after]} as strings, for the "data"
    of an audit event. Secret fields are masked by ``record`` through their names."""
    changes: dict[str, list[Any]] = {}
    for name in form.changed_data:
        if name not in form.cleaned_data:
            continue
        before = form.initial.get(name)
        if hasattr(form.fields[name], "queryset") and before is not None:
            before = str(form.fields[name].queryset.filter(pk=before).first() or before)
        after = form.cleaned_data[name]
        pair = ["" if before is None else str(before), "" if after is None else str(after)]
        # A field left empty that keeps its value (the target's policy) changed nothing.
        if pair[0] != pair[1]:
            changes[name] = pair
    return changes


def save_form_recorded(
    actor: AbstractBaseUser,
    form: Any,
    *,
    target_of: Callable[[Any], AuditTarget],
    changes: dict[str, Any],
    reason: str = "",
) -> Any:
    """Save a valid model form and record "<model>.created" or "<model>.changed" with the
    fields it changed, in one transaction: the catalogs' actions end with this."""
    created = form.instance.pk is None
    with transaction.atomic():
        instance = form.save()
        record(
            f"{instance._meta.model_name}.{'created' if created else 'changed'}",
            actor=actor,
            target=target_of(instance),
            reason=reason,
            data={"changes": changes},
        )
    return instance


@dataclass(frozen=True)
class EventDraft:
    """One event for ``record_many``: the arguments of ``record``."""

    action: str
    actor: AbstractBaseUser | AnonymousUser | None = None
    outcome: str = Outcome.SUCCEEDED
    target: AuditTarget | None = None
    reason: str = ""
    data: dict[str, Any] | None = None
    operation_id: int | None = None
    actor_label: str = ""


def record_many(drafts: list[EventDraft]) -> list[AuditEvent]:
    """Append several events to the chain in their order, in four queries whatever their
    number (for batch writers such as the maintenance beat); same locking as ``record``."""
    if not drafts:
        return []
    context = request_context.current()
    now = timezone.now()
    with transaction.atomic():
        AuditChainHead.objects.filter(pk=1).update(seq=F("seq") + len(drafts))
        head = AuditChainHead.objects.get(pk=1)
        seq = head.seq - len(drafts)
        prev_hash = head.last_hash
        events = []
        for draft in drafts:
            actor = draft.actor
            user = actor if actor is not None and actor.is_authenticated else None
            seq += 1
            event = AuditEvent(
                seq=seq,
                created_at=now,
                actor=user,  # type: ignore[misc]
                actor_label=(user.get_username() if user else draft.actor_label)[:150],
                action=draft.action,
                outcome=draft.outcome,
                target_type=draft.target.type if draft.target else "",
                target_id=str(draft.target.id) if draft.target else "",
                target_label=(draft.target.label if draft.target else "")[:255],
                operation_id=draft.operation_id,
                reason=draft.reason,
                data=mask_secrets(draft.data or {}),
                ip=context.ip,
                user_agent=context.user_agent,
                request_id=context.request_id,
                prev_hash=prev_hash,
            )
            event.hash = prev_hash = event.compute_hash()
            events.append(event)
        AuditEvent.objects.bulk_create(events)
        head.last_hash = prev_hash
        head.save(update_fields=["last_hash"])
        enter_review_queue(events)
    return events
