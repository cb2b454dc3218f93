from __future__ import annotations

from django.apps import AppConfig


class ServicesConfig(AppConfig):
    name = "apps.services"
    label = "services"

    def ready(self) -> None:
        from apps.audit.links import register_links
        from apps.services.links import service_urls, target_urls
        from apps.services.models import TARGET_TYPE

        register_links("services.service", service_urls)
        register_links(TARGET_TYPE, target_urls)
