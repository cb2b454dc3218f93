"""Figures for managers: how many incidents, how fast they were acknowledged and resolved,
and whether post-mortems came within 48 hours, for a period and the one before it.

Everything is computed by a few aggregate queries, never a loop over incidents, so that
the audit reports can reuse ``incident_figures`` over any span:

- counts by severity, and the mean time to acknowledge, cover the incidents *declared* in
  the period;
- the mean time to resolve and post-mortem compliance cover the incidents *resolved* in it.
  Compliance is the share of those whose severity requires a post-mortem that had it
  completed within 48 hours of resolving; one whose 48 hours are still running and that is
  not completed yet is *pending* and counts neither way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from django.db.models import Avg, Count, F, Q, QuerySet
from django.db.models.functions import TruncWeek
from django.utils import timezone

from apps.incidents.actions import POSTMORTEM_WITHIN
from apps.incidents.models import Incident, Severity
from apps.incidents.postmortems import duration_words

PERIOD_DAYS = {"7d": 7, "30d": 30, "90d": 90}
PERIOD_CHOICES = [
    ("7d", "7 days"),
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("quarter", "This quarter"),
]
DEFAULT_PERIOD = "30d"


# --- Periods ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    start: datetime
    end: datetime
    previous_label: str
    previous_start: datetime
    previous_end: datetime


def _day(value: datetime) -> str:
    return f"{value.astimezone(UTC):%d %b %Y}"


def _quarter_start(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return datetime(value.year, 3 * ((value.month - 1) // 3) + 1, 1, tzinfo=UTC)


def period_bounds(key: str, now: datetime | None = None) -> Period:
    """The span ``key`` names, ending now, and the one before it. ``quarter`` is the
    calendar quarter so far (UTC), compared with the same number of days at the start of
    the previous quarter, so that its counts compare like with like."""
    now = now or timezone.now()
    if key == "quarter":
        start = _quarter_start(now)
        previous_start = _quarter_start(start - timedelta(days=1))
        previous_end = min(previous_start + (now - start), start)
        number = (start.month - 1) // 3 + 1
        previous_number = (previous_start.month - 1) // 3 + 1
        return Period(
            key,
            f"Q{number} {start.year} so far (since {_day(start)})",
            start,
            now,
            f"the same days of Q{previous_number} {previous_start.year}",
            previous_start,
            previous_end,
        )
    days = PERIOD_DAYS.get(key)
    if days is None:
        raise ValueError(f"Unknown period {key!r}.")
    span = timedelta(days=days)
    return Period(
        key,
        f"the last {days} days",
        now - span,
        now,
        f"the {days} days before",
        now - 2 * span,
        now - span,
    )


# --- The figures --------------------------------------------------------------------------


@dataclass(frozen=True)
class SeverityCount:
    key: str
    name: str
    rank: int
    count: int


@dataclass(frozen=True)
class IncidentFigures:
    """The figures of the incidents of ``[start, end)``."""

    start: datetime
    end: datetime
    by_severity: list[SeverityCount]
    acknowledged: int
    mean_time_to_acknowledge: timedelta | None
    resolved: int
    mean_time_to_resolve: timedelta | None
    postmortems_due: int  # resolved, requiring one, and either completed or past 48 h
    postmortems_on_time: int
    postmortems_pending: int  # within their 48 h and not completed yet: not counted

    @property
    def total(self) -> int:
        return sum(row.count for row in self.by_severity)

    @property
    def compliance(self) -> float | None:
        """The share (0..1) of due post-mortems completed within 48 h; None when none was due."""
        if not self.postmortems_due:
            return None
        return self.postmortems_on_time / self.postmortems_due


def incident_figures(
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
    severities: list[Severity] | None = None,
    incidents: QuerySet[Incident] | None = None,
) -> IncidentFigures:
    """The figures of ``[start, end)`` in three aggregate queries (four without
    ``severities``, the table of severities in rank order), over ``incidents`` (all of them
    unless narrowed, e.g. to one team's services)."""
    now = now or timezone.now()
    if severities is None:
        severities = list(Severity.objects.order_by("rank"))
    if incidents is None:
        incidents = Incident.objects.all()
    declared = incidents.filter(declared_at__gte=start, declared_at__lt=end)
    counts = dict(
        declared.order_by()
        .values_list("severity_id")
        .annotate(count=Count("id"))
        .values_list("severity_id", "count")
    )
    acknowledging = declared.filter(acknowledged_at__isnull=False).aggregate(
        count=Count("id"), mean=Avg(F("acknowledged_at") - F("declared_at"))
    )
    required = Q(severity__requires_postmortem=True)
    completed_on_time = Q(
        postmortem__completed_at__isnull=False,
        postmortem__completed_at__lte=F("resolved_at") + POSTMORTEM_WITHIN,
    )
    pending = Q(postmortem__completed_at__isnull=True, resolved_at__gt=now - POSTMORTEM_WITHIN)
    resolving = incidents.filter(resolved_at__gte=start, resolved_at__lt=end).aggregate(
        count=Count("id"),
        mean=Avg(F("resolved_at") - F("declared_at")),
        required=Count("id", filter=required),
        on_time=Count("id", filter=required & completed_on_time),
        pending=Count("id", filter=required & pending),
    )
    return IncidentFigures(
        start=start,
        end=end,
        by_severity=[
            SeverityCount(severity.key, severity.name, severity.rank, counts.get(severity.pk, 0))
            for severity in severities
        ],
        acknowledged=acknowledging["count"],
        mean_time_to_acknowledge=acknowledging["mean"],
        resolved=resolving["count"],
        mean_time_to_resolve=resolving["mean"],
        postmortems_due=resolving["required"] - resolving["pending"],
        postmortems_on_time=resolving["on_time"],
        postmortems_pending=resolving["pending"],
    )


# --- Trends -------------------------------------------------------------------------------

Direction = Literal["up", "down", "same", "none"]
Verdict = Literal["better", "worse", "same", ""]


@dataclass(frozen=True)
class Trend:
    """One figure now and in the previous period, with which way it went and whether that
    is good news (the words and the arrow carry it; colour only repeats it)."""

    label: str
    current: str
    previous: str
    change: str  # "+3", "−2 min", "+12 points"; "" when either side has no value
    direction: Direction
    verdict: Verdict
    note: str = ""


def _trend(
    label: str,
    current: float | None,
    previous: float | None,
    *,
    show: Callable[..., str],
    lower_is_better: bool,
    note: str = "",
) -> Trend:
    if current is None or previous is None:
        return Trend(label, show(current), show(previous), "", "none", "", note)
    delta = current - previous
    if abs(delta) < 1e-9:
        return Trend(label, show(current), show(previous), "no change", "same", "same", note)
    good = (delta < 0) == lower_is_better
    return Trend(
        label,
        show(current),
        show(previous),
        f"{'+' if delta > 0 else '−'}{show(abs(delta), change=True)}",
        "up" if delta > 0 else "down",
        "better" if good else "worse",
        note,
    )


def _count(value: float | None, change: bool = False) -> str:
    return "—" if value is None else f"{value:g}"


def _seconds(value: float | None, change: bool = False) -> str:
    return "—" if value is None else duration_words(timedelta(seconds=value))


def _percent(value: float | None, change: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.0f} points" if change else f"{value * 100:.0f} %"


def _secs(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


@dataclass(frozen=True)
class Comparison:
    """A period's figures against the previous period's, ready to show."""

    current: IncidentFigures
    previous: IncidentFigures
    headline: list[Trend] = field(default_factory=list)
    by_severity: list[Trend] = field(default_factory=list)


def compare(current: IncidentFigures, previous: IncidentFigures) -> Comparison:
    def compliance_note(figures: IncidentFigures) -> str:
        words = f"{figures.postmortems_on_time} of {figures.postmortems_due} on time"
        if figures.postmortems_pending:
            words += f", {figures.postmortems_pending} still within their 48 h"
        return words

    headline = [
        _trend(
            "Incidents declared",
            current.total,
            previous.total,
            show=_count,
            lower_is_better=True,
        ),
        _trend(
            "Mean time to acknowledge",
            _secs(current.mean_time_to_acknowledge),
            _secs(previous.mean_time_to_acknowledge),
            show=_seconds,
            lower_is_better=True,
            note=f"over {current.acknowledged} acknowledged",
        ),
        _trend(
            "Mean time to resolve",
            _secs(current.mean_time_to_resolve),
            _secs(previous.mean_time_to_resolve),
            show=_seconds,
            lower_is_better=True,
            note=f"over {current.resolved} resolved",
        ),
        _trend(
            "Post-mortems within 48 h",
            current.compliance,
            previous.compliance,
            show=_percent,
            lower_is_better=False,
            note=compliance_note(current),
        ),
    ]
    before = {row.key: row.count for row in previous.by_severity}
    by_severity = [
        _trend(
            f"{row.key} {row.name}",
            row.count,
            before.get(row.key, 0),
            show=_count,
            lower_is_better=True,
        )
        for row in current.by_severity
    ]
    return Comparison(current, previous, headline, by_severity)


# --- The weekly chart ---------------------------------------------------------------------

CHART_WIDTH = 600
CHART_HEIGHT = 150
CHART_PLOT_TOP = 16  # room for the totals above the bars
CHART_PLOT_BOTTOM = 126  # the axis; the week labels go below
CHART_MAX_BAR = 48
# Bootstrap colour utilities, used as fill="currentColor": no inline style for the CSP.
SEVERITY_TONES = ["text-danger", "text-warning", "text-info", "text-secondary"]


@dataclass(frozen=True)
class ChartSegment:
    y: float
    height: float
    tone: str
    title: str


@dataclass(frozen=True)
class ChartWeek:
    start: datetime
    label: str
    show_label: bool
    x: float
    width: float
    center: float
    total: int
    total_y: float
    segments: list[ChartSegment]
    counts: list[int]  # in the order of the chart's severities, for the table


@dataclass(frozen=True)
class WeeklyChart:
    width: int
    height: int
    axis_y: int
    label_y: int
    severities: list[tuple[str, str]]  # (key, tone), worst first
    weeks: list[ChartWeek]
    aria_label: str


def tone_of(rank_index: int) -> str:
    return SEVERITY_TONES[min(rank_index, len(SEVERITY_TONES) - 1)]


def week_start(value: datetime) -> datetime:
    """The Monday (00:00 UTC) of the week ``value`` falls in: the weeks of every chart."""
    value = value.astimezone(UTC)
    day = datetime(value.year, value.month, value.day, tzinfo=UTC)
    return day - timedelta(days=day.weekday())


def weekly_chart(
    start: datetime,
    end: datetime,
    *,
    severities: list[Severity] | None = None,
    incidents: QuerySet[Incident] | None = None,
) -> WeeklyChart:
    """Incidents declared per week (weeks start on Monday, UTC) by severity, stacked with
    the worst at the bottom, as the shapes of a small server-rendered SVG: one query over
    ``incidents`` (all of them by default)."""
    if severities is None:
        severities = list(Severity.objects.order_by("rank"))
    if incidents is None:
        incidents = Incident.objects.all()
    rows = (
        incidents.filter(declared_at__gte=start, declared_at__lt=end)
        .annotate(week=TruncWeek("declared_at", tzinfo=UTC))
        .order_by()
        .values_list("week", "severity_id")
        .annotate(count=Count("id"))
        .values_list("week", "severity_id", "count")
    )
    counts: dict[tuple[datetime, int], int] = {
        (week_start(week), severity_id): count for week, severity_id, count in rows
    }
    mondays = []
    monday = week_start(start)
    while monday < end:
        mondays.append(monday)
        monday += timedelta(days=7)
    slot = CHART_WIDTH / max(len(mondays), 1)
    bar = min(slot * 0.7, CHART_MAX_BAR)
    totals = [sum(counts.get((day, s.pk), 0) for s in severities) for day in mondays]
    highest = max(totals, default=0)
    scale = (CHART_PLOT_BOTTOM - CHART_PLOT_TOP) / highest if highest else 0
    every = max(1, round(len(mondays) / 8))  # at most about 8 labels under the axis
    weeks = []
    for index, (day, total) in enumerate(zip(mondays, totals, strict=True)):
        x = index * slot + (slot - bar) / 2
        y = float(CHART_PLOT_BOTTOM)
        segments = []
        week_counts = []
        for rank_index, severity in enumerate(severities):
            count = counts.get((day, severity.pk), 0)
            week_counts.append(count)
            if not count:
                continue
            height = count * scale
            y -= height
            segments.append(
                ChartSegment(
                    round(y, 1),
                    round(height, 1),
                    tone_of(rank_index),
                    f"Week of {day:%d %b}: {count} {severity.key}",
                )
            )
        weeks.append(
            ChartWeek(
                start=day,
                label=f"{day:%d %b}",
                show_label=index % every == 0,
                x=round(x, 1),
                width=round(bar, 1),
                center=round(x + bar / 2, 1),
                total=total,
                total_y=round(y - 4, 1),
                segments=segments,
                counts=week_counts,
            )
        )
    busiest = max(weeks, key=lambda week: week.total, default=None)
    label = f"Incidents per week, {len(weeks)} weeks, {sum(totals)} in all"
    if busiest is not None and busiest.total:
        label += f"; busiest: week of {busiest.label} with {busiest.total}"
    return WeeklyChart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        axis_y=CHART_PLOT_BOTTOM,
        label_y=CHART_HEIGHT - 6,
        severities=[(s.key, tone_of(index)) for index, s in enumerate(severities)],
        weeks=weeks,
        aria_label=label,
    )


@dataclass(frozen=True)
class FiguresReport:
    period: Period
    comparison: Comparison
    chart: WeeklyChart


def figures_report(key: str, now: datetime | None = None) -> FiguresReport:
    """Everything the figures page shows for the period ``key``: eight queries."""
    now = now or timezone.now()
    period = period_bounds(key, now)
    severities = list(Severity.objects.order_by("rank"))
    current = incident_figures(period.start, period.end, now=now, severities=severities)
    previous = incident_figures(
        period.previous_start, period.previous_end, now=now, severities=severities
    )
    return FiguresReport(
        period,
        compare(current, previous),
        weekly_chart(period.start, period.end, severities=severities),
    )
