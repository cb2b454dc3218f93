from __future__ import annotations

from django.db import models


class ComponentStatus(models.TextChoices):
    """What the public reads about a component, in Atlassian Statuspage's words (and values,
    so that tools which read its summary.json read ours)."""

    OPERATIONAL = "operational", "Operational"
    UNDER_MAINTENANCE = "under_maintenance", "Under maintenance"
    DEGRADED_PERFORMANCE = "degraded_performance", "Degraded performance"
    PARTIAL_OUTAGE = "partial_outage", "Partial outage"
    MAJOR_OUTAGE = "major_outage", "Major outage"


# From best to worst: a component (and the page) shows the worst status any source reports.
STATUS_ORDER = [status.value for status in ComponentStatus]


def worst(*statuses: str) -> ComponentStatus:
    """The worst of ``statuses`` (operational when there is none)."""
    return ComponentStatus(
        max(statuses, key=STATUS_ORDER.index, default=ComponentStatus.OPERATIONAL)
    )


# status → (Bootstrap icon, CSS modifier). The word is the status's label.
STATUS_LOOK: dict[str, tuple[str, str]] = {
    ComponentStatus.OPERATIONAL: ("check-circle-fill", "success"),
    ComponentStatus.UNDER_MAINTENANCE: ("tools", "info"),
    ComponentStatus.DEGRADED_PERFORMANCE: ("exclamation-triangle-fill", "warning"),
    ComponentStatus.PARTIAL_OUTAGE: ("exclamation-octagon-fill", "orange"),
    ComponentStatus.MAJOR_OUTAGE: ("x-octagon-fill", "danger"),
}

# The whole page's status, from its worst component: (indicator, description), the indicator
# being Statuspage's ("none", "minor", "major", "critical", "maintenance").
OVERALL: dict[str, tuple[str, str]] = {
    ComponentStatus.OPERATIONAL: ("none", "All systems operational"),
    ComponentStatus.UNDER_MAINTENANCE: ("maintenance", "Service under maintenance"),
    ComponentStatus.DEGRADED_PERFORMANCE: ("minor", "Degraded performance"),
    ComponentStatus.PARTIAL_OUTAGE: ("major", "Partial outage"),
    ComponentStatus.MAJOR_OUTAGE: ("critical", "Major outage"),
}


def status_for_severity_rank(rank: int) -> ComponentStatus:
    """An open incident's effect on its services: SEV-1 (rank 1) is a major outage, SEV-2 a
    partial outage, anything lower degraded performance."""
    if rank <= 1:
        return ComponentStatus.MAJOR_OUTAGE
    if rank == 2:
        return ComponentStatus.PARTIAL_OUTAGE
    return ComponentStatus.DEGRADED_PERFORMANCE
