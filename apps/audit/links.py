"""From an audit event to the page of the object it is about, for a whole page of events at
once: one query per kind of object on the page, never one per row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from django.apps import apps
from django.urls import reverse

from apps.audit.filters import MAX_BIGINT
from apps.audit.models import AuditEvent
from apps.operations.models import Operation

OPERATION = "operation"


Lookup = Callable[[Iterable[int]], dict[int, str]]


def _operation_urls(ids: Iterable[int]) -> dict[int, str]:
    # Operations can be removed by retention; only link those still there.
    found = Operation.objects.filter(pk__in=ids).values_list("pk", flat=True)
    return {pk: reverse("operations:detail", args=[pk]) for pk in found}


# target_type → the bulk lookup of its pages. Each app adds its own kinds of object when it
# starts (register_links in its AppConfig.ready), so the audit history knows no app's models.
LOOKUPS: dict[str, Lookup] = {OPERATION: _operation_urls}


def register_links(target_type: str, lookup: Lookup) -> None:
    LOOKUPS[target_type] = lookup


def model_links(model_label: str) -> Lookup:
    """The bulk lookup of a model whose pages are its ``get_absolute_url``: one query."""

    def lookup(ids: Iterable[int]) -> dict[int, str]:
        model = apps.get_model(model_label)
        return {row.pk: row.get_absolute_url() for row in model._default_manager.filter(pk__in=ids)}

    return lookup


def _as_pk(value: str | int | None) -> int | None:
    """An object id as the audit row stored it (text), or None when it cannot be a primary key;
    a non-number would make the lookup raise, a huge one overflow the database."""
    text = str(value) if value is not None else ""
    if not text.isascii() or not text.isdigit() or int(text) > MAX_BIGINT:
        return None
    return int(text)


def _key_of(event: AuditEvent) -> tuple[str, int] | None:
    """Which object's page the event links to: its target when the portal has a page for that
    kind of object, otherwise the operation it belongs to."""
    if event.target_type in LOOKUPS and (pk := _as_pk(event.target_id)) is not None:
        return event.target_type, pk
    if event.operation_id:
        return OPERATION, event.operation_id
    return None


def object_urls(events: Sequence[AuditEvent]) -> dict[int, str]:
    """The URL of each event's object, by event seq; events without one are left out (users,
    for instance, have no page yet)."""
    keys = {event.seq: key for event in events if (key := _key_of(event)) is not None}
    wanted: defaultdict[str, set[int]] = defaultdict(set)
    for target_type, pk in keys.values():
        wanted[target_type].add(pk)
    # Object types that share a lookup share its query.
    lookups: dict[Lookup, set[int]] = defaultdict(set)
    for target_type, pks in wanted.items():
        lookups[LOOKUPS[target_type]] |= pks
    found = {lookup: lookup(pks) for lookup, pks in lookups.items()}
    urls = {}
    for seq, (target_type, pk) in keys.items():
        if url := found[LOOKUPS[target_type]].get(pk):
            urls[seq] = url
    return urls


def object_url(event: AuditEvent) -> str:
    """The page of one event's object, or "" when it has none."""
    return object_urls([event]).get(event.seq, "")
