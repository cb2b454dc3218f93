"""Subscriptions to the status page by email: double opt-in, one-click unsubscribe, and who
hears of what (``audience``). An incident's public updates go to the same rows
(``incident_audience``, registered with the incidents' notifications).

Every change is audited with no person as actor (the public is anonymous); a request never
says whether an address was subscribed already (no way to learn who is on the list)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from apps.audit.records import AuditTarget, record
from apps.incidents.models import Incident
from apps.maintenance.models import Subscriber, Window
from apps.statuspage.models import StatusComponent

PUBLIC_ACTOR = "status page visitor"
# An unconfirmed request older than this is ignored (its link no longer works).
CONFIRM_WITHIN = timedelta(days=7)


def _target(subscriber: Subscriber) -> AuditTarget:
    return AuditTarget("maintenance.subscriber", str(subscriber.pk), subscriber.email)


def _link(name: str, token: str) -> str:
    return f"{settings.PORTAL_BASE_URL}{reverse(name, args=[token])}"


def unsubscribe_url(subscriber: Subscriber) -> str:
    return _link("maintenance:unsubscribe", subscriber.token)


def do_request_subscription(
    email: str, components: list[StatusComponent], *, all_components: bool
) -> Subscriber:
    """Record an unconfirmed request and mail its confirmation link (the first opt-in)."""
    email = email.strip().lower()
    with transaction.atomic():
        subscriber = Subscriber.objects.create(email=email, all_components=all_components)
        if not all_components:
            subscriber.components.set(components)
        record(
            "maintenance.subscription_requested",
            actor=None,
            actor_label=PUBLIC_ACTOR,
            target=_target(subscriber),
            data={
                "all_components": all_components,
                "components": [component.pk for component in components],
            },
        )
        link = _link("maintenance:confirm", subscriber.token)
        names = (
            "all components"
            if all_components
            else ", ".join(component.name for component in components)
        )
        body = (
            f"Someone (we hope you) asked to receive maintenance and incident notices of the "
            f"status page for: {names}.\n\nConfirm within {CONFIRM_WITHIN.days} days: {link}\n\n"
            "If it was not you, ignore this message: nothing will be sent."
        )
        message = EmailMessage("[OpsPortal] Confirm your subscription", body, to=[email])
        transaction.on_commit(lambda: message.send(fail_silently=True))
    return subscriber


def pending(token: str) -> Subscriber | None:
    """The unconfirmed request of this link, while it is fresh."""
    return Subscriber.objects.filter(
        token=token,
        confirmed_at__isnull=True,
        created_at__gte=timezone.now() - CONFIRM_WITHIN,
    ).first()


def do_confirm_subscription(subscriber: Subscriber) -> Subscriber:
    """The second opt-in: the request becomes the address's subscription, replacing an
    earlier one (so changing one's components is subscribing again)."""
    now = timezone.now()
    with transaction.atomic():
        Subscriber.objects.filter(email=subscriber.email).exclude(pk=subscriber.pk).delete()
        subscriber.confirmed_at = now
        subscriber.save(update_fields=["confirmed_at"])
        record(
            "maintenance.subscription_confirmed",
            actor=None,
            actor_label=PUBLIC_ACTOR,
            target=_target(subscriber),
        )
    return subscriber


def do_unsubscribe(subscriber: Subscriber) -> None:
    """One click (RFC 8058): the row goes; nothing more is sent to it."""
    with transaction.atomic():
        record(
            "maintenance.unsubscribed",
            actor=None,
            actor_label=PUBLIC_ACTOR,
            target=_target(subscriber),
        )
        subscriber.delete()


@dataclass
class Audience:
    """Who hears of each window: {window id: [subscriber]}, from two queries."""

    by_window: dict[int, list[Subscriber]] = field(default_factory=dict)

    def of(self, window: Window) -> list[Subscriber]:
        return self.by_window.get(window.pk, [])


def audience(windows: Iterable[Window]) -> Audience:
    """The confirmed subscribers of the windows' public components: those subscribed to
    all components hear of a window touching any public component; the others of windows
    touching a component they chose. Only windows seen in production (naming no environment,
    or a production one), as on the status page. The windows' services and environments
    must be prefetched."""
    services_of = {
        window.pk: {service.pk for service in window.services.all()}
        for window in windows
        if not window.environments.all()
        or any(environment.is_production for environment in window.environments.all())
    }
    every_service = set().union(*services_of.values()) if services_of else set()
    public = dict(
        StatusComponent.objects.filter(service_id__in=every_service).values_list("pk", "service_id")
    )
    if not public:
        return Audience()
    rows = (
        Subscriber.objects.confirmed()
        .filter(Q(all_components=True) | Q(components__in=list(public)))
        .values_list("pk", "email", "token", "all_components", "components")
    )
    people: dict[int, Subscriber] = {}
    chosen: dict[int, set[int]] = defaultdict(set)
    for pk, email, token, everything, component_id in rows:
        people.setdefault(
            pk, Subscriber(pk=pk, email=email, token=token, all_components=everything)
        )
        if component_id in public:
            chosen[pk].add(public[component_id])
    public_services = set(public.values())
    result = Audience()
    for window_id, services in services_of.items():
        result.by_window[window_id] = [
            person
            for person in people.values()
            if (person.all_components and services & public_services)
            or services & chosen[person.pk]
        ]
    return result


def subscribers_for_services(service_ids: Iterable[int]) -> list[Subscriber]:
    """The confirmed subscribers who follow any of these services' public components (or
    all components): the incidents' public updates go to them."""
    services = list(service_ids)
    if not StatusComponent.objects.filter(service_id__in=services).exists():
        return []
    return list(
        Subscriber.objects.confirmed()
        .filter(Q(all_components=True) | Q(components__service_id__in=services))
        .distinct()
    )


def incident_audience(incident: Incident) -> list[tuple[str, str]]:
    """Each subscriber of the incident's services, with their own unsubscribe link."""
    service_ids = incident.services.values_list("pk", flat=True)
    return [
        (subscriber.email, f"\n\nUnsubscribe: {unsubscribe_url(subscriber)}")
        for subscriber in subscribers_for_services(service_ids)
    ]
