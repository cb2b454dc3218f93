from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.accounts.roles import ADMIN, create_permissions_now, grant

# Admins define the integrity checks every restore and test restore runs.
CHECK_PERMISSIONS = [
    "backups.add_integritycheck",
    "backups.change_integritycheck",
    "backups.delete_integritycheck",
]


def grant_check_permissions(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    grant(apps, ADMIN, CHECK_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0003_restores"),
        ("accounts", "0001_roles"),
    ]

    operations = [migrations.RunPython(grant_check_permissions, migrations.RunPython.noop)]
