"""The public status page's "Scheduled maintenance" section: windows in progress and those
announced ahead, on public components, seen in production, and the subscribe link.

templates/statuspage/page.html includes it with the page's report:
``{% load maintenance_public %}{% maintenance_notices report %}``. The components come from
the report (already read), so the section costs one query whatever the number of windows
and components: the next occurrences (a limited subquery) joined with their window and the
public services each affects, one row per (occurrence, public service)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django import template
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.maintenance.choices import OccurrenceState, StageKind
from apps.maintenance.models import Occurrence, Stage, StageOutcome, Window
from apps.statuspage.models import StatusComponent
from apps.statuspage.sources import Report

register = template.Library()

LIMIT = 10


def notices(components: Sequence[StatusComponent], now: datetime) -> list[dict[str, Any]]:
    """The running and announced occurrences on ``components``, soonest first (at most
    LIMIT), each with its window and the names of the public components it affects."""
    public = {component.service_id: component.name for component in components}
    if not public:
        return []
    named = Window.environments.through.objects.filter(window_id=OuterRef("window_id"))
    announced = Stage.objects.filter(
        occurrence_id=OuterRef("pk"), kind=StageKind.ANNOUNCE, outcome=StageOutcome.SENT
    )
    affects_public = Window.services.through.objects.filter(
        window_id=OuterRef("window_id"), service_id__in=list(public)
    )
    shown = (
        Occurrence.objects.filter(Exists(affects_public))
        .filter(
            Q(state=OccurrenceState.IN_PROGRESS)
            | Q(Exists(announced), state=OccurrenceState.SCHEDULED, end_at__gt=now)
        )
        .filter(Q(~Exists(named)) | Q(Exists(named.filter(environment__is_production=True))))
        .order_by("start_at", "pk")
        .values("pk")[:LIMIT]
    )
    rows = (
        Occurrence.objects.filter(pk__in=shown, window__services__in=list(public))
        .order_by("start_at", "pk")
        .values_list(
            "pk",
            "state",
            "start_at",
            "end_at",
            "window_id",
            "window__title",
            "window__impact",
            "window__message",
            "window__services",
        )
    )
    found: dict[int, dict[str, Any]] = {}
    for pk, state, start_at, end_at, window_id, title, impact, message, service_id in rows:
        if pk not in found:
            window = Window(pk=window_id, title=title, impact=impact, message=message)
            occurrence = Occurrence(
                pk=pk, window=window, state=state, start_at=start_at, end_at=end_at
            )
            found[pk] = {"occurrence": occurrence, "window": window, "components": []}
        found[pk]["components"].append(public[service_id])
    for notice in found.values():
        notice["components"].sort()
    return list(found.values())


@register.inclusion_tag("maintenance/_status_page.html")
def maintenance_notices(report: Report | None = None) -> dict[str, Any]:
    if report is None:
        components: list[StatusComponent] = list(StatusComponent.objects.all())
        now = timezone.now()
    else:
        components = [row.component for row in report.components]
        now = report.generated_at
    return {
        "notices": notices(components, now),
        "subscribe": bool(components),
        "now": now,
    }
