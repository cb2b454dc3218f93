"""Where a component's status comes from. Each source reports spans of time during which a
component had a status other than operational ("major outage from 10:02 until 10:40",
"under maintenance from 02:00, still going"); the page takes, for now and for each day of
the history, the worst status any source reports.

The incidents register theirs (``apps/statuspage/incident_source.py``); the maintenance
windows register theirs the same way, in their app's ``ready()``:

    from apps.statuspage.sources import Span, register_status_source

    def window_spans(components, since, now):
        ...  # one query, whatever the number of components and windows
        yield Span(component.pk, ComponentStatus.UNDER_MAINTENANCE, start, end, title)

    register_status_source("maintenance", window_spans)

A source runs a fixed number of queries (the page promises that) and returns only what a
visitor may read: ``label`` is shown on the public page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from apps.statuspage.choices import STATUS_ORDER, ComponentStatus, worst
from apps.statuspage.models import StatusComponent

HISTORY_DAYS = 90


@dataclass(frozen=True)
class Span:
    """A component had ``status`` from ``start`` until ``end`` (None: it still has)."""

    component_id: int
    status: ComponentStatus
    start: datetime
    end: datetime | None = None
    label: str = ""  # public words for it, e.g. the incident's title

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


# (components, since, now) → the spans that overlap [since, now].
StatusSource = Callable[[Sequence[StatusComponent], datetime, datetime], Iterable[Span]]

_SOURCES: dict[str, StatusSource] = {}


def register_status_source(name: str, source: StatusSource) -> None:
    """Add (or, under the same name, replace) a source of component statuses."""
    _SOURCES[name] = source


def registered_sources() -> dict[str, StatusSource]:
    return dict(_SOURCES)


@dataclass
class Day:
    """One cell of a component's history: the worst status of a day, and why."""

    day: date
    status: ComponentStatus = ComponentStatus.OPERATIONAL
    labels: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        text = f"{self.day.day} {self.day:%b %Y}: {self.status.label}"
        if self.labels:
            text += " — " + "; ".join(self.labels)
        return text


@dataclass
class ComponentReport:
    """A component as the page shows it: its status now, since when, and its days."""

    component: StatusComponent
    status: ComponentStatus
    updated_at: datetime
    days: list[Day]

    @property
    def days_operational(self) -> int:
        return sum(1 for day in self.days if day.status == ComponentStatus.OPERATIONAL)

    @property
    def share_operational(self) -> float | None:
        return self.days_operational / len(self.days) if self.days else None


@dataclass
class Report:
    components: list[ComponentReport]
    status: ComponentStatus
    generated_at: datetime
    zone: ZoneInfo


def history_start(now: datetime, zone: ZoneInfo, days: int = HISTORY_DAYS) -> datetime:
    """Midnight (in ``zone``) at the start of the first day of the history."""
    first = now.astimezone(zone).date() - timedelta(days=days - 1)
    return datetime.combine(first, datetime.min.time(), tzinfo=zone)


def _days_of(span: Span, since: datetime, now: datetime, zone: ZoneInfo) -> Iterable[date]:
    start = max(span.start, since)
    end = min(span.end or now, now)
    if end < start:
        return
    day = start.astimezone(zone).date()
    last = end.astimezone(zone).date()
    # A span ending exactly at midnight does not touch the next day.
    if end > start and end.astimezone(zone).time() == datetime.min.time():
        last -= timedelta(days=1)
    while day <= last:
        yield day
        day += timedelta(days=1)


def build_report(
    components: Sequence[StatusComponent],
    now: datetime | None = None,
    *,
    days: int = HISTORY_DAYS,
) -> Report:
    """Every component's status now and over the last ``days`` days, from every source:
    one call per source, whatever the number of components, incidents or windows."""
    now = now or timezone.now()
    zone = ZoneInfo(timezone.get_current_timezone_name())
    since = history_start(now, zone, days)
    first_day = since.date()
    calendar = [first_day + timedelta(days=offset) for offset in range(days)]
    spans: dict[int, list[Span]] = defaultdict(list)
    for source in _SOURCES.values():
        for span in source(components, since, now):
            spans[span.component_id].append(span)

    reports = []
    for component in components:
        by_day = {day: Day(day) for day in calendar}
        current: list[str] = []
        updated_at = component.updated_at
        for span in spans.get(component.pk, []):
            if span.covers(now):
                current.append(span.status)
            for moment in (span.start, span.end):
                if moment is not None and updated_at < moment <= now:
                    updated_at = moment
            for day in _days_of(span, since, now, zone):
                cell = by_day.get(day)
                if cell is None:
                    continue
                if STATUS_ORDER.index(span.status) > STATUS_ORDER.index(cell.status):
                    cell.status = ComponentStatus(span.status)
                if span.label and span.label not in cell.labels:
                    cell.labels.append(span.label)
        reports.append(
            ComponentReport(component, worst(*current), updated_at, list(by_day.values()))
        )
    return Report(
        components=reports,
        status=worst(*(report.status for report in reports)),
        generated_at=now,
        zone=zone,
    )
