from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import migrations

from apps.accounts.roles import ROLE_PERMISSIONS, create_permissions_now, grant

# The runbooks' severities: (key, rank, name, acknowledge within, business days, update every,
# post-mortem and deploy stop).
SEVERITIES = [
    ("SEV-1", 1, "Complete outage", timedelta(minutes=5), False, timedelta(minutes=15), True),
    ("SEV-2", 2, "Major degradation", timedelta(minutes=15), False, timedelta(minutes=30), True),
    ("SEV-3", 3, "Minor degradation", timedelta(hours=2), False, None, False),
    ("SEV-4", 4, "Low impact", timedelta(days=1), True, None, False),
]
LEVELS = [(1, "On-call engineer"), (2, "Engineering lead"), (3, "CTO")]

TABLE = "incidents_timelineentry"
MESSAGE = "timeline entries are immutable"
TRIGGERS = {
    "postgresql": [
        f"""
        CREATE OR REPLACE FUNCTION incidents_entry_immutable() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{MESSAGE}: UPDATE refused' USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """,
        f"""
        CREATE TRIGGER incidents_entry_no_update BEFORE UPDATE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION incidents_entry_immutable()
        """,
    ],
    "sqlite": [
        f"""
        CREATE TRIGGER incidents_entry_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}: UPDATE refused'); END
        """
    ],
}


def seed(apps: Any, schema_editor: Any) -> None:
    severity_model = apps.get_model("incidents", "Severity")
    for key, rank, name, ack, business_days, update_every, grave in SEVERITIES:
        severity_model.objects.get_or_create(
            key=key,
            defaults={
                "rank": rank,
                "name": name,
                "acknowledge_within": ack,
                "business_days": business_days,
                "update_every": update_every,
                "requires_postmortem": grave,
                "blocks_deploys": grave,
            },
        )
    policy_model = apps.get_model("incidents", "EscalationPolicy")
    policy, _ = policy_model.objects.get_or_create(
        name="Default", defaults={"is_default": True, "email_enabled": True}
    )
    level_model = apps.get_model("incidents", "EscalationLevel")
    for level, name in LEVELS:
        level_model.objects.get_or_create(policy=policy, level=level, defaults={"name": name})


def grant_incident_permissions(apps: Any, schema_editor: Any) -> None:
    create_permissions_now(apps)
    for role, permissions in ROLE_PERMISSIONS.items():
        grant(apps, role, [name for name in permissions if name.startswith("incidents.")])


def make_entries_immutable(apps: Any, schema_editor: Any) -> None:
    for statement in TRIGGERS.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0001_initial"),
        ("accounts", "0001_roles"),
        ("operations", "0003_origin"),
    ]

    operations = [
        migrations.RunPython(seed, migrations.RunPython.noop),
        migrations.RunPython(grant_incident_permissions, migrations.RunPython.noop),
        migrations.RunPython(make_entries_immutable),
    ]
