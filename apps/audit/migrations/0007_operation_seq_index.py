"""The operation id indexed with seq: a page of the operation-kind filter reads the seqs of its
operations' events from this index alone and sorts the newest out of them (apps/audit/
filters.py), where the index on operation_id alone made it fetch every row from the table.

The new index is made before the old one goes, so a query is never without one. The old one is
dropped by name rather than by altering the field: on SQLite, altering a field remakes the
table, which would drop the triggers that keep it append-only (migration 0002)."""

from django.db import migrations, models

OLD_INDEX = "audit_auditevent_operation_id_f9574a51"


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_grant_roles")]

    operations = [
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["operation_id", "seq"], name="audit_event_operation_seq"),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="operation_id",
                    field=models.BigIntegerField(blank=True, null=True),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {OLD_INDEX}",
                    f"CREATE INDEX IF NOT EXISTS {OLD_INDEX} ON audit_auditevent (operation_id)",
                ),
            ],
        ),
    ]
