"""Delivery and incident-response figures for managers (/reports/), DORA-style, for a period
(and optionally a team or a service) against the one before it:

- deployment frequency: succeeded ``services.rollout`` operations (dated when they finished)
  per week;
- change failure rate: the share of those rollouts followed within 24 h by a rollback or a
  restart of the same target (requested and not rejected or cancelled), or by an incident
  declared on the target's service; each rollout counts once however many followed it;
- time to restore service: incident declared → resolved, mean and median, over the incidents
  resolved in the period (the definition of apps.incidents.figures);
- mean time to acknowledge and post-mortem compliance: apps.incidents.figures itself, over
  the incidents on the services in scope;
- backups succeeded and failed per database target, and its last passed restore.

Every figure comes from aggregate queries over the whole period (a fixed number of queries
whatever the number of rows), and each has weekly bars drawn as server-rendered SVG.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.db.models import (
    Avg,
    Case,
    CharField,
    Count,
    Exists,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Cast, TruncWeek
from django.utils import timezone

from apps.backups.choices import BackupState, RestoreState
from apps.backups.models import Backup, DatabaseTarget, RestoreRun
from apps.incidents import figures
from apps.incidents.models import Incident, Severity
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.services.models import TARGET_TYPE, DeploymentTarget, Service

ROLLOUT = "services.rollout"
# What undoes or patches up a rollout: asked for within this long, the rollout failed.
REPAIR_KINDS = ["services.rollback", "services.restart"]
FAILURE_WINDOW = timedelta(hours=24)
# A repair that never ran says nothing about the rollout.
NOT_REPAIRS = [State.REJECTED, State.CANCELLED]
CURRENT, PREVIOUS = "current", "previous"


# --- What the URL asks for ------------------------------------------------------------------


class ReportForm(forms.Form):
    """The period and scope of the report, as the URL carries them; all optional."""

    period = forms.ChoiceField(required=False, choices=figures.PERIOD_CHOICES, label="Period")
    team = forms.CharField(required=False, max_length=100, label="Team")
    service = forms.SlugField(required=False, max_length=100, label="Service")


@dataclass(frozen=True)
class Scope:
    """Which services the delivery figures cover: all, one team's, or one service."""

    team: str = ""
    service: Service | None = None

    @property
    def label(self) -> str:
        if self.service is not None:
            return f"service {self.service.name}"
        if self.team:
            return f"team {self.team}"
        return "all services"

    @property
    def narrowed(self) -> bool:
        return bool(self.team or self.service)

    def targets(self) -> QuerySet[DeploymentTarget]:
        targets = DeploymentTarget.objects.all()
        if self.service is not None:
            return targets.filter(service=self.service)
        if self.team:
            return targets.filter(service__team=self.team)
        return targets

    def services(self) -> QuerySet[Service]:
        if self.service is not None:
            return Service.objects.filter(pk=self.service.pk)
        if self.team:
            return Service.objects.filter(team=self.team)
        return Service.objects.all()

    def incidents(self) -> QuerySet[Incident]:
        """The incidents on a service in scope (each once, however many it touches)."""
        incidents = Incident.objects.all()
        if self.narrowed:
            incidents = incidents.filter(
                pk__in=Subquery(
                    Incident.services.through.objects.filter(service__in=self.services()).values(
                        "incident_id"
                    )
                )
            )
        return incidents


# --- Queries ----------------------------------------------------------------------------------


def _bucket(field: str, period: figures.Period) -> Case:
    """Which of the two periods a row belongs to, so one query serves both."""
    return Case(
        When(**{f"{field}__gte": period.start}, then=Value(CURRENT)),
        default=Value(PREVIOUS),
        output_field=CharField(),
    )


def rollouts(scope: Scope, start: datetime, end: datetime) -> QuerySet[Operation]:
    """Succeeded rollouts in scope that finished in ``[start, end)``, each marked ``failed``
    when a repair or an incident followed it within FAILURE_WINDOW."""
    operations = Operation.objects.filter(
        kind=ROLLOUT,
        state=State.SUCCEEDED,
        target_type=TARGET_TYPE,
        finished_at__gte=start,
        finished_at__lt=end,
    )
    if scope.narrowed:
        # Operation.target_id is text: compare it with the targets' ids as text.
        ids = scope.targets().annotate(id_text=Cast("pk", CharField())).values("id_text")
        operations = operations.filter(target_id__in=Subquery(ids))
    repaired = Operation.objects.filter(
        kind__in=REPAIR_KINDS,
        target_type=TARGET_TYPE,
        target_id=OuterRef("target_id"),
        created_at__gt=OuterRef("finished_at"),
        created_at__lte=OuterRef("finished_at") + FAILURE_WINDOW,
    ).exclude(state__in=NOT_REPAIRS)
    incident = Incident.objects.annotate(
        target_text=Cast("services__targets__pk", CharField())
    ).filter(
        target_text=OuterRef("target_id"),
        declared_at__gt=OuterRef("finished_at"),
        declared_at__lte=OuterRef("finished_at") + FAILURE_WINDOW,
    )
    return operations.annotate(failed=Exists(repaired) | Exists(incident))


@dataclass(frozen=True)
class Delivery:
    deploys: int
    failed: int
    weeks: float

    @property
    def per_week(self) -> float:
        return self.deploys / self.weeks if self.weeks else 0.0

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.deploys if self.deploys else None


def _weeks(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / timedelta(days=7).total_seconds()


def delivery(
    scope: Scope, period: figures.Period
) -> tuple[Delivery, Delivery, dict[datetime, tuple[int, int]]]:
    """The deploys and failed deploys of both periods, and the current one's by week: one
    query, grouped by period and week."""
    rows = (
        rollouts(scope, period.previous_start, period.end)
        .exclude(finished_at__gte=period.previous_end, finished_at__lt=period.start)
        .annotate(
            bucket=_bucket("finished_at", period),
            week=TruncWeek("finished_at", tzinfo=UTC),
        )
        .order_by()
        .values("bucket", "week")
        .annotate(deploys=Count("id"), failures=Count("id", filter=Q(failed=True)))
        .values_list("bucket", "week", "deploys", "failures")
    )
    totals: dict[str, list[int]] = {CURRENT: [0, 0], PREVIOUS: [0, 0]}
    weekly: dict[datetime, tuple[int, int]] = {}
    for bucket, week, deploys, failures in rows:
        totals[bucket][0] += deploys
        totals[bucket][1] += failures
        if bucket == CURRENT:
            weekly[figures.week_start(week)] = (deploys, failures)
    return (
        Delivery(totals[CURRENT][0], totals[CURRENT][1], _weeks(period.start, period.end)),
        Delivery(
            totals[PREVIOUS][0],
            totals[PREVIOUS][1],
            _weeks(period.previous_start, period.previous_end),
        ),
        weekly,
    )


@dataclass(frozen=True)
class Restore:
    resolved: int
    mean: timedelta | None
    median: timedelta | None


def _restore_times(
    scope: Scope, start: datetime, end: datetime
) -> list[tuple[datetime, timedelta]]:
    """(resolved at, declared → resolved) of the incidents resolved in ``[start, end)``:
    one query. Medians are taken in Python: SQLite, the embedded database, has no
    percentile function, and a period holds hundreds of incidents at most."""
    rows = (
        scope.incidents()
        .filter(resolved_at__gte=start, resolved_at__lt=end)
        .order_by()
        .values_list("resolved_at", "declared_at")
    )
    return [(resolved, resolved - declared) for resolved, declared in rows if resolved]


def _median(durations: list[timedelta]) -> timedelta:
    ordered = sorted(durations)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _restore(durations: list[timedelta]) -> Restore:
    if not durations:
        return Restore(0, None, None)
    return Restore(len(durations), sum(durations, timedelta()) / len(durations), _median(durations))


def time_to_restore(scope: Scope, period: figures.Period) -> tuple[Restore, Restore]:
    """Declared → resolved over the incidents resolved in each period: one query."""
    times = _restore_times(scope, period.previous_start, period.end)
    now = [duration for resolved, duration in times if resolved >= period.start]
    before = [duration for resolved, duration in times if resolved < period.previous_end]
    return _restore(now), _restore(before)


def weekly_restore(scope: Scope, period: figures.Period) -> dict[datetime, float]:
    """The median time to restore (seconds) of the incidents resolved each week: one query."""
    weeks: dict[datetime, list[timedelta]] = {}
    for resolved, duration in _restore_times(scope, period.start, period.end):
        weeks.setdefault(figures.week_start(resolved), []).append(duration)
    return {week: _median(durations).total_seconds() for week, durations in weeks.items()}


def weekly_acknowledge(scope: Scope, period: figures.Period) -> dict[datetime, float]:
    """The mean time to acknowledge (seconds) of the incidents in scope declared each week,
    as figures.incident_figures counts it over the whole period: one query."""
    rows = (
        scope.incidents()
        .filter(
            declared_at__gte=period.start,
            declared_at__lt=period.end,
            acknowledged_at__isnull=False,
        )
        .annotate(week=TruncWeek("declared_at", tzinfo=UTC))
        .order_by()
        .values("week")
        .annotate(mean=Avg(F("acknowledged_at") - F("declared_at")))
        .values_list("week", "mean")
    )
    return {figures.week_start(week): mean.total_seconds() for week, mean in rows if mean}


@dataclass(frozen=True)
class TargetBackups:
    target: DatabaseTarget
    succeeded: int
    failed: int
    previous_succeeded: int
    previous_failed: int
    last_verified: datetime | None


def backups(scope: Scope, period: figures.Period) -> list[TargetBackups]:
    """Per database target in scope: backups succeeded and failed in both periods (by when
    they started) and the end of its last passed restore, ever: one query."""

    def counted(state: str, start: datetime, end: datetime) -> Count:
        return Count(
            "backups",
            filter=Q(
                backups__state=state, backups__started_at__gte=start, backups__started_at__lt=end
            ),
        )

    last_passed = (
        RestoreRun.objects.filter(target=OuterRef("pk"), state=RestoreState.PASSED)
        .order_by()
        .values("target")
        .annotate(last=Max("finished_at"))
        .values("last")
    )
    targets = DatabaseTarget.objects.all()
    if scope.narrowed:
        targets = targets.filter(service__in=scope.services())
    rows = targets.annotate(
        ok=counted(BackupState.SUCCEEDED, period.start, period.end),
        bad=counted(BackupState.FAILED, period.start, period.end),
        ok_before=counted(BackupState.SUCCEEDED, period.previous_start, period.previous_end),
        bad_before=counted(BackupState.FAILED, period.previous_start, period.previous_end),
        last_verified=Subquery(last_passed),
    ).order_by("name")
    return [
        TargetBackups(row, row.ok, row.bad, row.ok_before, row.bad_before, row.last_verified)
        for row in rows.only("pk", "name", "is_production")
    ]


def weekly_backups(scope: Scope, period: figures.Period) -> dict[datetime, tuple[int, int]]:
    """Backups succeeded and failed per week of the current period: one query."""
    found = Backup.objects.filter(started_at__gte=period.start, started_at__lt=period.end)
    if scope.narrowed:
        found = found.filter(target__service__in=scope.services())
    rows = (
        found.annotate(week=TruncWeek("started_at", tzinfo=UTC))
        .order_by()
        .values("week")
        .annotate(
            ok=Count("id", filter=Q(state=BackupState.SUCCEEDED)),
            bad=Count("id", filter=Q(state=BackupState.FAILED)),
        )
        .values_list("week", "ok", "bad")
    )
    return {figures.week_start(week): (ok, bad) for week, ok, bad in rows}


# --- Charts -----------------------------------------------------------------------------------

CHART_WIDTH = 320
CHART_HEIGHT = 96
PLOT_TOP = 14
PLOT_BOTTOM = 76
MAX_BAR = 28


@dataclass(frozen=True)
class Segment:
    y: float
    height: float
    tone: str


@dataclass(frozen=True)
class Week:
    start: datetime
    label: str
    show_label: bool
    x: float
    width: float
    center: float
    text: str  # the value, above the bar
    text_y: float
    title: str
    segments: list[Segment]


@dataclass(frozen=True)
class Chart:
    """Weekly bars (optionally two stacked series) as the shapes of a small SVG."""

    width: int
    height: int
    axis_y: int
    label_y: int
    weeks: list[Week]
    legend: list[tuple[str, str]]  # (name, tone)
    aria_label: str


def _mondays(start: datetime, end: datetime) -> list[datetime]:
    days = []
    monday = figures.week_start(start)
    while monday < end:
        days.append(monday)
        monday += timedelta(days=7)
    return days


def weekly_chart(
    period: figures.Period,
    values: dict[datetime, Sequence[float]],
    *,
    what: str,
    series: list[tuple[str, str]],
    show: Callable[[float], str],
) -> Chart:
    """Bars of ``values`` (per Monday, one number per series, stacked) over the period."""
    mondays = _mondays(period.start, period.end)
    slot = CHART_WIDTH / max(len(mondays), 1)
    bar = min(slot * 0.7, MAX_BAR)
    totals = [sum(values.get(day, ())) for day in mondays]
    highest = max(totals, default=0)
    scale = (PLOT_BOTTOM - PLOT_TOP) / highest if highest else 0
    every = max(1, round(len(mondays) / 5))
    weeks = []
    for index, (day, total) in enumerate(zip(mondays, totals, strict=True)):
        x = index * slot + (slot - bar) / 2
        y = float(PLOT_BOTTOM)
        segments = []
        for amount, (_, tone) in zip(values.get(day, ()), series, strict=False):
            if amount:
                y -= amount * scale
                segments.append(Segment(round(y, 1), round(amount * scale, 1), tone))
        parts = values.get(day, ())
        detail = ", ".join(
            f"{show(amount)} {name}" for amount, (name, _) in zip(parts, series, strict=False)
        )
        weeks.append(
            Week(
                start=day,
                label=f"{day:%d %b}",
                show_label=index % every == 0,
                x=round(x, 1),
                width=round(bar, 1),
                center=round(x + bar / 2, 1),
                text=show(total) if total else "",
                text_y=round(y - 3, 1),
                title=f"Week of {day:%d %b}: {detail or 'none'}",
                segments=segments,
            )
        )
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        axis_y=PLOT_BOTTOM,
        label_y=CHART_HEIGHT - 4,
        weeks=weeks,
        legend=series if len(series) > 1 else [],
        aria_label=f"{what} per week, {len(weeks)} weeks",
    )


# --- The report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One number of the report with its trend, how it is defined, and its chart."""

    trend: figures.Trend
    chart: Chart | None
    explain: str


@dataclass(frozen=True)
class Report:
    period: figures.Period
    scope: Scope
    cards: list[Figure]
    backups: list[TargetBackups]
    backups_chart: Chart
    incidents_chart: figures.WeeklyChart


def _per_week(value: float | None, change: bool = False) -> str:
    return "—" if value is None else f"{value:.1f} per week"


def _seconds(value: float) -> str:
    return figures._seconds(value) if value else "0"


def _count(value: float) -> str:
    return f"{value:g}"


def _secs(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


def build_report(period_key: str, scope: Scope, now: datetime | None = None) -> Report:
    """Everything /reports/ shows: a fixed number of aggregate queries (fourteen)."""
    now = now or timezone.now()
    period = figures.period_bounds(period_key, now)
    current, previous, deploy_weeks = delivery(scope, period)
    restore, restore_before = time_to_restore(scope, period)
    severities = list(Severity.objects.order_by("rank"))
    incidents = scope.incidents()
    desk = figures.incident_figures(
        period.start, period.end, now=now, severities=severities, incidents=incidents
    )
    desk_before = figures.incident_figures(
        period.previous_start,
        period.previous_end,
        now=now,
        severities=severities,
        incidents=incidents,
    )
    comparison = figures.compare(desk, desk_before)
    by_label = {trend.label: trend for trend in comparison.headline}
    acknowledge = by_label["Mean time to acknowledge"]
    compliance = by_label["Post-mortems within 48 h"]
    deploy_chart = weekly_chart(
        period,
        {day: (deploys,) for day, (deploys, _) in deploy_weeks.items()},
        what="Deployments",
        series=[("deployments", "text-primary")],
        show=_count,
    )
    failure_chart = weekly_chart(
        period,
        {day: (deploys - failed, failed) for day, (deploys, failed) in deploy_weeks.items()},
        what="Deployments, failed ones on top,",
        series=[("fine", "text-success"), ("failed", "text-danger")],
        show=_count,
    )
    restore_chart = weekly_chart(
        period,
        {day: (seconds,) for day, seconds in weekly_restore(scope, period).items()},
        what="Median time to restore",
        series=[("median", "text-warning")],
        show=_seconds,
    )
    acknowledge_chart = weekly_chart(
        period,
        {day: (seconds,) for day, seconds in weekly_acknowledge(scope, period).items()},
        what="Mean time to acknowledge",
        series=[("mean", "text-info")],
        show=_seconds,
    )
    backup_chart = weekly_chart(
        period,
        {day: (ok, bad) for day, (ok, bad) in weekly_backups(scope, period).items()},
        what="Backups",
        series=[("succeeded", "text-success"), ("failed", "text-danger")],
        show=_count,
    )
    restore_words = "—"
    if restore.median is not None:
        restore_words = figures._seconds(restore.median.total_seconds())
    report_figures = [
        Figure(
            figures._trend(
                "Deployment frequency",
                current.per_week,
                previous.per_week,
                show=_per_week,
                lower_is_better=False,
                note=f"{current.deploys} succeeded rollouts",
            ),
            deploy_chart,
            "Succeeded rollouts, by when they finished.",
        ),
        Figure(
            figures._trend(
                "Change failure rate",
                current.failure_rate,
                previous.failure_rate,
                show=figures._percent,
                lower_is_better=True,
                note=f"{current.failed} of {current.deploys} rollouts",
            ),
            failure_chart,
            "Rollouts followed within 24 h by a rollback or restart of the same target, "
            "or by an incident declared on its service.",
        ),
        Figure(
            figures._trend(
                "Time to restore service (mean)",
                _secs(restore.mean),
                _secs(restore_before.mean),
                show=figures._seconds,
                lower_is_better=True,
                note=f"median {restore_words}, over {restore.resolved} resolved",
            ),
            restore_chart,
            "Incident declared → resolved, over the incidents resolved in the period; the "
            "bars are each week's median.",
        ),
        Figure(
            acknowledge,
            acknowledge_chart,
            "Incident declared → acknowledged, over the incidents declared in the period.",
        ),
        Figure(
            compliance,
            None,
            "Post-mortems completed within 48 h of resolving, where the severity asks for one.",
        ),
    ]
    return Report(
        period=period,
        scope=scope,
        cards=report_figures,
        backups=backups(scope, period),
        backups_chart=backup_chart,
        incidents_chart=figures.weekly_chart(
            period.start, period.end, severities=severities, incidents=incidents
        ),
    )


def read_scope(form: ReportForm, services: list[Service]) -> tuple[Scope, list[str]]:
    """The scope the URL asks for, and what in it could not be used, in words."""
    problems = [
        f"{form.fields[name].label}: {' '.join(str(error) for error in errors)}"
        for name, errors in form.errors.items()
    ]
    cleaned: dict[str, Any] = getattr(form, "cleaned_data", {})
    team = cleaned.get("team") or ""
    slug = cleaned.get("service") or ""
    service = next((each for each in services if each.slug == slug), None)
    if slug and service is None:
        shown = f"team {team}" if team else "all services"
        problems.append(f'No service "{slug}": showing {shown}.')
    teams = {each.team for each in services}
    if team and team not in teams and service is None:
        problems.append(f'No team "{team}": showing all services.')
        team = ""
    return Scope(team=team, service=service), problems


def teams_of(services: list[Service]) -> list[str]:
    return sorted({service.team for service in services})
