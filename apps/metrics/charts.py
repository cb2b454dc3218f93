"""Time-series charts of one metric as plain values for a server-rendered SVG
(templates/metrics/_chart.html): the series as polylines, the warning and critical thresholds
as horizontal lines, deploys as marks on the time axis, and words for every one of them.

A pure function of its inputs (the range query's series, the window, the thresholds, the
deploys), so a test can assert where a value, a threshold or a deploy is drawn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apps.metrics.client import Series

# The windows of the service page, by the key used in its URLs.
RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
RANGE_LABELS = {"1h": "1 hour", "6h": "6 hours", "24h": "24 hours", "7d": "7 days"}
DEFAULT_RANGE = "6h"
MAX_POINTS = 300
# Steps a person reads easily; the smallest that keeps a chart under MAX_POINTS is used.
STEPS = [15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400]
MAX_SERIES = 5  # more label sets than this is a template that is not per target

WIDTH = 600
HEIGHT = 180
LEFT = 44  # room for the value labels of the y axis
RIGHT = 8
TOP = 12  # room for the deploy marks
BOTTOM = 22  # room for the time labels


def step_for(span: timedelta, max_points: int = MAX_POINTS) -> int:
    """The range query's step in seconds: the smallest of STEPS giving at most ``max_points``."""
    seconds = span.total_seconds()
    for step in STEPS:
        if seconds / step <= max_points:
            return step
    return math.ceil(seconds / max_points)


@dataclass(frozen=True)
class Deploy:
    """A change of the target to mark on the time axis."""

    at: datetime
    label: str  # "Rollout #12 (succeeded)"
    url: str
    kind: str  # "rollout" or "rollback": the CSS class of its mark


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Line:
    """One series: its drawn segments (broken where there is no value) and its points."""

    segments: list[str]  # SVG polyline "points", one per run of values
    dots: list[tuple[float, float]]  # a lone value between gaps, drawn as a dot
    points: list[tuple[float, float]]  # the plotted (unix time, value), NaN left out
    title: str


@dataclass(frozen=True)
class Threshold:
    y: float
    value: float
    level: str  # "warning" or "critical"
    label: str


@dataclass(frozen=True)
class DeployMark:
    x: float
    label: str
    url: str
    kind: str


@dataclass
class TimeChart:
    width: int
    height: int
    left: int
    right: float
    top: int
    bottom: float
    lines: list[Line]
    thresholds: list[Threshold]
    deploys: list[DeployMark]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    low: float
    high: float
    start: float
    end: float
    aria_label: str
    empty: bool  # no value at all in the window: the template says so instead of drawing

    def x_of(self, at: float) -> float:
        return round(self.left + (at - self.start) / (self.end - self.start) * self.plot_width, 1)

    def y_of(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return round(self.bottom - share * (self.bottom - self.top), 1)

    @property
    def plot_width(self) -> float:
        return self.right - self.left

    @property
    def plot_height(self) -> float:
        return self.bottom - self.top

    @property
    def y_label_x(self) -> int:
        return self.left - 4

    @property
    def x_label_y(self) -> int:
        return self.height - 6

    @property
    def middle(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.top + self.bottom) / 2


def format_value(value: float, unit: str) -> str:
    """A figure as people read it: 3 significant digits, the unit after it."""
    if math.isnan(value):
        return "no value"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    magnitude = abs(value)
    text = f"{value:.0f}" if magnitude >= 100 else f"{value:.3g}"
    if unit == "%":
        return f"{text} %"
    return f"{text} {unit}".strip()


def _nice_step(span: float, count: int = 4) -> float:
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _value_range(values: Sequence[float], thresholds: Sequence[float]) -> tuple[float, float]:
    """From 0 (or the lowest value when negative) to above the highest value and threshold,
    so that the threshold lines are always inside the chart."""
    everything = [*values, *thresholds]
    low = min(0.0, *everything) if everything else 0.0
    high = max(everything) if everything else 1.0
    if high <= low:
        high = low + 1.0
    step = _nice_step((high - low) * 1.1)
    return low, math.ceil(high * 1.05 / step) * step if high > 0 else high


def _time_ticks(start: float, end: float) -> list[tuple[float, str]]:
    span = end - start
    every, pattern = next(
        (
            (seconds, pattern)
            for limit, seconds, pattern in (
                (2 * 3600, 600, "%H:%M"),
                (8 * 3600, 3600, "%H:%M"),
                (30 * 3600, 4 * 3600, "%H:%M"),
                (10 * 86400, 86400, "%d %b"),
            )
            if span <= limit
        ),
        (7 * 86400, "%d %b"),
    )
    first = math.ceil(start / every) * every
    ticks: list[tuple[float, str]] = []
    at = first
    while at <= end:
        ticks.append((at, datetime.fromtimestamp(at, UTC).strftime(pattern)))
        at += every
    return ticks


def _runs(points: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """Consecutive points with a value; a NaN (or a missing step) breaks the line."""
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for at, value in points:
        if math.isnan(value) or math.isinf(value):
            if current:
                runs.append(current)
            current = []
            continue
        current.append((at, value))
    if current:
        runs.append(current)
    return runs


def _series_title(series: Series, name: str) -> str:
    shown = {key: value for key, value in series.labels.items() if key != "__name__"}
    if not shown:
        return name
    return f"{name} {{{', '.join(f'{key}={value!r}' for key, value in sorted(shown.items()))}}}"


def time_chart(
    series: Sequence[Series],
    *,
    name: str,
    unit: str,
    start: datetime,
    end: datetime,
    step_seconds: int,
    warning: float | None = None,
    critical: float | None = None,
    deploys: Sequence[Deploy] = (),
) -> TimeChart:
    """The chart of a range query's ``series`` over [start, end], with the thresholds drawn
    and the ``deploys`` inside the window marked."""
    begin, finish = start.timestamp(), end.timestamp()
    if finish <= begin:
        finish = begin + 1
    shown = list(series)[:MAX_SERIES]
    values = [
        value
        for each in shown
        for _, value in each.points
        if not (math.isnan(value) or math.isinf(value))
    ]
    limits = [value for value in (warning, critical) if value is not None]
    low, high = _value_range(values, limits)
    chart = TimeChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=HEIGHT - BOTTOM,
        lines=[],
        thresholds=[],
        deploys=[],
        x_ticks=[],
        y_ticks=[],
        low=low,
        high=high,
        start=begin,
        end=finish,
        aria_label="",
        empty=not values,
    )
    for each in shown:
        runs = _runs(
            [(at, value) for at, value in each.points if begin - step_seconds <= at <= finish]
        )
        drawn = [[(chart.x_of(at), chart.y_of(value)) for at, value in run] for run in runs]
        chart.lines.append(
            Line(
                segments=[
                    " ".join(f"{x:g},{y:g}" for x, y in run) for run in drawn if len(run) > 1
                ],
                dots=[run[0] for run in drawn if len(run) == 1],
                points=[point for run in runs for point in run],
                title=_series_title(each, name),
            )
        )
    for level, limit in (("warning", warning), ("critical", critical)):
        if limit is not None:
            chart.thresholds.append(
                Threshold(
                    y=chart.y_of(limit),
                    value=limit,
                    level=level,
                    label=f"{level.capitalize()} threshold: {format_value(limit, unit)}",
                )
            )
    for deploy in deploys:
        at = deploy.at.timestamp()
        if begin <= at <= finish:
            when = deploy.at.astimezone(UTC).strftime("%d %b %H:%M UTC")
            chart.deploys.append(
                DeployMark(chart.x_of(at), f"{deploy.label} at {when}", deploy.url, deploy.kind)
            )
    chart.x_ticks.extend(Tick(chart.x_of(at), label) for at, label in _time_ticks(begin, finish))
    step = _nice_step(high - low)
    value = low
    while value <= high + step / 1000:
        # Numbers only: the unit is in the chart's caption, and the labels stay narrow.
        chart.y_ticks.append(Tick(chart.y_of(value), format_value(value, "")))
        value += step
    chart.aria_label = _describe(chart, name, unit, values)
    return chart


def _describe(chart: TimeChart, name: str, unit: str, values: list[float]) -> str:
    if not values:
        return f"{name}: no data in this window"
    latest = next(
        (line.points[-1][1] for line in chart.lines if line.points),
        values[-1],
    )
    words = [
        f"{name}: latest {format_value(latest, unit)}, highest "
        f"{format_value(max(values), unit)}, lowest {format_value(min(values), unit)}"
    ]
    words += [threshold.label.lower() for threshold in chart.thresholds]
    if chart.deploys:
        words.append(f"{len(chart.deploys)} deploy{'s' if len(chart.deploys) > 1 else ''} marked")
    return "; ".join(words)
