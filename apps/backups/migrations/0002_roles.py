from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.accounts.roles import ROLE_PERMISSIONS, create_permissions_now, grant


def _model_exists(apps: Any, name: str) -> bool:
    # ROLE_PERMISSIONS also names models of later migrations (integrity checks, 0004): they
    # are granted there.
    app_label, codename = name.split(".", 1)
    try:
        apps.get_model(app_label, codename.split("_", 1)[1])
    except LookupError:
        return False
    return True


def grant_backups_permissions(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    for role, permissions in ROLE_PERMISSIONS.items():
        grant(
            apps,
            role,
            [
                name
                for name in permissions
                if name.startswith("backups.") and _model_exists(apps, name)
            ],
        )


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0001_initial"),
        ("accounts", "0001_roles"),
    ]

    operations = [migrations.RunPython(grant_backups_permissions, migrations.RunPython.noop)]
