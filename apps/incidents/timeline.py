"""An incident's timeline as the pages show it: which entries, in which order, and their HTML.

Entries never change once written (the model and a database trigger refuse an UPDATE), so
the HTML of an entry is rendered once and kept in the cache, keyed by everything else it
shows: who wrote it (a username can change), whether it can be corrected from this page,
which of the entries shown correct it, and whether the entry it corrects is on the page. A
long incident's page then costs its queries and the cache reads, not a hundred renders.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import timedelta
from functools import cache
from typing import Any, NamedTuple

from django.core.cache import cache as fragments
from django.db.models import Count, Max, Q, QuerySet, Subquery
from django.template.loader import get_template
from django.utils import timezone
from django.utils.safestring import mark_safe

from apps.incidents.choices import EntryKind
from apps.incidents.models import Incident, TimelineEntry
from apps.incidents.postmortems import duration_words

# The page shows the latest entries (in the order they happened); earlier ones load on
# demand, so that a long incident's page costs what a short one's does.
TIMELINE_WINDOW = 100
TIME_FORMAT = "%b %d, %H:%M:%S"
ENTRY_TEMPLATE = "incidents/_entry.html"
ENTRY_CACHE_SECONDS = 7 * 24 * 3600


def entries(incident: Incident | int) -> QuerySet[TimelineEntry]:
    """The incident's entries in the order they happened, with what their HTML needs."""
    return (
        TimelineEntry.objects.filter(incident=incident)
        .select_related("author", "operation", "corrects")
        .only(
            *[
                f.name
                for f in TimelineEntry._meta.concrete_fields
                if f.name not in ("incident", "author", "operation", "corrects")
            ],
            "incident_id",
            "author__username",
            "operation__id",
            "corrects__id",
            "corrects__kind",
        )
        .order_by("occurred_at", "id")
    )


class Window(NamedTuple):
    entries: list[TimelineEntry]
    earlier: int  # how many entries happened before these
    cursor: int  # the newest entry's id, for the live poll


def window(incident_pk: int, before: TimelineEntry | None = None) -> Window:
    """The last TIMELINE_WINDOW entries (before ``before`` when given), in the order they
    happened, and how many come earlier."""
    found = entries(incident_pk)
    if before is not None:
        found = found.filter(
            Q(occurred_at__lt=before.occurred_at)
            | Q(occurred_at=before.occurred_at, pk__lt=before.pk)
        )
    figures = found.aggregate(total=Count("pk"), cursor=Max("pk"))
    # The window's ids first (a sort of narrow rows), then only those rows with their joins.
    last_ids = found.reverse().values("pk")[:TIMELINE_WINDOW]
    shown = list(entries(incident_pk).filter(pk__in=Subquery(last_ids)))
    return Window(shown, figures["total"] - len(shown), figures["cursor"] or 0)


def prepare(
    shown: list[TimelineEntry], *, editable: bool, page_url: str, complete: bool = False
) -> None:
    """Give each entry its HTML (``entry.html``), from the cache when it was rendered
    before. ``editable``: the entries offer "Correct"; ``complete``: every entry of the
    timeline is shown, so a corrected entry is always on the page."""
    corrections: dict[int, list[int]] = defaultdict(list)
    on_page = {entry.pk for entry in shown}
    for entry in shown:
        if entry.corrects_id is not None:
            corrections[entry.corrects_id].append(entry.pk)
    zone = timezone.get_current_timezone()
    keys = {}
    for entry in shown:
        around = {
            "corrected_by": corrections.get(entry.pk, ()),
            "corrects_shown": complete or entry.corrects_id in on_page,
            "who": entry.author.username if entry.author is not None else "",
        }
        entry.__dict__.update(around)
        keys[entry.pk] = _key(entry, around, editable=editable, zone=str(zone))
    cached = fragments.get_many(list(keys.values()))
    missing: dict[str, str] = {}
    for entry in shown:
        html = cached.get(keys[entry.pk])
        if html is None:
            html = _render(entry, editable=editable, page_url=page_url, zone=zone)
            missing[keys[entry.pk]] = html
        entry.__dict__["html"] = mark_safe(html)  # noqa: S308  (the template escaped it)
    if missing:
        fragments.set_many(missing, ENTRY_CACHE_SECONDS)


def _key(entry: TimelineEntry, around: dict[str, Any], *, editable: bool, zone: str) -> str:
    # created_at (to the microsecond) with the id: a row deleted in a test's rollback and
    # its id reused never meets the HTML of the one before.
    parts = [
        _template_version(),
        str(entry.pk),
        entry.created_at.isoformat(),
        around["who"],
        zone,
        "e" if editable else "-",
        "s" if around["corrects_shown"] else "-",
        ",".join(str(number) for number in around["corrected_by"]),
    ]
    return "incident-entry:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@cache
def _template_version() -> str:
    """A digest of the entry template, so that HTML kept from before a deploy that changed
    it is never shown."""
    template: Any = get_template(ENTRY_TEMPLATE)
    return hashlib.sha256(template.template.source.encode()).hexdigest()[:16]


def _render(entry: TimelineEntry, *, editable: bool, page_url: str, zone: Any) -> str:
    occurred = entry.occurred_at.astimezone(zone)
    facts: dict[str, Any] = {
        "label": dict(EntryKind.choices).get(entry.kind, entry.kind),
        "when": occurred.strftime(TIME_FORMAT),
        "when_iso": occurred.isoformat(),
        "written": "",
    }
    if entry.created_at != entry.occurred_at:
        written = entry.created_at.astimezone(zone)
        facts.update(written=written.strftime(TIME_FORMAT), written_iso=written.isoformat())
    if entry.kind == EntryKind.ACKNOWLEDGED:
        after = timedelta(seconds=int(entry.data.get("after_seconds") or 0))
        facts["after_words"] = duration_words(after)
    entry.__dict__.update(facts)
    context = {"entry": entry, "editable": editable, "page_url": page_url}
    return str(get_template(ENTRY_TEMPLATE).render(context))
