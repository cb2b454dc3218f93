"""The public status page's "Scheduled maintenance" section: windows in progress and those
announced ahead, on public components, seen in production, and the subscribe link.

Not inserted into templates/statuspage/page.html yet: its three queries would break the
status page's promise of at most six (tests/statuspage). The line to insert, once the page's
budget allows it, before the Components section:
``{% load maintenance_public %}{% maintenance_notices %}``."""

from __future__ import annotations

from typing import Any

from django import template
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.maintenance.choices import OccurrenceState, StageKind
from apps.maintenance.models import Occurrence, StageOutcome, Window
from apps.statuspage.models import StatusComponent

register = template.Library()

LIMIT = 10


@register.inclusion_tag("maintenance/_status_page.html")
def maintenance_notices() -> dict[str, Any]:
    public = dict(StatusComponent.objects.values_list("service_id", "name"))
    if not public:
        return {"notices": [], "subscribe": False}
    named = Window.environments.through.objects.filter(window_id=OuterRef("window_id"))
    occurrences = (
        Occurrence.objects.filter(window__services__in=list(public))
        .filter(
            Q(state=OccurrenceState.IN_PROGRESS)
            | Q(
                state=OccurrenceState.SCHEDULED,
                stages__kind=StageKind.ANNOUNCE,
                stages__outcome=StageOutcome.SENT,
            )
        )
        .filter(Q(~Exists(named)) | Q(Exists(named.filter(environment__is_production=True))))
        .select_related("window")
        .prefetch_related("window__services")
        .distinct()
        .order_by("start_at")[:LIMIT]
    )
    notices = [
        {
            "occurrence": occurrence,
            "window": occurrence.window,
            "components": sorted(
                public[service.pk]
                for service in occurrence.window.services.all()
                if service.pk in public
            ),
        }
        for occurrence in occurrences
    ]
    return {"notices": notices, "subscribe": True, "now": timezone.now()}
