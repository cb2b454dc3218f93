"""An incident page with a long timeline (``GET /incidents/<pk>/``): server time and SQL
query count with 2,000 timeline entries, and what one live-update poll costs when nothing is
new (the bytes of its response, headers included).

The incident is declared through the action (so that it has its deadlines and its first
entry) on a SEV-1 with one affected service, then 2,000 entries are bulk-inserted: notes,
internal and public status updates, state and role changes, a correction every fiftieth.
Each measurement is 50 requests after 2 unmeasured ones, through Django's test client signed
in as the bench operator. Entries are rendered once and kept (apps/incidents/timeline.py):
the page is measured as people see it, the entries' HTML kept from an earlier view, and
again with the cache emptied before each request, as on a process's first view. Targets:
the page under 150 ms at p95, a poll with nothing new under 1 KB. Everything the bench made
is deleted at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.incidents.actions import do_declare_incident
from apps.incidents.choices import EntryKind, Visibility
from apps.incidents.models import Incident, Notification, Severity, TimelineEntry
from apps.services.models import Service
from bench.report import heading, ms, percentile, table, verdict

ENTRIES = 2000
TITLE = "bench-incident: checkout is down"
PAGE_TARGET_SECONDS = 0.150
POLL_TARGET_BYTES = 1024


@dataclass(frozen=True)
class Result:
    entries: int
    page_seconds: list[float]
    cold_seconds: list[float]
    page_queries: set[int]
    page_kib: float
    poll_seconds: list[float]
    poll_status: int
    poll_bytes: int


def clean_up() -> None:
    incidents = Incident.objects.filter(title=TITLE)
    entries = TimelineEntry.objects.filter(incident__in=incidents)
    # Corrections protect the entries they correct: they go first.
    entries.exclude(corrects=None).delete()
    entries.delete()
    Notification.objects.filter(incident__in=incidents).delete()
    incidents.delete()
    Service.objects.filter(slug="bench-incident-service").delete()


def load(user: Any) -> Incident:
    service, _ = Service.objects.get_or_create(
        slug="bench-incident-service",
        defaults={"name": "bench-incident-service", "team": "Bench"},
    )
    incident = do_declare_incident(
        user, title=TITLE, severity=Severity.objects.get(key="SEV-1"), services=[service]
    )
    start = timezone.now() - timedelta(hours=10)
    entries = []
    for number in range(ENTRIES):
        at = start + timedelta(seconds=15 * number)
        kind = [EntryKind.NOTE, EntryKind.UPDATE, EntryKind.STATE, EntryKind.ROLE][number % 4]
        fields: dict[str, Any] = {"text": f"Note {number}: looked at the pods, still failing."}
        if kind == EntryKind.UPDATE:
            fields = {
                "visibility": Visibility.PUBLIC if number % 8 == 1 else Visibility.INTERNAL,
                "current_status": f"Update {number}: checkout errors at 40 %.",
                "findings": "The connection pool is exhausted.",
                "next_steps": "Roll back to the previous release.",
                "eta": "30 minutes",
            }
        elif kind == EntryKind.STATE:
            fields = {"data": {"from": "investigating", "to": "identified", "reopened": False}}
        elif kind == EntryKind.ROLE:
            fields = {"data": {"role": "technical_lead", "from": "", "to": user.get_username()}}
        entries.append(
            TimelineEntry(
                incident=incident,
                kind=kind,
                author=user,
                occurred_at=at,
                created_at=at,
                **fields,
            )
        )
    created = TimelineEntry.objects.bulk_create(entries, batch_size=500)
    corrections = [
        TimelineEntry(
            incident=incident,
            kind=EntryKind.NOTE,
            author=user,
            text="Correction: it was the replica, not the primary.",
            corrects=created[number],
        )
        for number in range(0, ENTRIES, 50)
    ]
    TimelineEntry.objects.bulk_create(corrections)
    return incident


def _timed(
    client: Client, url: str, requests: int, cold: bool = False, **headers: Any
) -> tuple[list[float], Any]:
    """``cold``: the cache is emptied before each request, as on a process's first view."""
    for _ in range(2):
        client.get(url, **headers)
    seconds = []
    response = None
    for _ in range(requests):
        if cold:
            cache.clear()
        started = time.perf_counter()
        response = client.get(url, **headers)
        seconds.append(time.perf_counter() - started)
    return seconds, response


def measure(client: Client, user: Any, requests: int) -> Result:
    clean_up()
    try:
        incident = load(user)
        url = reverse("incidents:detail", args=[incident.pk])
        page_seconds, page = _timed(client, url, requests)
        cold_seconds, _ = _timed(client, url, requests, cold=True)
        counts = set()
        for _ in range(3):
            with CaptureQueriesContext(connection) as captured:
                client.get(url)
            counts.add(len(captured))
        cursor = TimelineEntry.objects.filter(incident=incident).order_by("-pk").first()
        assert cursor is not None
        poll_url = f"{url}?after={cursor.pk}"
        poll_seconds, poll = _timed(client, poll_url, requests, HTTP_HX_REQUEST="true")
        poll_bytes = len(poll.serialize_headers()) + len(poll.content)
        return Result(
            entries=TimelineEntry.objects.filter(incident=incident).count(),
            page_seconds=page_seconds,
            cold_seconds=cold_seconds,
            page_queries=counts,
            page_kib=len(page.content) / 1024,
            poll_seconds=poll_seconds,
            poll_status=poll.status_code,
            poll_bytes=poll_bytes,
        )
    finally:
        clean_up()


def render(result: Result, requests: int) -> str:
    page_p95 = percentile(result.page_seconds, 95)
    rows = [
        [
            f"incident page, {result.entries} entries",
            ms(percentile(result.page_seconds, 50)),
            ms(page_p95),
            "/".join(str(count) for count in sorted(result.page_queries)),
            f"{result.page_kib:.0f} KiB",
        ],
        [
            "same, entries not rendered yet",
            ms(percentile(result.cold_seconds, 50)),
            ms(percentile(result.cold_seconds, 95)),
            "",
            "",
        ],
        [
            f"live poll, nothing new (HTTP {result.poll_status})",
            ms(percentile(result.poll_seconds, 50)),
            ms(percentile(result.poll_seconds, 95)),
            "",
            f"{result.poll_bytes} B",
        ],
    ]
    return "\n".join(
        [
            heading(f"Incident page with a long timeline ({requests} requests each)"),
            table(["request", "p50", "p95", "queries", "response"], rows),
            f"  target: page p95 under {ms(PAGE_TARGET_SECONDS)}: "
            f"{verdict(page_p95 < PAGE_TARGET_SECONDS)}; "
            f"poll under {POLL_TARGET_BYTES} B: {verdict(result.poll_bytes < POLL_TARGET_BYTES)}",
        ]
    )
