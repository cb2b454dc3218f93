from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.accounts.roles import create_permissions_now, grant

# As in apps/accounts/roles.py ROLE_PERMISSIONS: managers hold the viewer role and review the
# queue; checking the chain is the admins'.
GRANTS = {
    "viewer": ["audit.review_auditevent"],
    "admin": ["audit.verify_auditevent"],
}


def seed(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    for role, permissions in GRANTS.items():
        grant(apps, role, permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0005_review_queue"),
        ("accounts", "0001_roles"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
