"""What the public page and /status.json say, read once for both: the components with their
status now and over the history, and the incidents with their public updates. A fixed
number of queries (five, plus one per registered source), whatever the amount of history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from apps.incidents.models import Incident
from apps.statuspage.choices import OVERALL
from apps.statuspage.incident_source import public_incidents
from apps.statuspage.models import StatusComponent
from apps.statuspage.sources import HISTORY_DAYS, Report, build_report, history_start


@dataclass
class Summary:
    report: Report
    current_incidents: list[Incident]
    past_incidents: list[Incident]

    @property
    def indicator(self) -> str:
        return OVERALL[self.report.status][0]

    @property
    def description(self) -> str:
        return OVERALL[self.report.status][1]


def summarize(now: datetime | None = None, *, days: int = HISTORY_DAYS) -> Summary:
    now = now or timezone.now()
    components = list(StatusComponent.objects.all())
    report = build_report(components, now, days=days)
    incidents = public_incidents(components, history_start(now, report.zone, days))
    return Summary(
        report=report,
        current_incidents=[incident for incident in incidents if incident.is_open],
        past_incidents=[incident for incident in incidents if not incident.is_open],
    )


def as_json(summary: Summary) -> dict[str, Any]:
    """In the shape of Atlassian Statuspage's summary.json, so that its readers read this."""
    return {
        "status": {"indicator": summary.indicator, "description": summary.description},
        "components": [
            {
                "name": each.component.name,
                "description": each.component.description,
                "status": each.status.value,
                "position": index,
                "updated_at": each.updated_at,
            }
            for index, each in enumerate(summary.report.components)
        ],
        "incidents": [
            {
                "id": incident.pk,
                "title": incident.title,
                "severity": incident.severity.key,
                "impact": incident.public_status.value,  # type: ignore[attr-defined]
                "state": incident.state,
                "declared_at": incident.declared_at,
                "resolved_at": incident.resolved_at,
                "components": [
                    component.name
                    for component in incident.public_components  # type: ignore[attr-defined]
                ],
                "updates": [
                    {
                        "status": update.current_status,
                        "findings": update.findings,
                        "next_steps": update.next_steps,
                        "eta": update.eta,
                        "at": update.occurred_at,
                    }
                    for update in incident.public_updates  # type: ignore[attr-defined]
                ],
            }
            for incident in summary.current_incidents + summary.past_incidents
        ],
        "generated_at": summary.report.generated_at,
    }
