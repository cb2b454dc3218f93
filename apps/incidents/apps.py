from __future__ import annotations

from collections.abc import Iterable

from django.apps import AppConfig
from django.urls import reverse


class IncidentsConfig(AppConfig):
    name = "apps.incidents"
    label = "incidents"

    def ready(self) -> None:
        from apps.audit.links import register_links
        from apps.incidents import hooks  # noqa: F401  (gate rule, badges, operation origins)
        from apps.incidents.models import INCIDENT_TYPE, Incident

        # Audit events about an incident link to its page (apps.audit.links).
        def incident_urls(ids: Iterable[int]) -> dict[int, str]:
            found = Incident.objects.filter(pk__in=ids).values_list("pk", flat=True)
            return {pk: reverse("incidents:detail", args=[pk]) for pk in found}

        register_links(INCIDENT_TYPE, incident_urls)
