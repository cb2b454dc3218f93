"""Alerts during maintenance (issue 6, "interplay"): while an occurrence of a window is in
progress, the alerts of its services (in its environments, or in all of them when it names
none) are still recorded, but marked suppressed with the window named: they open no
incident and tell no one. When the occurrence ends (on time, or early), the alerts it
covered that are still firing are let go: a critical production one then opens or joins its
incident, as if it had just fired; those that resolved meanwhile stay recorded as
suppressed.

apps.metrics knows nothing of windows: ``window_in_progress`` is registered with its
``register_suppressor`` when this app is ready (hooks.py), and ``release_alerts`` calls its
``release_suppressed`` from the end of an occurrence (actions.do_end_occurrence)."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import Exists, OuterRef, Q

from apps.maintenance.models import Occurrence, Window
from apps.metrics import alerts
from apps.services.models import DeploymentTarget, Service

WindowEnvironment = Window.environments.through


def window_in_progress(
    service: Service | None, target: DeploymentTarget | None, now: datetime
) -> str | None:
    """The running window covering ``service`` on ``target``, in words; None when none does.
    An alert with no target is covered only by a window naming no environment.

    Inside a transaction the covering occurrences are locked (in id order, FOR NO KEY
    UPDATE): an end waits for the alert being recorded, so it sees it and lets it go.
    Occurrences before alerts, in id order: every path that locks both keeps that order."""
    if service is None:
        return None
    named = WindowEnvironment.objects.filter(window_id=OuterRef("window_id"))
    covering = Occurrence.objects.active().filter(window__services=service.pk)
    if target is None:
        covering = covering.filter(~Exists(named))
    else:
        covering = covering.filter(
            Q(~Exists(named)) | Q(Exists(named.filter(environment_id=target.environment_id)))
        )
    covering = covering.select_related("window").order_by("pk")
    if connection.in_atomic_block:
        covering = covering.select_for_update(no_key=True, of=("self",))
    running = list(covering)
    if not running:
        return None
    window = running[0].window
    return f"Maintenance #{window.pk} \u201c{window.title}\u201d in progress"


def lock_overlapping(occurrence: Occurrence) -> None:
    """Lock, in id order, ``occurrence`` and every running occurrence of a window that shares
    a service with its window: all the occurrences its end asks about (``release_alerts``
    asks whether anything still covers each alert it held). They are taken before any alert
    and in the order an alert being recorded takes them (``window_in_progress``). Taken after
    the alerts, an end and a recording in an overlapping window each held what the other
    waited for, and PostgreSQL aborted one of them."""
    shared = Window.services.through.objects.filter(window_id=occurrence.window_id)
    overlapping = Occurrence.objects.active().filter(window__services__in=shared.values("service"))
    list(
        Occurrence.objects.filter(Q(pk=occurrence.pk) | Q(pk__in=overlapping.values("pk")))
        .order_by("pk")
        .select_for_update(of=("self",))
        .values_list("pk", flat=True)
    )


def release_alerts(occurrence: Occurrence) -> list[int]:
    """The occurrence has ended (its row says so, in the caller's transaction): let go of
    the alerts of its services that nothing else suppresses. Returns their ids."""
    window = occurrence.window
    service_ids = list(window.services.values_list("pk", flat=True))
    released = alerts.release_suppressed(
        service_ids, f"Maintenance #{window.pk} \u201c{window.title}\u201d ended"
    )
    return [alert.pk for alert in released]
