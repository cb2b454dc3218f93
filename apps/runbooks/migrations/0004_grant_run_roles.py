from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.accounts.roles import create_permissions_now, grant

# Everyone with a role reads guided runs; operators start and work them.
GRANTS = {
    "viewer": ["runbooks.view_runbookrun"],
    "operator": ["runbooks.add_runbookrun", "runbooks.change_runbookrun"],
}


def seed(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    for role, permissions in GRANTS.items():
        grant(apps, role, permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("runbooks", "0003_runs"),
        ("accounts", "0001_roles"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
