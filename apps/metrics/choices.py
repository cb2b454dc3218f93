from __future__ import annotations

from django.db import models


class MetricStatus(models.TextChoices):
    """What the evaluator concluded about one metric of one target.

    "no_data" means Prometheus answered but gave no usable value (empty, NaN, several series);
    "unavailable" means Prometheus could not be asked: neither is ever shown as "ok"."""

    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"
    NO_DATA = "no_data", "No data"
    UNAVAILABLE = "unavailable", "Metrics unavailable"


# How bad a state is, for "the worst metric of a tile": alerting states first, then the
# states that say nothing can be concluded, then ok.
SEVERITY: dict[str, int] = {
    MetricStatus.OK: 0,
    MetricStatus.NO_DATA: 1,
    MetricStatus.UNAVAILABLE: 2,
    MetricStatus.WARNING: 3,
    MetricStatus.CRITICAL: 4,
}


class Comparison(models.TextChoices):
    ABOVE = ">", "above (>)"
    BELOW = "<", "below (<)"
