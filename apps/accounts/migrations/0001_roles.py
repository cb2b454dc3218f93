from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.accounts.roles import ROLE_PERMISSIONS, create_permissions_now, grant


def create_roles(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    # Permissions that later migrations create are granted by those migrations.
    own = ("auth.", "operations.", "audit.")
    later = {"operations.override_gate", "audit.review_auditevent", "audit.verify_auditevent"}
    for role, permissions in ROLE_PERMISSIONS.items():
        grant(apps, role, [p for p in permissions if p.startswith(own) and p not in later])


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("operations", "0001_initial"),
        ("audit", "0002_append_only"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
