from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.accounts.roles import ROLE_PERMISSIONS, create_permissions_now, grant


def grant_datastores_permissions(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    for role, permissions in ROLE_PERMISSIONS.items():
        grant(apps, role, [name for name in permissions if name.startswith("datastores.")])


class Migration(migrations.Migration):
    dependencies = [
        ("datastores", "0001_initial"),
        ("accounts", "0001_roles"),
    ]

    operations = [migrations.RunPython(grant_datastores_permissions, migrations.RunPython.noop)]
