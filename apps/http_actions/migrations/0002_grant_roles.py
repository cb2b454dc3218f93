from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.accounts.roles import create_permissions_now, grant

# As in apps/accounts/roles.py ROLE_PERMISSIONS: admins define the actions; running them is
# the operations permission of their kind.
GRANTS = {"admin": ["http_actions.add_httpaction", "http_actions.change_httpaction"]}


def seed(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    for role, permissions in GRANTS.items():
        grant(apps, role, permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("http_actions", "0001_initial"),
        ("accounts", "0001_roles"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
