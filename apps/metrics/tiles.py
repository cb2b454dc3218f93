"""The services dashboard's metric badges: each tile coloured by its worst metric state,
read from the stored MetricState rows (one query for the whole page, never Prometheus)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from apps.metrics.choices import SEVERITY, MetricStatus
from apps.metrics.models import MetricState
from apps.services import badges
from apps.services.models import DeploymentTarget

TONES: dict[str, str] = {
    MetricStatus.CRITICAL: "danger",
    MetricStatus.WARNING: "warning",
    MetricStatus.UNAVAILABLE: "secondary",
    MetricStatus.NO_DATA: "secondary",
}
ICONS: dict[str, str] = {
    MetricStatus.CRITICAL: "graph-up-arrow",
    MetricStatus.WARNING: "graph-up-arrow",
    MetricStatus.UNAVAILABLE: "cloud-slash",
    MetricStatus.NO_DATA: "question-circle",
}


def _shown(value: float | None, unit: str) -> str:
    return "no value" if value is None else f"{value:.3g}{' ' if unit != '%' else ''}{unit}"


@badges.register_provider
def metric_badges(
    targets: Sequence[DeploymentTarget], now: datetime
) -> dict[int, list[badges.Badge]]:
    found: dict[int, list[badges.Badge]] = defaultdict(list)
    if not targets:
        return found
    rows = (
        MetricState.objects.filter(
            target_id__in=[target.pk for target in targets], definition__enabled=True
        )
        .exclude(state=MetricStatus.OK)
        .values_list(
            "target_id",
            "state",
            "value",
            "definition__name",
            "definition__unit",
        )
        .order_by("definition__order", "definition_id")
    )
    by_target: dict[int, list[tuple[str, float | None, str, str]]] = defaultdict(list)
    for target_id, state, value, name, unit in rows:
        by_target[target_id].append((state, value, name, unit))
    for target_id, states in by_target.items():
        worst = max(SEVERITY[state] for state, *_ in states)
        top = [entry for entry in states if SEVERITY[entry[0]] == worst]
        state, _, name, _ = top[0]
        label = name if len(top) == 1 else f"{name} +{len(top) - 1}"
        if state == MetricStatus.UNAVAILABLE:
            label = "Metrics unavailable"
        elif state == MetricStatus.NO_DATA:
            label = "Metrics: no data" if len(top) > 1 else f"{name}: no data"
        title = "; ".join(
            f"{entry_name}: {MetricStatus(entry_state).label} ({_shown(value, unit)})"
            for entry_state, value, entry_name, unit in states
        )
        found[target_id].append(
            badges.Badge(
                label,
                ICONS[state],
                TONES[state],
                title,
                health=state if state in (MetricStatus.WARNING, MetricStatus.CRITICAL) else "",
            )
        )
    return found
