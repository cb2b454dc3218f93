from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.audit.triggers import statements_for


def install_triggers(apps: Any, schema_editor: Any) -> None:
    for statement in statements_for(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


def create_chain_head(apps: Any, schema_editor: Any) -> None:
    apps.get_model("audit", "AuditChainHead").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    # No reverse: nothing in the portal removes these triggers.
    operations = [
        migrations.RunPython(create_chain_head),
        migrations.RunPython(install_triggers),
    ]
