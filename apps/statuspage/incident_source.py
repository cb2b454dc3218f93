"""The incidents, as the public sees them: which open incidents make a component's status,
and which incidents (with their public updates only) the page lists.

An incident shows on the status page when it affects a public component and is not limited
to environments none of which is production: staging trouble is not the public's business.
Its effect follows its current severity (``choices.status_for_severity_rank``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Prefetch, Q

from apps.incidents.choices import OPEN_STATES, EntryKind
from apps.incidents.models import Incident, TimelineEntry
from apps.services.models import Service
from apps.statuspage.choices import status_for_severity_rank
from apps.statuspage.models import StatusComponent
from apps.statuspage.sources import Span, register_status_source

AffectedService = Incident.services.through
AffectedEnvironment = Incident.environments.through


def _seen_in_production(incident_ref: str) -> Q:
    """Names no environment (so all of them), or names a production one."""
    named = AffectedEnvironment.objects.filter(incident_id=OuterRef(incident_ref))
    return Q(~Exists(named)) | Q(Exists(named.filter(environment__is_production=True)))


def _current_or_since(prefix: str, since: datetime) -> Q:
    return Q(**{f"{prefix}state__in": OPEN_STATES}) | Q(**{f"{prefix}resolved_at__gte": since})


def incident_spans(
    components: Sequence[StatusComponent], since: datetime, now: datetime
) -> Iterable[Span]:
    """One span per (incident, public component): from its declaration until it was
    resolved, or until now while it is open. One query."""
    component_of = {component.service_id: component.pk for component in components}
    if not component_of:
        return []
    rows = (
        AffectedService.objects.filter(service_id__in=component_of)
        .filter(_current_or_since("incident__", since), incident__declared_at__lte=now)
        .filter(_seen_in_production("incident_id"))
        .values_list(
            "service_id",
            "incident__severity__rank",
            "incident__state",
            "incident__declared_at",
            "incident__resolved_at",
            "incident__title",
        )
    )
    spans = []
    for service_id, rank, state, declared_at, resolved_at, title in rows:
        is_open = state in OPEN_STATES
        spans.append(
            Span(
                component_id=component_of[service_id],
                status=status_for_severity_rank(rank),
                start=declared_at,
                end=None if is_open else (resolved_at or declared_at),
                label=title,
            )
        )
    return spans


register_status_source("incidents", incident_spans)


def public_updates() -> Any:
    """Public status updates, newest first, without the ones a later entry corrected."""
    corrected = TimelineEntry.objects.filter(corrects_id=OuterRef("pk"))
    return (
        TimelineEntry.objects.public()
        .filter(kind=EntryKind.UPDATE)
        .exclude(Exists(corrected))
        .only(
            "incident_id",
            "current_status",
            "findings",
            "next_steps",
            "eta",
            "occurred_at",
            "corrects_id",
        )
        .order_by("-occurred_at", "-id")
    )


def public_incidents(components: Sequence[StatusComponent], since: datetime) -> list[Incident]:
    """The incidents of the public components that are open or were resolved after
    ``since``, newest first, each with ``public_updates`` and ``public_components`` (the
    public names of what it affects; other services stay unnamed). Three queries."""
    component_of = {component.service_id: component for component in components}
    if not component_of:
        return []
    affects_public = AffectedService.objects.filter(
        incident_id=OuterRef("pk"), service_id__in=component_of
    )
    incidents: list[Incident] = list(
        Incident.objects.filter(Exists(affects_public))
        .filter(_current_or_since("", since))
        .filter(_seen_in_production("pk"))
        .select_related("severity")
        .only(
            "title",
            "state",
            "declared_at",
            "resolved_at",
            "severity__key",
            "severity__rank",
            "severity__name",
        )
        .prefetch_related(
            Prefetch("entries", queryset=public_updates(), to_attr="public_updates"),
            Prefetch(
                "services",
                queryset=Service.objects.filter(pk__in=component_of).only("pk"),
                to_attr="public_services",
            ),
        )
        .order_by("-declared_at", "-pk")
    )
    for incident in incidents:
        incident.public_components = sorted(  # type: ignore[attr-defined]
            (component_of[service.pk] for service in incident.public_services),  # type: ignore[attr-defined]
            key=lambda component: (component.position, component.name),
        )
        incident.public_status = status_for_severity_rank(incident.severity.rank)  # type: ignore[attr-defined]
    return incidents
