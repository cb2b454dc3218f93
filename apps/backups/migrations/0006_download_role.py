from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.accounts.roles import ADMIN, create_permissions_now, grant

# Admins download backups (streamed, audited); others are refused.
DOWNLOAD_PERMISSIONS = ["backups.download_backup"]


def grant_download_permission(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    grant(apps, ADMIN, DOWNLOAD_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0005_schedules_retention_freshness"),
        ("accounts", "0001_roles"),
    ]

    operations = [migrations.RunPython(grant_download_permission, migrations.RunPython.noop)]
