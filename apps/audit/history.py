"""The history of one object, for the "History" section of its page: the events about it,
newest first, with the field changes they carry (secrets were masked when recorded)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from apps.audit.models import AuditEvent

HISTORY_LENGTH = 20


@dataclass(frozen=True)
class Change:
    field: str
    before: str
    after: str


def events_about(objects: Iterable[tuple[str, Any]]) -> QuerySet[AuditEvent]:
    """Events whose target is one of ``objects`` ((target_type, id) pairs), newest first;
    each pair uses the (target_type, target_id, -seq) index."""
    condition = Q(pk__in=[])
    for target_type, target_id in objects:
        condition |= Q(target_type=target_type, target_id=str(target_id))
    return AuditEvent.objects.filter(condition).select_related("actor").order_by("-seq")


def changes_of(event: AuditEvent) -> list[Change]:
    """The before → after pairs an event recorded under data["changes"] (the catalog
    actions write them); a masked secret stays masked."""
    changes = event.data.get("changes") if isinstance(event.data, dict) else None
    if not isinstance(changes, dict):
        return []
    found = []
    for name, pair in changes.items():
        if isinstance(pair, list | tuple) and len(pair) == 2:
            found.append(Change(str(name), str(pair[0]), str(pair[1])))
        else:  # a masked value replaces the whole pair
            found.append(Change(str(name), str(pair), str(pair)))
    return found


def recent_history(objects: Iterable[tuple[str, Any]]) -> list[tuple[AuditEvent, list[Change]]]:
    return [(event, changes_of(event)) for event in events_about(objects)[:HISTORY_LENGTH]]
