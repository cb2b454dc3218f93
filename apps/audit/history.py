"""The history of one object, for the "History" section of its page: the events about it,
newest first, with the field changes they carry (secrets were masked when recorded)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import urlencode

from apps.audit.filters import MAX_BIGINT
from apps.audit.models import AuditEvent
from apps.common.paging import keyset_page

HISTORY_LENGTH = 20
# The target type of events about a user account (role changes, sign-ins of that account).
USER_TYPE = "auth.user"
# The cursor of a paged history in the page's URL: the seq of the last event shown.
HISTORY_CURSOR = "before"


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


def _cursor(request: HttpRequest) -> int | None:
    """The page cursor, or None (the newest page) when it is missing or could not be a seq:
    a tampered cursor shows the newest events rather than failing the page."""
    raw = request.GET.get(HISTORY_CURSOR, "")
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_BIGINT:
        return None
    return int(raw) or None


def history_context(
    request: HttpRequest, objects: Iterable[tuple[str, Any]], *, target_type: str, target_id: Any
) -> dict[str, Any]:
    """What templates/audit/_history.html needs for a paged history of ``objects``: one page
    of events (one query), the query string of the next (older) page, and the link to the
    whole history in the audit list, filtered to the object."""
    cursor = _cursor(request)
    page = keyset_page(request, events_about(objects), "seq", cursor, HISTORY_LENGTH)
    query = urlencode({"target_type": target_type, "target_id": str(target_id)})
    return {
        "history": [(event, changes_of(event)) for event in page.rows],
        "history_next": page.next_query,
        "history_paged": cursor is not None,
        "history_url": f"{reverse('audit:list')}?{query}",
    }
