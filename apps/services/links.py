"""The pages of services and targets, for the links of the audit history (registered in
ServicesConfig.ready): one query per kind of object on a page of events."""

from __future__ import annotations

from collections.abc import Iterable

from apps.services.models import DeploymentTarget, Service


def service_urls(ids: Iterable[int]) -> dict[int, str]:
    """The pages of these services, for the audit history's links (one query)."""
    services = Service.objects.filter(pk__in=ids).only("pk", "slug")
    return {service.pk: service.get_absolute_url() for service in services}


def target_urls(ids: Iterable[int]) -> dict[int, str]:
    """The pages of these deployment targets (their service page, on their environment)."""
    targets = (
        DeploymentTarget.objects.filter(pk__in=ids)
        .select_related("service", "environment")
        .only("pk", "service__slug", "environment__slug")
    )
    return {target.pk: target.get_absolute_url() for target in targets}
