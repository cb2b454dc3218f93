"""How incidents plug into the rest of the portal, registered when the app is ready:

- operations started from an incident (origin ``incident:<id>``) are described by it, and
  their start and outcome are written into its timeline;
- the deploy gate refuses ordinary changes on a service with an open incident of a
  severity that blocks deploys, unless the change comes from that incident;
- the services dashboard shows a badge on the services of open incidents.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q

from apps.incidents.actions import add_entry
from apps.incidents.choices import OPEN_STATES, EntryKind
from apps.incidents.models import Incident
from apps.operations import origins, signals
from apps.operations.models import Operation
from apps.services import badges, gate
from apps.services.models import DeploymentTarget

logger = logging.getLogger(__name__)

ORIGIN_TYPE = "incident"


def origin_of(incident: Incident) -> str:
    return f"{ORIGIN_TYPE}:{incident.pk}"


def _describe(object_id: str) -> origins.Origin | None:
    incident = Incident.objects.filter(pk=int(object_id)).only("pk", "title").first()
    if incident is None:
        return None
    return origins.Origin(origin_of(incident), str(incident), incident.get_absolute_url())


origins.register_origin(ORIGIN_TYPE, _describe)


def _incident_of(operation: Operation) -> Incident | None:
    incident_id = origins.origin_id(operation.origin, ORIGIN_TYPE)
    return None if incident_id is None else Incident.objects.filter(pk=incident_id).first()


def _operation_entry(operation: Operation, phase: str, **data: Any) -> None:
    incident = _incident_of(operation)
    if incident is None:
        return
    author = operation.requested_by if phase == "requested" else None
    # A savepoint: a failure here must not undo the operation's own change.
    with transaction.atomic():
        add_entry(
            incident,
            EntryKind.OPERATION,
            author,
            text=operation.status_text,
            operation=operation,
            data={
                "phase": phase,
                "kind": operation.kind,
                "target": operation.target_label,
                "state": operation.state,
                **data,
            },
        )


def _on_requested(sender: Any, operation: Operation, **kwargs: Any) -> None:
    _operation_entry(operation, "requested", reason=operation.reason)


def _on_finished(sender: Any, operation: Operation, **kwargs: Any) -> None:
    _operation_entry(operation, "finished", error=operation.error)


signals.operation_requested.connect(_on_requested, dispatch_uid="incidents-operation-requested")
signals.operation_finished.connect(_on_finished, dispatch_uid="incidents-operation-finished")


def blocking_incidents(target: DeploymentTarget) -> list[Incident]:
    """Open incidents whose severity stops deploys and that affect ``target``'s service
    in its environment (an incident naming no environment affects them all)."""
    return list(
        Incident.objects.filter(
            state__in=OPEN_STATES, severity__blocks_deploys=True, services=target.service_id
        )
        .filter(Q(environments=None) | Q(environments=target.environment_id))
        .select_related("severity")
        .distinct()
        .order_by("pk")
    )


@gate.register_rule
def open_incidents(target: DeploymentTarget, now: datetime, origin: str) -> list[str]:
    # Started from the incident, or from something within it (a runbook run's step).
    from_incident = origins.within_id(origin, ORIGIN_TYPE)
    return [
        f"{incident.severity.key} incident #{incident.pk} \u201c{incident.title}\u201d is open "
        f"on {target.service.name}: start the change from the incident's page, or ask an "
        "admin to override."
        for incident in blocking_incidents(target)
        if incident.pk != from_incident
    ]


@badges.register_provider
def incident_badges(
    targets: Sequence[DeploymentTarget], now: datetime
) -> dict[int, list[badges.Badge]]:
    found: dict[int, list[badges.Badge]] = defaultdict(list)
    service_ids = {target.service_id for target in targets}
    rows = (
        Incident.services.through.objects.filter(
            service_id__in=service_ids, incident__state__in=OPEN_STATES
        )
        .select_related("incident__severity")
        .order_by("incident__severity__rank", "incident_id")
    )
    by_service: dict[int, list[Incident]] = defaultdict(list)
    for row in rows:
        by_service[row.service_id].append(row.incident)
    # The environments of all those incidents, in one query.
    scoped: dict[int, set[int]] = defaultdict(set)
    incident_ids = {incident.pk for found_ in by_service.values() for incident in found_}
    for scope in Incident.environments.through.objects.filter(incident_id__in=incident_ids):
        scoped[scope.incident_id].add(scope.environment_id)
    for target in targets:
        # The worst open incident that affects this target's environment.
        incident = next(
            (
                incident
                for incident in by_service.get(target.service_id, [])
                if not scoped[incident.pk] or target.environment_id in scoped[incident.pk]
            ),
            None,
        )
        if incident is None:
            continue
        tone = "danger" if incident.severity.blocks_deploys else "warning"
        found[target.pk].append(
            badges.Badge(
                incident.severity.key,
                "fire",
                tone,
                f"Open incident #{incident.pk}: {incident.title}",
                incident.get_absolute_url(),
            )
        )
    return found
