from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.accounts.roles import create_permissions_now, grant

# Everyone with a role reads runbooks; admins import and re-import them.
GRANTS = {
    "viewer": ["runbooks.view_runbook"],
    "admin": ["runbooks.add_runbook", "runbooks.change_runbook"],
}


def seed(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    for role, permissions in GRANTS.items():
        grant(apps, role, permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("runbooks", "0001_initial"),
        ("accounts", "0001_roles"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
