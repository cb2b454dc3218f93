from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.accounts.roles import ROLE_PERMISSIONS, create_permissions_now, grant


def grant_backups_permissions(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    for role, permissions in ROLE_PERMISSIONS.items():
        grant(apps, role, [name for name in permissions if name.startswith("backups.")])


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0001_initial"),
        ("accounts", "0001_roles"),
    ]

    operations = [migrations.RunPython(grant_backups_permissions, migrations.RunPython.noop)]
