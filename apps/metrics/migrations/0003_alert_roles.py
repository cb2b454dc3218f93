from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.accounts.roles import create_permissions_now, grant

# As in apps/accounts/roles.py: viewers read alerts, operators acknowledge and silence them,
# admins switch a service's automatic incidents on or off.
GRANTS = {
    "viewer": ["metrics.view_alert"],
    "operator": ["metrics.change_alert", "metrics.add_silence", "metrics.change_silence"],
    "admin": ["metrics.change_servicealerting"],
}


def seed(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    for role, permissions in GRANTS.items():
        grant(apps, role, permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("metrics", "0002_alerts"),
        ("accounts", "0001_roles"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
