from __future__ import annotations

from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "apps.backups"
    label = "backups"

    def ready(self) -> None:
        from apps.audit.links import model_links, register_links
        from apps.backups import cleanup, sync  # noqa: F401  (sync registers its kinds)
        from apps.operations.signals import operation_finished

        operation_finished.connect(cleanup.clean_up_after, dispatch_uid="backups-cleanup")
        # Audit events about a database target link to its page.
        register_links("backups.target", model_links("backups.DatabaseTarget"))
