"""How maintenance windows plug into the rest of the portal, registered when the app is
ready:

- operations started from a window (origin ``maintenance:<window id>``) are described by it
  and listed on its page;
- the deploy gate: a change started from a window passes only on the window's own targets,
  while it runs (and for an hour after, to switch maintenance mode off); nothing else in the
  gate changes;
- the services dashboard shows a "Maintenance" badge on targets in a running window;
- the status page shows the public components under a running window as "Under
  maintenance";
- alerts of the services under a running window are recorded as suppressed, naming it
  (alert_suppression.py; their release at the end is part of ending an occurrence);
- the status page's subscribers get the public updates of incidents on their components.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.db.models import Exists, OuterRef, Q

from apps.incidents.notifications import register_public_audience
from apps.maintenance.alert_suppression import window_in_progress
from apps.maintenance.choices import OccurrenceState
from apps.maintenance.models import Occurrence, Window
from apps.maintenance.subscriptions import incident_audience
from apps.metrics.alerts import register_suppressor
from apps.operations import origins
from apps.services import badges, gate
from apps.services.models import DeploymentTarget
from apps.statuspage.choices import ComponentStatus
from apps.statuspage.models import StatusComponent
from apps.statuspage.sources import Span, register_status_source

ORIGIN_TYPE = "maintenance"
# After its end, a window's origin still opens the gate this long: switching maintenance
# mode off happens at the end and may wait behind the switch on.
ORIGIN_GRACE = timedelta(hours=1)

WindowService = Window.services.through
WindowEnvironment = Window.environments.through


def _describe(object_id: str) -> origins.Origin | None:
    window = Window.objects.filter(pk=int(object_id)).only("pk", "title").first()
    if window is None:
        return None
    return origins.Origin(
        window.origin, f"Maintenance #{window.pk}: {window.title}", window.get_absolute_url()
    )


origins.register_origin(ORIGIN_TYPE, _describe)


def _covers(target: DeploymentTarget) -> Q:
    """Windows (as seen from an occurrence) whose services and environments include
    ``target``; naming no environment covers them all."""
    named = WindowEnvironment.objects.filter(window_id=OuterRef("window_id"))
    return Q(window__services=target.service_id) & (
        Q(~Exists(named)) | Q(Exists(named.filter(environment_id=target.environment_id)))
    )


@gate.register_rule
def window_origin(target: DeploymentTarget, now: datetime, origin: str) -> list[str]:
    window_id = origins.origin_id(origin, ORIGIN_TYPE)
    if window_id is None:
        return []
    running = (
        Occurrence.objects.filter(window_id=window_id)
        .filter(_covers(target))
        .filter(
            Q(state=OccurrenceState.IN_PROGRESS)
            | Q(state=OccurrenceState.COMPLETED, ended_at__gte=now - ORIGIN_GRACE)
        )
    )
    if running.exists():
        return []
    return [
        f"Maintenance window #{window_id} is not running on {target.service.name} "
        f"({target.environment.name}): start the change from a running window that covers "
        "it, or from the service page."
    ]


@badges.register_provider
def maintenance_badges(
    targets: Sequence[DeploymentTarget], now: datetime
) -> dict[int, list[badges.Badge]]:
    """Two queries whatever the number of tiles: the running occurrences' services, and
    their environments."""
    found: dict[int, list[badges.Badge]] = defaultdict(list)
    service_ids = {target.service_id for target in targets}
    rows = list(
        WindowService.objects.filter(
            service_id__in=service_ids,
            window__occurrences__state=OccurrenceState.IN_PROGRESS,
        )
        .select_related("window")
        .distinct()
    )
    if not rows:
        return found
    scoped: dict[int, set[int]] = defaultdict(set)
    for scope in WindowEnvironment.objects.filter(window_id__in={row.window_id for row in rows}):
        scoped[scope.window_id].add(scope.environment_id)
    by_service: dict[int, list[Window]] = defaultdict(list)
    for row in rows:
        by_service[row.service_id].append(row.window)
    for target in targets:
        window = next(
            (
                window
                for window in by_service.get(target.service_id, [])
                if not scoped[window.pk] or target.environment_id in scoped[window.pk]
            ),
            None,
        )
        if window is not None:
            found[target.pk].append(
                badges.Badge(
                    "Maintenance",
                    "tools",
                    "info",
                    f"Maintenance in progress: {window.title}",
                    window.get_absolute_url(),
                )
            )
    return found


def maintenance_spans(
    components: Sequence[StatusComponent], since: datetime, now: datetime
) -> Iterable[Span]:
    """One span per (started occurrence, public component) since ``since``: from its start
    until its end, or until now while it runs. Only windows seen in production (naming no
    environment, or a production one). One query."""
    component_of = {component.service_id: component.pk for component in components}
    if not component_of:
        return []
    named = WindowEnvironment.objects.filter(window_id=OuterRef("window_id"))
    rows = (
        WindowService.objects.filter(service_id__in=component_of)
        .filter(
            Q(window__occurrences__state=OccurrenceState.IN_PROGRESS)
            | Q(
                window__occurrences__state=OccurrenceState.COMPLETED,
                window__occurrences__ended_at__gte=since,
            )
        )
        .filter(Q(~Exists(named)) | Q(Exists(named.filter(environment__is_production=True))))
        .values_list(
            "service_id",
            "window__title",
            "window__occurrences__state",
            "window__occurrences__started_at",
            "window__occurrences__ended_at",
        )
    )
    spans = []
    for service_id, title, state, started_at, ended_at in rows:
        if started_at is None or started_at > now:
            continue
        spans.append(
            Span(
                component_id=component_of[service_id],
                status=ComponentStatus.UNDER_MAINTENANCE,
                start=started_at,
                end=None if state == OccurrenceState.IN_PROGRESS else ended_at,
                label=f"Maintenance: {title}",
            )
        )
    return spans


register_status_source("maintenance", maintenance_spans)
register_suppressor(window_in_progress)
register_public_audience(incident_audience)
