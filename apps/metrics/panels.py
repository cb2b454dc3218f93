"""The metrics panel of a service page, for one deployment target: the current value of each
metric against its thresholds (the evaluator's stored states, no live query), and one chart
per metric over the chosen window, drawn from range queries with the target's deploys marked.

Prometheus down, not configured, a rejected query or no data: the panel or the chart says so
in a sentence; it never raises and never draws an empty chart that would read as "ok"."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from apps.metrics import charts, connection
from apps.metrics.choices import Comparison, MetricStatus
from apps.metrics.client import MetricsUnavailable, QueryError
from apps.metrics.models import MetricDefinition, MetricState
from apps.operations.models import Operation
from apps.services.models import TARGET_TYPE, DeploymentTarget

# The changes marked on the time axis: what replaces the pods' image or revision.
DEPLOY_KINDS = {"services.rollout": "rollout", "services.rollback": "rollback"}


@dataclass(frozen=True)
class MetricRow:
    """One metric's current value against its thresholds, as the evaluator last stored it."""

    definition: MetricDefinition
    state: str
    value: str  # formatted with the unit, or a word when there is none
    thresholds: str  # "warning > 1 %, critical > 5 %"
    since: datetime | None
    checked_at: datetime | None
    reason: str


@dataclass(frozen=True)
class ChartBox:
    """One metric's chart, or the sentence saying why there is none."""

    definition: MetricDefinition
    chart: charts.TimeChart | None
    message: str


@dataclass
class Panel:
    target: DeploymentTarget
    range_key: str
    start: datetime
    end: datetime
    step_seconds: int
    rows: list[MetricRow] = field(default_factory=list)
    charts: list[ChartBox] = field(default_factory=list)
    message: str = ""  # the whole panel's problem: no definitions, Prometheus unavailable

    @property
    def range_label(self) -> str:
        return charts.RANGE_LABELS[self.range_key]

    @property
    def ranges(self) -> list[tuple[str, str]]:
        return list(charts.RANGE_LABELS.items())


def thresholds_text(definition: MetricDefinition) -> str:
    sign = ">" if definition.comparison == Comparison.ABOVE else "<"
    parts = [
        f"{level} {sign} {charts.format_value(limit, definition.unit)}"
        for level, limit in (("warning", definition.warning), ("critical", definition.critical))
        if limit is not None
    ]
    return ", ".join(parts) or "no thresholds"


def deploys_of(target: DeploymentTarget, start: datetime, end: datetime) -> list[charts.Deploy]:
    """The target's rollouts and rollbacks that finished inside [start, end]."""
    rows = (
        Operation.objects.filter(
            target_type=TARGET_TYPE,
            target_id=str(target.pk),
            kind__in=DEPLOY_KINDS,
            finished_at__gte=start,
            finished_at__lte=end,
        )
        .order_by("finished_at")
        .only("pk", "kind", "state", "finished_at", "params")
    )
    found = []
    for operation in rows:
        assert operation.finished_at is not None
        word = DEPLOY_KINDS[operation.kind]
        image = operation.params.get("image") if operation.kind == "services.rollout" else None
        what = f" of {image}" if image else ""
        found.append(
            charts.Deploy(
                at=operation.finished_at,
                label=f"{word.capitalize()} #{operation.pk}{what} "
                f"({operation.get_state_display().lower()})",
                url=operation.get_absolute_url(),
                kind=word,
            )
        )
    return found


def _rows(target: DeploymentTarget, definitions: list[MetricDefinition]) -> list[MetricRow]:
    states = {
        state.definition_id: state
        for state in MetricState.objects.filter(target=target, definition__in=definitions)
    }
    rows = []
    for definition in definitions:
        state = states.get(definition.pk)
        if state is None:
            rows.append(
                MetricRow(
                    definition,
                    MetricStatus.NO_DATA,
                    "not evaluated yet",
                    thresholds_text(definition),
                    None,
                    None,
                    "The evaluator has not checked it yet.",
                )
            )
            continue
        value = (
            charts.format_value(state.value, definition.unit) if state.value is not None else "—"
        )
        rows.append(
            MetricRow(
                definition,
                state.state,
                value,
                thresholds_text(definition),
                state.since,
                state.checked_at,
                state.reason,
            )
        )
    return rows


def metrics_panel(
    target: DeploymentTarget, range_key: str = charts.DEFAULT_RANGE, now: datetime | None = None
) -> Panel:
    """The panel for ``target`` over the window ``range_key`` ending at ``now``."""
    range_key = range_key if range_key in charts.RANGES else charts.DEFAULT_RANGE
    end = now or timezone.now()
    span = charts.RANGES[range_key]
    start = end - span
    step = charts.step_for(span)
    panel = Panel(target, range_key, start, end, step)
    definitions = list(
        MetricDefinition.objects.filter(service_id=target.service_id, enabled=True).order_by(
            "order", "key"
        )
    )
    if not definitions:
        panel.message = (
            f"No metrics are defined for {target.service.name}: an admin adds them on the "
            "service's metric definitions page."
        )
        return panel
    panel.rows = _rows(target, definitions)
    try:
        prometheus = connection.client()
    except MetricsUnavailable as exc:
        panel.message = f"No charts: {exc.message}"
        return panel
    deploys = deploys_of(target, start, end)
    for definition in definitions:
        try:
            series = prometheus.range(definition.promql(target), start, end, step)
        except QueryError as exc:
            panel.charts.append(
                ChartBox(definition, None, f"Prometheus rejected the query: {exc.message}")
            )
            continue
        except MetricsUnavailable as exc:
            # Down or slow: asking again for every metric would only make the page wait.
            panel.message = f"Metrics unavailable: {exc.message}"
            panel.charts = []
            return panel
        chart = charts.time_chart(
            series,
            name=definition.name,
            unit=definition.unit,
            start=start,
            end=end,
            step_seconds=step,
            warning=definition.warning,
            critical=definition.critical,
            deploys=deploys,
        )
        if chart.empty:
            panel.charts.append(
                ChartBox(
                    definition,
                    None,
                    f"No data: Prometheus has no value of {definition.name} for "
                    f"{target} over the last {panel.range_label}.",
                )
            )
            continue
        message = ""
        if len(series) > charts.MAX_SERIES:
            message = (
                f"The query returns {len(series)} series; the first {charts.MAX_SERIES} are drawn."
            )
        panel.charts.append(ChartBox(definition, chart, message))
    return panel
